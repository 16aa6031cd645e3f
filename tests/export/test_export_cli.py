"""
tools/export_model.py end to end: a BlendMask checkpoint exported to TorchScript by the command's
``main`` (default sample image), then loaded and run in a fresh process that has only torch,
torchvision and the op library (``torch.ops.load_library``), not tensormask_proj.
"""

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

import torch
from project_testing import REPO_ROOT

from tensormask_proj.export import op_library_path, output_names, sample_image, tracing_adapter

from .export_testing import BLENDMASK_CONFIG, assert_same_detections, lively_blendmask

_spec = importlib.util.spec_from_file_location(
    "export_model_tool", os.path.join(REPO_ROOT, "tools", "export_model.py")
)
export_model_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(export_model_tool)

# What a deployment runs: no tensormask_proj, only the library of its operators.
RUN_EXPORTED = textwrap.dedent("""
    import sys, torch, torchvision  # torchvision: the nms and roi_align operators
    library, model_file, image_file, out_file = sys.argv[1:]
    torch.ops.load_library(library)
    model = torch.jit.load(model_file)
    torch.save(model(torch.load(image_file)), out_file)
    assert "tensormask_proj" not in sys.modules, "tensormask_proj was imported"
    """)


class ExportCommandTest(unittest.TestCase):
    def test_torchscript_from_the_command_line(self):
        cfg, model = lively_blendmask()
        image = sample_image(cfg, index=1)
        with torch.no_grad():
            reference = model([{"image": image}])[0]["instances"]
        adapter = tracing_adapter(model, image)
        with torch.no_grad():
            adapter(*adapter.flattened_inputs)
        with tempfile.TemporaryDirectory() as tmp:
            weights = os.path.join(tmp, "model.pth")
            torch.save({"model": model.state_dict()}, weights)
            out_dir = os.path.join(tmp, "exported")
            status = export_model_tool.main(
                [
                    "--config-file",
                    BLENDMASK_CONFIG,
                    "--format",
                    "torchscript",
                    "--export-method",
                    "tracing",
                    "--output",
                    out_dir,
                    "MODEL.WEIGHTS",
                    weights,
                ]
            )
            self.assertEqual(status, 0)
            image_file, out_file = os.path.join(tmp, "image.pt"), os.path.join(tmp, "out.pt")
            torch.save(image, image_file)
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    RUN_EXPORTED,
                    op_library_path(),
                    os.path.join(out_dir, "model.ts"),
                    image_file,
                    out_file,
                ],
                check=True,
                capture_output=True,
                cwd=tmp,
            )
            assert_same_detections(self, reference, torch.load(out_file), output_names(adapter))
        self.assertEqual(len(reference), 20)

    def test_command_line_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr):
                status = export_model_tool.main(
                    [
                        "--config-file",
                        BLENDMASK_CONFIG,
                        "--format",
                        "onnx",
                        "--output",
                        tmp,
                        "--sample-image",
                        "missing.png",
                    ]
                )
            self.assertEqual(status, 1)
            self.assertIn(
                "export_model.py: error: --sample-image: no such file: missing.png",
                stderr.getvalue(),
            )
            self.assertEqual(os.listdir(tmp), [])

    @unittest.skipIf(torch.cuda.is_available(), "needs a machine without a GPU")
    def test_device_without_gpu(self):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            status = export_model_tool.main(
                ["--config-file", BLENDMASK_CONFIG, "--output", "unused", "MODEL.DEVICE", "cuda"]
            )
        self.assertEqual(status, 1)
        self.assertIn("export_model.py: error: MODEL.DEVICE is 'cuda'", stderr.getvalue())


if __name__ == "__main__":
    unittest.main()
