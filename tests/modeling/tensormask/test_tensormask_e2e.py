"""TensorMask end to end on CPU: every head variant trains and infers; output format."""

import copy
import unittest
from unittest import mock

import numpy as np
import torch
from detectron2.data import DatasetMapper
from detectron2.modeling import build_model
from detectron2.structures import BoxMode
from torch.utils._python_dispatch import TorchDispatchMode

from .tensormask_testing import HEAD_VARIANTS, make_input, regular_and_empty_batch, tensormask_cfg


def build(variant="bipyramid", opts=(), seed=0):
    torch.manual_seed(seed)
    return build_model(tensormask_cfg(opts=HEAD_VARIANTS[variant] + list(opts)))


def expected_loss_keys(variant):
    keys = {"loss_cls"}
    if variant != "mask_only":
        keys.add("loss_box_reg")
    if variant != "box_only":
        keys.add("loss_mask")
    return keys


def crowd_only_input(cfg):
    """An image whose only annotation is a crowd region, through detectron2's DatasetMapper."""
    image = np.zeros((96, 128, 3), dtype=np.uint8)
    dataset_dict = {
        "file_name": "in_memory.jpg",
        "height": 96,
        "width": 128,
        "annotations": [
            {
                "bbox": [10, 10, 60, 50],
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": 1,
                "iscrowd": 1,
                "segmentation": [[10, 10, 60, 10, 60, 50, 10, 50]],
            }
        ],
    }
    mapper = DatasetMapper(cfg, is_train=True, augmentations=[])
    with mock.patch("detectron2.data.detection_utils.read_image", return_value=image):
        return mapper(dataset_dict)


class TestTraining(unittest.TestCase):
    def test_every_variant_trains_on_regular_and_empty_images(self):
        for variant in HEAD_VARIANTS:
            with self.subTest(variant=variant):
                model = build(variant).train()
                losses = model(regular_and_empty_batch())
                self.assertEqual(set(losses), expected_loss_keys(variant))
                total = sum(losses.values())
                self.assertTrue(bool(torch.isfinite(total)))
                for k, v in losses.items():
                    self.assertGreater(float(v), 0, k)
                total.backward()
                # Every parameter takes part in the graph (DistributedDataParallel needs it).
                missing = [n for n, p in model.named_parameters() if p.grad is None]
                self.assertEqual(missing, [])

    def test_only_empty_and_crowd_only_images(self):
        cfg = tensormask_cfg()
        crowd = crowd_only_input(cfg)
        self.assertEqual(len(crowd["instances"]), 0)  # the mapper drops crowd regions
        for variant in ("bipyramid", "natural", "mask_only"):
            with self.subTest(variant=variant):
                model = build(variant).train()
                losses = model([crowd, make_input((96, 128), seed=3)])
                self.assertEqual(set(losses), expected_loss_keys(variant))
                # No positive: only the classification loss is non-zero.
                self.assertGreater(float(losses["loss_cls"]), 0)
                for k in set(losses) - {"loss_cls"}:
                    self.assertEqual(float(losses[k]), 0.0, k)
                sum(losses.values()).backward()

    def test_bitmask_targets_match_polygon_targets(self):
        # The same triangles as PolygonMasks and rasterised to BitMasks, through one model:
        # windows are assigned by box, so the classification and box losses are equal; the mask
        # targets go through BitMasks.crop_and_resize instead of polygon rasterisation, and
        # differ only at the triangles' edges (measured: loss_mask 0.26% apart).
        model = build("bipyramid").train()
        with torch.no_grad():
            from_polygons = model(regular_and_empty_batch(bitmask=False))
            from_bitmasks = model(regular_and_empty_batch(bitmask=True))
        self.assertEqual(set(from_bitmasks), set(from_polygons))
        for k in ("loss_cls", "loss_box_reg"):
            self.assertEqual(float(from_bitmasks[k]), float(from_polygons[k]), k)
        torch.testing.assert_close(
            from_bitmasks["loss_mask"], from_polygons["loss_mask"], rtol=0.01, atol=0.0
        )


