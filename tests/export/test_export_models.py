"""
TensorMask (head variants) and BlendMask exported to TorchScript and ONNX give the PyTorch
model's detections and masks on embedded validation images other than the one traced on (other
widths, other detection counts), within the tolerances of ``export_testing``.
"""

import functools
import tempfile
import unittest

import onnx
import onnxruntime
import torch

from tensormask_proj.export import export_model, output_names, sample_image, tracing_adapter

from .export_testing import (
    HEAD_VARIANTS,
    assert_same_detections,
    lively_blendmask,
    lively_tensormask,
    nms_threshold,
)

# Traced on validation image 0, checked on these (widths 204..240 px after the resize).
CHECK_IMAGES = (1, 2)


class ExportedModelTest(unittest.TestCase):
    def check_exports(self, cfg, model, check_images=CHECK_IMAGES):
        """Export ``model`` both ways and compare on ``check_images``; returns the references."""
        traced_on = sample_image(cfg, index=0)
        names = output_names(_run_once(model, traced_on))
        references = []
        with tempfile.TemporaryDirectory() as out_dir:
            scripted = torch.jit.load(export_model(model, traced_on, "torchscript", out_dir))
            onnx_file = export_model(model, traced_on, "onnx", out_dir)
            # Standard operators only (no custom domain): runs without a runtime extension.
            domains = {node.domain for node in onnx.load(onnx_file).graph.node}
            self.assertLessEqual(domains, {"", "ai.onnx"})
            session = onnxruntime.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
            for index in check_images:
                image = sample_image(cfg, index=index)
                with torch.no_grad():
                    reference = model([{"image": image}])[0]["instances"]
                    traced_outputs = scripted(image)
                onnx_outputs = session.run(None, {"image": image.numpy()})
                for runtime, outputs in (("torchscript", traced_outputs), ("onnx", onnx_outputs)):
                    with self.subTest(runtime=runtime, image=index):
                        assert_same_detections(self, reference, outputs, names, nms_threshold(cfg))
                references.append(reference)
        return references

    def test_tensormask_head_variants(self):
        # bipyramid: swap_align2nat with lambda 1..16; natural: no op; aligned upscaling:
        # up_align2nat (window upsampling, then the op with lambda 1); mask_only: NMS on the
        # masks' boxes; box_only: no pred_masks output.
        # Two check images for the default head, one for the others (time).
        for variant in ("bipyramid", "natural", "aligned_upscale_1.5", "mask_only", "box_only"):
            with self.subTest(variant=variant):
                images = CHECK_IMAGES if variant == "bipyramid" else CHECK_IMAGES[:1]
                references = self.check_exports(*lively_tensormask(variant), images)
                self.assertTrue(all(len(r) > 50 for r in references), [len(r) for r in references])

    def test_every_head_variant_untraced(self):
        # The traceable inference itself, not traced (fast), against the model for every head
        # variant of the paper; the exports above cover tracing for a subset.
        for variant in HEAD_VARIANTS:
            with self.subTest(variant=variant):
                cfg, model = lively_tensormask(variant)
                image = sample_image(cfg, index=1)
                adapter = tracing_adapter(model, image)
                with torch.no_grad():
                    reference = model([{"image": image}])[0]["instances"]
                    outputs = adapter(image)
                assert_same_detections(self, reference, outputs, output_names(adapter))

    def test_blendmask(self):
        references = self.check_exports(*lively_blendmask())
        for reference in references:
            self.assertEqual(len(reference), 20)
            # Partial masks: neither empty nor filling their boxes.
            self.assertGreater(int(reference.pred_masks.sum()), 100)

    def test_blendmask_with_enlarged_crops(self):
        # MODEL.BLENDMASK.CROP_SCALE: crops and pastes with the enlarged boxes, like the model.
        cfg, model = lively_blendmask(["MODEL.BLENDMASK.CROP_SCALE", 1.5])
        for reference in self.check_exports(cfg, model):
            self.assertEqual(len(reference), 20)
            # Some masks reach beyond their boxes.
            boxes = reference.pred_boxes.tensor
            _, height, width = reference.pred_masks.shape
            ys = torch.arange(height)[None, :, None]
            xs = torch.arange(width)[None, None, :]
            in_box = (
                (xs + 0.5 >= boxes[:, 0, None, None]) & (xs + 0.5 <= boxes[:, 2, None, None])
                & (ys + 0.5 >= boxes[:, 1, None, None]) & (ys + 0.5 <= boxes[:, 3, None, None])
            )  # fmt: skip
            self.assertGreater(int((reference.pred_masks & ~in_box).sum()), 0)

    def test_no_detection(self):
        # An untrained TensorMask detects nothing (prior 0.01 < threshold 0.05): the exported
        # models must return empty outputs, not fail on empty tensors.
        cfg, model = lively_tensormask("bipyramid")
        with torch.no_grad():
            model.head.cls_score.bias.fill_(-10.0)
        references = self.check_exports(cfg, model, check_images=(1,))
        self.assertEqual(len(references[0]), 0)


class DetectionCountTest(unittest.TestCase):
    """
    Tracing records only the branches taken, so no branch may depend on the number of
    detections: a model traced on an image where it detects nothing must handle detections, and
    the other way round. The classification bias is changed after tracing, in the loaded
    TorchScript module as in the PyTorch model.
    """

    def check(self, cfg, model, classifier_path, bias_after):
        image = sample_image(cfg, index=1)
        with torch.no_grad():
            traced_count = len(model([{"image": image}])[0]["instances"])
        names = output_names(_run_once(model, image))
        with tempfile.TemporaryDirectory() as out_dir:
            scripted = torch.jit.load(export_model(model, image, "torchscript", out_dir))
        with torch.no_grad():
            for m in (model, scripted.model.model):
                functools.reduce(getattr, classifier_path.split("."), m).bias.fill_(bias_after)
            reference = model([{"image": image}])[0]["instances"]
            outputs = scripted(image)
        self.assertEqual(min(traced_count, len(reference)), 0)
        self.assertGreater(max(traced_count, len(reference)), 10)
        assert_same_detections(self, reference, outputs, names)

    def test_tensormask_traced_without_detections(self):
        cfg, model = lively_tensormask("bipyramid")
        with torch.no_grad():
            model.head.cls_score.bias.fill_(-10.0)
        self.check(cfg, model, "head.cls_score", -1.0)

    def test_blendmask(self):
        # sigmoid(-200) is 0 in float32: not above the instant config's threshold of 0.
        classifier = "proposal_generator.fcos_head.cls_logits"
        for traced_bias, bias_after in ((-200.0, 0.0), (0.0, -200.0)):
            with self.subTest(traced_bias=traced_bias):
                cfg, model = lively_blendmask()
                with torch.no_grad():
                    model.get_submodule(classifier).bias.fill_(traced_bias)
                self.check(cfg, model, classifier, bias_after)


def _run_once(model, image):
    adapter = tracing_adapter(model, image)
    with torch.no_grad():
        adapter(*adapter.flattened_inputs)
    return adapter


if __name__ == "__main__":
    unittest.main()
