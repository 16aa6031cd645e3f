"""
Export failures name the module that could not be exported (deliberately non-exportable modules
put into real models), and unsupported requests say what is supported.
"""

import re
import tempfile
import unittest

import torch
from torch import nn

from tensormask_proj.export import ExportError, deployable_model, export_model, sample_image

from .export_testing import lively_blendmask, lively_tensormask


class Untraceable(nn.Module):
    """Runs its inner module, except while being traced."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        if torch.jit.is_tracing():
            raise RuntimeError("Untraceable refuses to be traced")
        return self.inner(x)


@torch.library.custom_op("export_test::twice", mutates_args=())
def twice(x: torch.Tensor) -> torch.Tensor:
    return x * 2


class WithoutOnnxTranslation(nn.Module):
    """Traces (as the operator export_test::twice), but that operator has no ONNX translation."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return twice(self.inner(x))


class ExportErrorTest(unittest.TestCase):
    def test_untraceable_module_is_named(self):
        cfg, model = lively_tensormask("bipyramid")
        model.head.bbox_pred = Untraceable(model.head.bbox_pred)
        image = sample_image(cfg)
        for fmt in ("torchscript", "onnx"):
            with self.subTest(format=fmt), tempfile.TemporaryDirectory() as out_dir:
                with self.assertRaisesRegex(
                    ExportError,
                    rf"{fmt} export of TensorMask: module 'head\.bbox_pred' \(Untraceable\) could "
                    r"not be exported at .*test_export_errors\.py:\d+ \(forward\): Untraceable "
                    "refuses to be traced",
                ):
                    export_model(model, image, fmt, out_dir)

    def test_operator_without_onnx_translation_is_named(self):
        cfg, model = lively_blendmask()
        model.top_layer = WithoutOnnxTranslation(model.top_layer)
        with tempfile.TemporaryDirectory() as out_dir:
            with self.assertRaisesRegex(
                ExportError,
                r"onnx export of BlendMask: module 'top_layer' \(WithoutOnnxTranslation\) calls "
                r"operator export_test::twice, which cannot be exported",
            ):
                export_model(model, sample_image(cfg), "onnx", out_dir)

    def test_scripting_is_refused_with_the_reason(self):
        cfg, model = lively_blendmask()
        with tempfile.TemporaryDirectory() as out_dir:
            with self.assertRaises(ExportError) as caught:
                export_model(model, sample_image(cfg), "torchscript", out_dir, method="scripting")
        message = str(caught.exception)
        self.assertRegex(message, "--export-method scripting is not supported for BlendMask")
        self.assertRegex(message, r"\(model\.[\w.]+ is not scriptable: ")
        self.assertRegex(message, "use --export-method tracing")

    def test_other_models_and_bad_arguments(self):
        class MaskRCNN(nn.Module):
            pass

        supported = re.escape("['BlendMask', 'TensorMask'], got MaskRCNN")
        with self.assertRaisesRegex(ExportError, supported):
            deployable_model(MaskRCNN())
        cfg, model = lively_blendmask()
        with self.assertRaisesRegex(ValueError, "export format must be one of .*, got 'tflite'"):
            export_model(model, torch.zeros(3, 32, 32), "tflite", "unused")
        with self.assertRaisesRegex(FileNotFoundError, "--sample-image: no such file: missing.png"):
            sample_image(cfg, "missing.png")


if __name__ == "__main__":
    unittest.main()