class TestInference(unittest.TestCase):
    def _check_output(self, instances, height, width, mask_on=True):
        fields = {"pred_boxes", "scores", "pred_classes"} | ({"pred_masks"} if mask_on else set())
        self.assertEqual(set(instances.get_fields()), fields)
        self.assertEqual(instances.image_size, (height, width))
        n = len(instances)
        self.assertEqual(tuple(instances.pred_boxes.tensor.shape), (n, 4))
        self.assertEqual(instances.scores.dtype, torch.float32)
        self.assertEqual(instances.pred_classes.dtype, torch.int64)
        if mask_on:
            self.assertEqual(tuple(instances.pred_masks.shape), (n, height, width))
            self.assertEqual(instances.pred_masks.dtype, torch.bool)

    def test_every_variant_infers(self):
        for variant in HEAD_VARIANTS:
            with self.subTest(variant=variant):
                model = build(variant).eval()
                model.test_score_thresh = 0.0  # random weights: keep detections
                inputs = [make_input((128, 160), seed=4)]
                inputs[0]["height"], inputs[0]["width"] = 256, 320  # rescaled output
                with torch.no_grad():
                    out = model(inputs)
                inst = out[0]["instances"]
                self._check_output(inst, 256, 320, mask_on=variant != "box_only")
                self.assertGreater(len(inst), 0)
                self.assertLessEqual(len(inst), 100)
                self.assertTrue(bool((inst.scores[:-1] >= inst.scores[1:]).all()))

    def test_zero_detections_still_have_pred_masks(self):
        model = build("bipyramid").eval()
        model.test_score_thresh = 1.1
        with torch.no_grad():
            out = model([make_input((96, 128), seed=5), make_input((64, 64), seed=6)])
        for o, (h, w) in zip(out, [(96, 128), (64, 64)]):
            self._check_output(o["instances"], h, w)
            self.assertEqual(len(o["instances"]), 0)

    def test_detection_limit_and_masks_follow_window_boxes(self):
        model = build("bipyramid").eval()
        model.test_score_thresh = 0.0
        model.max_detections_per_image = 7
        # Large positive mask logits: every window is "all foreground", so each pasted mask is
        # exactly its window box clipped to the image.
        for name, p in model.head.named_parameters():
            if name.startswith("mask_pred"):
                torch.nn.init.zeros_(p)
                if name.endswith("bias"):
                    torch.nn.init.constant_(p, 10.0)
        inputs = [make_input((96, 128), seed=7)]
        with torch.no_grad():
            images = model.preprocess_image(inputs)
            features = [model.backbone(images.tensor)[f] for f in model.head_in_features]
            raw = model.forward_inference(images, features, model.head(features))[0]
            out = model(inputs)[0]["instances"]
        self.assertEqual(len(out), 7)
        boxes = raw.pred_window_boxes.tensor
        height, width = 96, 128

        def check_edge(mask_edge, box_edge, image_edge, inside):
            """One edge of the pasted mask against its window box's edge clipped to the image.
            Inside the image they agree to a pixel. Where the window reaches the image border,
            a coarse level's window cells near it read aligned predictions beyond the feature
            map, which swap_align2nat (like the official op) takes as zeros: the mask may stop
            up to one cell of the finest level (4 px) short of the border there."""
            clipped = max(box_edge, image_edge) if image_edge == 0 else min(box_edge, image_edge)
            gap = abs(mask_edge - clipped)
            self.assertLessEqual(gap, 1 if inside else 4, (mask_edge, box_edge))

        for mask, box in zip(out.pred_masks, boxes):
            x0, y0, x1, y1 = box.tolist()
            ys, xs = torch.nonzero(mask, as_tuple=True)
            self.assertGreater(len(ys), 0)
            check_edge(int(xs.min()), x0, 0, x0 > 0)
            check_edge(int(ys.min()), y0, 0, y0 > 0)
            check_edge(int(xs.max()) + 1, x1, width, x1 < width)
            check_edge(int(ys.max()) + 1, y1, height, y1 < height)

    def test_mask_only_boxes_are_mask_bounding_boxes(self):
        model = build("mask_only").eval()
        model.test_score_thresh = 0.0
        with torch.no_grad():
            out = model([make_input((96, 128), seed=8)])[0]["instances"]
        self.assertGreater(len(out), 0)
        for mask, box in zip(out.pred_masks, out.pred_boxes.tensor):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            # The pasted mask lies inside its (window-cell aligned) box, up to one pixel.
            self.assertGreaterEqual(int(xs.min()), int(box[0]) - 1)
            self.assertLessEqual(int(xs.max()), int(box[2]) + 1)


