"""BlendMask end to end on CPU: training and inference steps, module hygiene, checkpoints."""

import copy
import math
import os
import tempfile
import unittest
from collections import OrderedDict
from unittest import mock

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from project_testing import make_input

from tensormask_proj.modeling.blendmask import FCOS

from .blendmask_testing import CONFIG_DIR, blendmask_cfg, regular_and_empty_batch

LOSS_KEYS = {"loss_basis_sem", "loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask"}
OUTPUT_FIELDS = {
    "pred_boxes",
    "scores",
    "pred_classes",
    "locations",
    "fpn_levels",
    "top_feat",
    "pred_masks",
}


def _build(opts=(), config_file=None, seed=0):
    torch.manual_seed(seed)
    cfg = blendmask_cfg(opts=opts) if config_file is None else blendmask_cfg(config_file, opts)
    return build_model(cfg)


class TestTraining(unittest.TestCase):
    def _assert_train_step(self, opts, loss_keys):
        """One step on a regular and an empty image: the given positive, finite losses, and a
        gradient for every trainable parameter."""
        model = _build(opts).train()
        losses = model(regular_and_empty_batch())
        self.assertEqual(set(losses), loss_keys)
        for k, v in losses.items():
            self.assertTrue(math.isfinite(v.item()), k)
            self.assertGreater(v.item(), 0, k)
        sum(losses.values()).backward()
        no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        self.assertEqual(no_grad, [])

    def test_train_step_regular_and_empty_images(self):
        self._assert_train_step([], LOSS_KEYS)

    def test_train_step_iou_box_quality(self):
        # MODEL.FCOS.BOX_QUALITY "iou" renames the quality loss; the blender still trains.
        self._assert_train_step(
            ["MODEL.FCOS.BOX_QUALITY", "iou"], LOSS_KEYS - {"loss_fcos_ctr"} | {"loss_fcos_iou"}
        )

    def test_train_step_empty_images_only(self):
        model = _build().train()
        batch = [make_input((128, 128)), make_input((96, 128), seed=1)]
        losses = model(batch)
        self.assertEqual(losses["loss_mask"].item(), 0.0)
        self.assertEqual(losses["loss_fcos_loc"].item(), 0.0)
        self.assertEqual(losses["loss_fcos_ctr"].item(), 0.0)
        self.assertGreater(losses["loss_fcos_cls"].item(), 0.0)
        self.assertGreater(losses["loss_basis_sem"].item(), 0.0)
        sum(losses.values()).backward()

    def test_train_step_bitmasks(self):
        model = _build(["INPUT.MASK_FORMAT", "bitmask"]).train()
        boxes = [[10, 12, 70, 90], [60, 60, 150, 120]]
        batch = [make_input((128, 160), boxes, [1, 4], bitmask=True)]
        losses = model(batch)
        self.assertGreater(losses["loss_mask"].item(), 0.0)

    def test_missing_basis_sem_is_a_clear_error(self):
        model = _build().train()
        batch = regular_and_empty_batch()
        del batch[1]["basis_sem"]
        with self.assertRaisesRegex(ValueError, "basis_sem"):
            model(batch)
        # Without the auxiliary loss, basis_sem is not needed.
        model = _build(["MODEL.BASIS_MODULE.LOSS_ON", False]).train()
        self.assertNotIn("loss_basis_sem", model(batch))


class TestInference(unittest.TestCase):
    def test_outputs(self):
        # Threshold 0 so that the random model keeps detections.
        model = _build(["MODEL.FCOS.INFERENCE_TH_TEST", 0.0]).eval()
        batch = regular_and_empty_batch()
        batch[0]["height"], batch[0]["width"] = 256, 320  # output at twice the input size
        outputs = model(batch)
        self.assertEqual(len(outputs), 3)
        for out, inputs in zip(outputs, batch):
            inst = out["instances"]
            h, w = inputs["height"], inputs["width"]
            self.assertEqual(set(inst.get_fields()), OUTPUT_FIELDS)
            self.assertEqual(inst.image_size, (h, w))
            self.assertGreater(len(inst), 0)
            self.assertLessEqual(len(inst), 100)
            self.assertEqual(inst.pred_masks.dtype, torch.bool)
            self.assertEqual(tuple(inst.pred_masks.shape), (len(inst), h, w))
            self.assertEqual(tuple(inst.top_feat.shape), (len(inst), 4 * 14 * 14))
            boxes = inst.pred_boxes.tensor
            self.assertTrue(bool((boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= w).all()))
            self.assertTrue(bool((boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= h).all()))
            self.assertTrue(bool((inst.scores[:-1] >= inst.scores[1:]).all()))

    def test_blender_crops_with_the_clipped_boxes(self):
        # detector_postprocess pastes each mask into its box clipped to the image, so the
        # blender must crop the bases with that box too (Mask R-CNN's mask head sees clipped
        # boxes): else a box that crosses the border gets its mask squeezed.
        model = _build(["MODEL.FCOS.INFERENCE_TH_TEST", 0.0]).eval()
        with torch.no_grad():
            model.proposal_generator.fcos_head.bbox_pred.bias.fill_(2.0)  # boxes of ~7 strides
        fcos_boxes, cropped_boxes = [], []
        fcos_predict, predict = model.proposal_generator.predict, model.blender.predict

        def record_fcos(*args, **kwargs):
            out = fcos_predict(*args, **kwargs)
            fcos_boxes.extend(p.pred_boxes.tensor.clone() for p in out)
            return out

        def record_blender(bases, proposals):
            cropped_boxes.extend(p.pred_boxes.tensor.clone() for p in proposals)
            return predict(bases, proposals)

        h, w = 128, 160
        with (
            mock.patch.object(model.proposal_generator, "predict", record_fcos),
            mock.patch.object(model.blender, "predict", record_blender),
        ):
            model([make_input((h, w))])
        raw, cropped = fcos_boxes[0], cropped_boxes[0]
        limits = torch.tensor([w, h, w, h], dtype=raw.dtype)
        # FCOS's boxes cross the border, the blender's do not and are the clipped FCOS boxes.
        self.assertTrue(bool(((raw < 0) | (raw > limits)).any()))
        self.assertTrue(torch.equal(cropped, torch.minimum(raw.clamp(min=0), limits)))

    def test_inputs_with_instances_take_the_inference_branch(self):
        model = _build(["MODEL.FCOS.INFERENCE_TH_TEST", 0.0]).eval()
        batch = regular_and_empty_batch()
        gt_keys = ("instances", "basis_sem")
        stripped = [{k: v for k, v in x.items() if k not in gt_keys} for x in batch]
        with_gt = model(batch)
        without_gt = model(stripped)
        self.assertIsInstance(with_gt, list)
        for a, b in zip(with_gt, without_gt):
            a, b = a["instances"], b["instances"]
            self.assertTrue(torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor))
            self.assertTrue(torch.equal(a.pred_masks, b.pred_masks))

    def test_no_detection(self):
        # At the default threshold, an untrained model scores sigmoid(-4.6) * sigmoid(~0)
        # ~ 0.005 < 0.05 everywhere: no detections, but every field is present.
        model = _build().eval()
        out = model([make_input((128, 160))])[0]["instances"]
        self.assertEqual(len(out), 0)
        self.assertEqual(set(out.get_fields()), OUTPUT_FIELDS)
        self.assertEqual(tuple(out.pred_masks.shape), (0, 128, 160))

    def test_visualize_outputs(self):
        # Each image of a batch gets its own bases (stride 4) and semantic logits (6 classes and
        # background, stride 8): those of the image run alone. The detections are those of the
        # same model without VISUALIZE.
        opts = ["MODEL.FCOS.INFERENCE_TH_TEST", 0.0]
        model = _build(opts + ["MODEL.BLENDMASK.VISUALIZE", True]).eval()
        batch = [make_input((128, 160)), make_input((128, 160), seed=1)]
        together = model(batch)
        alone = [model([x])[0] for x in batch]
        plain = _build(opts).eval()(batch)
        maps = lambda out: {"bases": out["bases"][0], "sem": out["sem_thing_seg"]}  # noqa: E731
        for out, own, other, without in zip(together, alone, alone[::-1], plain):
            self.assertEqual(len(out["bases"]), 1)
            self.assertEqual(tuple(out["bases"][0].shape), (4, 32, 40))
            self.assertEqual(tuple(out["sem_thing_seg"].shape), (7, 16, 20))
            for key, value in maps(out).items():
                torch.testing.assert_close(value, maps(own)[key], msg=key)
                self.assertFalse(torch.allclose(value, maps(other)[key]), key)
            self.assertEqual(set(without), {"instances"})
            a, b = out["instances"], without["instances"]
            self.assertGreater(len(a), 0)
            self.assertTrue(torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor))
            self.assertTrue(torch.equal(a.pred_masks, b.pred_masks))