class OpNames(TorchDispatchMode):
    """Records the names of the operators dispatched inside the context."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.name())
        return func(*args, **(kwargs or {}))


class TestCompiledOps(unittest.TestCase):
    def test_default_config_windows_go_through_the_compiled_op(self):
        # The quick config's bipyramid with SPARSE_WINDOWS (default): training computes the
        # positive windows, inference the detections' windows, with swap_align2nat_at (and its
        # backward), never the dense op.
        model = build("bipyramid").train()
        with OpNames() as ops:
            losses = model(regular_and_empty_batch())
            sum(losses.values()).backward()
        self.assertIn("tensormask_proj::swap_align2nat_at", ops.names)
        self.assertIn("tensormask_proj::swap_align2nat_at_backward", ops.names)
        self.assertNotIn("tensormask_proj::swap_align2nat", ops.names)
        model.eval()
        model.test_score_thresh = 0.0
        with OpNames() as ops, torch.no_grad():
            model([make_input((96, 128), seed=11)])
        self.assertIn("tensormask_proj::swap_align2nat_at", ops.names)
        self.assertNotIn("tensormask_proj::swap_align2nat", ops.names)


class TestMaskBranchInterface(unittest.TestCase):
    def test_meta_architecture_calls_each_method_once(self):
        # Training asks the mask branch for its loss, inference for the windows of the
        # detections (or, with mask-bb NMS, of the candidates), once per batch of two images.
        for variant in ("bipyramid", "box_head_mask_bb_nms"):
            with self.subTest(variant=variant):
                model = build(variant)
                branch = model.mask_branch
                with mock.patch.object(branch, "losses", wraps=branch.losses) as losses:
                    with mock.patch.object(branch, "predict", wraps=branch.predict) as predict:
                        model.train()(regular_and_empty_batch())
                        self.assertEqual((losses.call_count, predict.call_count), (1, 0))
                        model.eval()
                        model.test_score_thresh = 0.0
                        with torch.no_grad():
                            out = model([make_input((96, 128), seed=12)] * 2)
                        self.assertEqual((losses.call_count, predict.call_count), (1, 1))
                self.assertGreater(len(out[1]["instances"]), 0)


class TestRefusedCombinations(unittest.TestCase):
    def test_refused(self):
        cases = [
            (
                ["MODEL.TENSOR_MASK.BIPYRAMID_ON", True, "MODEL.TENSOR_MASK.ALIGNED_ON", False],
                "BIPYRAMID_ON.*ALIGNED_ON",
            ),
            (["MODEL.TENSOR_MASK.UPSCALE_FACTOR", 2.0], "UPSCALE_FACTOR.*BIPYRAMID_ON"),
            (
                HEAD_VARIANTS["aligned"] + ["MODEL.TENSOR_MASK.UPSCALE_FACTOR", 1.5],
                "UPSCALE_FACTOR=1.5 does not divide the window side 8",
            ),
            (["MODEL.TENSOR_MASK.BOX_HEAD_ON", False], "BOX_HEAD_ON=False.*NMS_BOXES='mask'"),
            (
                ["MODEL.MASK_ON", False, "MODEL.TENSOR_MASK.NMS_BOXES", "mask"],
                "NMS_BOXES='mask'.*MASK_ON",
            ),
            (
                [
                    "MODEL.MASK_ON",
                    False,
                    "MODEL.TENSOR_MASK.BOX_HEAD_ON",
                    False,
                    "MODEL.TENSOR_MASK.NMS_BOXES",
                    "mask",
                ],
                "nothing to predict",
            ),
            (["MODEL.TENSOR_MASK.NMS_BOXES", "box"], "NMS_BOXES"),
            # The upscaling heads read UPSCALE_MODE (the bipyramid has no window upscaling).
            (
                HEAD_VARIANTS["aligned"] + ["MODEL.TENSOR_MASK.UPSCALE_MODE", "cubic"],
                "MODEL.TENSOR_MASK.UPSCALE_MODE must be 'bilinear' or 'nearest', got 'cubic'",
            ),
            (["MODEL.TENSOR_MASK.TOPK_CANDIDATES_TEST", 0], "TOPK_CANDIDATES_TEST must be >= 1"),
            (["MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", [[0.5, 1.0]]], "ASPECT_RATIOS"),
            (["MODEL.ANCHOR_GENERATOR.SIZES", [[16, 24]]], "one list of window sizes per level"),
            (["MODEL.ANCHOR_GENERATOR.SIZES", [[16], [32], [64], [100], [256]]], r"SIZES\[3\]"),
            (
                ["MODEL.ANCHOR_GENERATOR.SIZES", [[18], [36], [72], [144], [288]]],
                "multiples of the finest stride",
            ),
            (["MODEL.TENSOR_MASK.IN_FEATURES", ["p2", "p3", "p4", "p5", "p9"]], "p9"),
        ]
        for opts, message in cases:
            with self.subTest(opts=opts):
                with self.assertRaisesRegex(ValueError, message):
                    build_model(tensormask_cfg(opts=opts))


class TestSparseEqualsDense(unittest.TestCase):
    """SPARSE_WINDOWS gives the official dense computation's losses, gradients and outputs."""

    # Without normalisation in the towers (official) and with GroupNorm (quick configs).
    CASES = [(v, "") for v in HEAD_VARIANTS if v != "box_only"] + [
        ("bipyramid", "GN"),
        ("aligned", "GN"),
    ]

    def _pair(self, variant, norm):
        opts = ["MODEL.TENSOR_MASK.SPARSE_WINDOWS", True, "MODEL.TENSOR_MASK.HEAD_NORM", norm]
        sparse = build(variant, opts)
        # Non-trivial mask logits (the initial ones are all ~0).
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, p in sparse.head.named_parameters():
                if name.startswith("mask_"):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        dense = copy.deepcopy(sparse)
        dense.mask_branch.sparse_windows = False
        return sparse, dense

    def test_training(self):
        # float64: equal losses and gradients, not merely close ones.
        for variant, norm in self.CASES:
            with self.subTest(variant=variant, norm=norm):
                sparse, dense = (m.double() for m in self._pair(variant, norm))
                batch = regular_and_empty_batch()
                ls, ld = sparse.train()(batch), dense.train()(batch)
                for k in ld:
                    torch.testing.assert_close(ls[k], ld[k], rtol=1e-6, atol=1e-7)
                sum(ls.values()).backward()
                sum(ld.values()).backward()
                for (name, ps), pd in zip(sparse.named_parameters(), dense.parameters()):
                    torch.testing.assert_close(ps.grad, pd.grad, rtol=1e-6, atol=1e-9, msg=name)

    # Pasting is the same code for both paths, so the pasted masks (slow: 100 per image) are
    # compared for a few representative cases; the mask windows for every case.
    PASTED_CASES = {("bipyramid", ""), ("aligned_upscale_1.5", ""), ("aligned", "GN")}

    def test_inference(self):
        self.assertLessEqual(self.PASTED_CASES, set(self.CASES))
        for variant, norm in self.CASES:
            with self.subTest(variant=variant, norm=norm):
                sparse, dense = self._pair(variant, norm)
                inputs = [make_input((96, 136), seed=9), make_input((112, 80), seed=10)]
                raw, out = [], []
                for model in (sparse, dense):
                    model.eval()
                    model.test_score_thresh = 0.0
                    with torch.no_grad():
                        images = model.preprocess_image(inputs)
                        feats = [model.backbone(images.tensor)[f] for f in model.head_in_features]
                        raw.append(model.forward_inference(images, feats, model.head(feats)))
                        if (variant, norm) in self.PASTED_CASES:
                            out.append(model(inputs))
                for rs, rd in zip(raw[0], raw[1]):
                    self.assertGreater(len(rd), 0)
                    torch.testing.assert_close(rs.pred_boxes.tensor, rd.pred_boxes.tensor)
                    torch.testing.assert_close(rs.scores, rd.scores)
                    self.assertTrue(torch.equal(rs.pred_classes, rd.pred_classes))
                    # float32: the crops' convolutions sum in another order than the full maps'.
                    for ws, wd in zip(rs.pred_mask_windows.windows, rd.pred_mask_windows.windows):
                        torch.testing.assert_close(ws, wd, rtol=1e-4, atol=1e-4)
                for os_, od in zip(*out) if out else ():
                    ms, md = os_["instances"].pred_masks, od["instances"].pred_masks
                    self.assertEqual(ms.shape, md.shape)
                    # Binarised at 0.5 after bilinear pasting: a pixel could only flip if its
                    # probability were within float rounding of 0.5.
                    self.assertLessEqual(int((ms != md).sum()), ms.numel() // 100000)

    def test_mask_branch_windows_at_every_position(self):
        # Request every position of every level (the union region is the whole map) and single
        # corner / centre positions (crops clipped at the borders). In float64, so that the
        # comparison shows the computation is the same, not just close.
        for variant, norm in self.CASES:
            with self.subTest(variant=variant, norm=norm):
                sparse, _ = self._pair(variant, norm)
                branch = sparse.double().mask_branch
                g = torch.Generator().manual_seed(1)
                sizes = [(24, 28), (12, 14), (6, 7), (3, 4), (2, 2)]
                feats = [
                    torch.randn(2, 64, h, w, generator=g, dtype=torch.float64) for h, w in sizes
                ]
                with torch.no_grad():
                    dense = branch.dense_mask_windows(feats)
                    mask_features = branch.mask_features(feats)
                    for level, f in enumerate(feats):
                        h, w = f.shape[-2:]
                        a = branch.num_anchors
                        img = torch.arange(2).repeat_interleave(h * w * a)
                        pos = torch.arange(h * w * a).repeat(2)
                        ys, xs, aid = pos // a // w, pos // a % w, pos % a
                        got = branch.mask_windows(mask_features, level, img, ys, xs, aid)
                        self._compare(branch, dense, level, got, img, ys, xs, aid)
                        for y, x in [(0, 0), (h - 1, w - 1), (h // 2, w // 2), (0, w - 1)]:
                            one = [torch.tensor([v]) for v in (1, y, x, a - 1)]
                            got = branch.mask_windows(mask_features, level, *one)
                            self._compare(branch, dense, level, got, *one)

    def _compare(self, branch, dense, level, got, img, ys, xs, aid):
        for a, windows in enumerate(got):
            sel = aid == a
            if not bool(sel.any()):
                self.assertIsNone(windows)
                continue
            side = branch.window_side(level, a)
            expected = dense[level][a][img[sel], :, ys[sel], xs[sel]].view(-1, side, side)
            torch.testing.assert_close(windows, expected, rtol=1e-10, atol=1e-10)


if __name__ == "__main__":
    unittest.main()