class TestModuleHygiene(unittest.TestCase):
    def test_dense_detector_with_the_fcos_head(self):
        # DenseDetector's head is FCOS's, registered once, under AdelaiDet's name; FCOS is built
        # directly, whatever MODEL.PROPOSAL_GENERATOR.NAME says.
        model = _build(["MODEL.PROPOSAL_GENERATOR.NAME", "RPN"])
        self.assertIsInstance(model, DenseDetector)
        self.assertIsInstance(model.proposal_generator, FCOS)
        self.assertIs(model.head, model.proposal_generator.fcos_head)
        self.assertEqual(
            [name for name, _ in model.named_children()],
            ["backbone", "proposal_generator", "basis_module", "top_layer"],
        )
        self.assertEqual(model.head_in_features, ["p3", "p4", "p5"])

    def test_pixel_statistics_are_buffers(self):
        model = _build()
        buffers = dict(model.named_buffers())
        self.assertIn("pixel_mean", buffers)
        self.assertIn("pixel_std", buffers)
        # Not persistent: AdelaiDet checkpoints do not carry them.
        self.assertNotIn("pixel_mean", model.state_dict())
        self.assertEqual(model.device, torch.device("cpu"))
        model.to(torch.float64)
        self.assertEqual(model.pixel_mean.dtype, torch.float64)
        self.assertEqual(model.pixel_std.dtype, torch.float64)

    def test_gn_bn_syncbn_run_on_cpu_without_touching_cuda(self):
        def no_cuda(*args, **kwargs):
            raise AssertionError("CUDA was initialised")

        for norm in ("GN", "BN", "SyncBN"):
            with self.subTest(norm=norm), mock.patch("torch.cuda._lazy_init", no_cuda):
                opts = [
                    "MODEL.RESNETS.NORM", norm, "MODEL.FPN.NORM", norm,
                    "MODEL.FCOS.NORM", norm, "MODEL.BASIS_MODULE.NORM", norm,
                    "MODEL.FCOS.INFERENCE_TH_TEST", 0.0,
                ]  # fmt: skip
                model = _build(opts).train()
                losses = model(regular_and_empty_batch())
                sum(losses.values()).backward()
                model.eval()
                self.assertGreater(len(model([make_input((128, 160))])[0]["instances"]), 0)
        self.assertFalse(torch.cuda.is_initialized())


class TestReferenceConfigsRun(unittest.TestCase):
    """The shared-tower / per-level BN / P6-only layouts of the R-50 configs run a step."""

    def test_train_and_inference_steps(self):
        for name in ("550_R_50_3x", "RT_R_50_4x_bn-head_syncbn_shtw"):
            with self.subTest(config=name):
                cfg_file = os.path.join(CONFIG_DIR, "BlendMask", name + ".yaml")
                opts = [
                    "MODEL.FCOS.NUM_CLASSES", 6, "MODEL.BASIS_MODULE.NUM_CLASSES", 6,
                    "MODEL.FCOS.INFERENCE_TH_TEST", 0.0,
                ]  # fmt: skip
                model = _build(opts, cfg_file).train()
                losses = model(regular_and_empty_batch()[:2])
                self.assertEqual(set(losses), LOSS_KEYS)
                sum(losses.values()).backward()
                model.eval()
                self.assertGreater(len(model([make_input((128, 160))])[0]["instances"]), 0)


class TestCheckpointCompatibility(unittest.TestCase):
    def _old_style(self, state_dict, with_metadata):
        """Rename ctrness -> centerness as in older AdelaiDet checkpoints."""
        old = OrderedDict(
            (k.replace("fcos_head.ctrness.", "fcos_head.centerness."), v.clone())
            for k, v in state_dict.items()
        )
        if with_metadata:
            meta = copy.deepcopy(state_dict._metadata)
            meta["proposal_generator.fcos_head"]["version"] = 1
            old._metadata = meta
        return old

    def test_centerness_keys_are_remapped(self):
        source = _build()
        state_dict = source.state_dict()
        self.assertIn("proposal_generator.fcos_head.ctrness.weight", state_dict)
        for with_metadata in (True, False):
            with self.subTest(with_metadata=with_metadata):
                old = self._old_style(state_dict, with_metadata)
                self.assertIn("proposal_generator.fcos_head.centerness.weight", old)
                # Strict loading: no missing and no unexpected keys after the remap.
                target = _build(seed=1)
                torch.nn.init.zeros_(target.proposal_generator.fcos_head.ctrness.weight)
                with self.assertLogs("tensormask_proj", level="WARNING") as logs:
                    target.load_state_dict(old, strict=True)
                self.assertIn("centerness", "\n".join(logs.output))
                self.assertTrue(
                    torch.equal(
                        target.proposal_generator.fcos_head.ctrness.weight,
                        source.proposal_generator.fcos_head.ctrness.weight,
                    )
                )

    def test_detection_checkpointer_loads_old_checkpoint(self):
        source = _build()
        old = self._old_style(source.state_dict(), with_metadata=False)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "old_blendmask.pth")
            torch.save({"model": old}, path)
            target = _build()
            torch.nn.init.zeros_(target.proposal_generator.fcos_head.ctrness.weight)
            DetectionCheckpointer(target).load(path)
        for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
            self.assertTrue(torch.equal(a, b), name)

    def test_current_checkpoint_round_trip(self):
        source = _build()
        target = _build(seed=1)
        target.load_state_dict(source.state_dict(), strict=True)
        self.assertFalse(torch.equal(_build(seed=1).top_layer.weight, source.top_layer.weight))
        self.assertTrue(torch.equal(target.top_layer.weight, source.top_layer.weight))


if __name__ == "__main__":
    unittest.main()
