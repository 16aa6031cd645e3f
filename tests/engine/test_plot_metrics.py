"""
plot_metrics: reading a detectron2 metrics.json (including the one of a killed and resumed run)
and writing the loss/AP picture, as a function and as the command-line tool.
"""

import importlib.util
import io
import json
import os
import shutil
import tempfile
import unittest
from unittest import mock

import numpy as np
from PIL import Image
from project_testing import REPO_ROOT

from tensormask_proj.engine import load_metrics, mean_losses, plot_metrics

_spec = importlib.util.spec_from_file_location(
    "plot_metrics_tool", os.path.join(REPO_ROOT, "tools", "plot_metrics.py")
)
plot_metrics_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plot_metrics_tool)


def _write(path, records, tail=""):
    with open(path, "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
        f.write(tail)


class TestPlotMetrics(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="test_plot_metrics_")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.path = os.path.join(self.dir, "metrics.json")
        # A run killed after iteration 39 (checkpoint at 19), resumed at 20: iterations 20..39
        # appear twice, the resumed run's values last. Then a final evaluation.
        first = [
            {"iteration": 19, "total_loss": 3.0, "loss_cls": 2.0, "lr": 0.01},
            {"iteration": 39, "total_loss": 9.0, "loss_cls": 8.0, "lr": 0.01},
        ]
        resumed = [
            {"iteration": 39, "total_loss": 2.5, "loss_cls": 1.5, "lr": 0.01},
            {"iteration": 59, "total_loss": float("nan"), "loss_cls": 1.0, "lr": 0.001},
            {"iteration": 59, "segm/AP": 12.5, "bbox/AP": 20.0, "segm/AP50": 30.0},
        ]
        # json.dumps writes NaN as the bare token NaN, which json.loads reads back.
        _write(self.path, first + resumed, tail='{"iteration": 79, "total_lo')

    def test_load_metrics(self):
        series = load_metrics(self.path)
        # Later record wins for iteration 39; NaN dropped; truncated last line skipped.
        self.assertEqual(series["total_loss"], [(19, 3.0), (39, 2.5)])
        self.assertEqual(series["loss_cls"], [(19, 2.0), (39, 1.5), (59, 1.0)])
        self.assertEqual(series["segm/AP"], [(59, 12.5)])
        self.assertEqual(series["bbox/AP"], [(59, 20.0)])
        self.assertNotIn("iteration", series)

    def test_mean_losses(self):
        series = load_metrics(self.path)
        # From 39 on: loss_cls 1.5 (the resumed record) and 1.0; total_loss only 2.5 (NaN dropped).
        self.assertEqual(mean_losses(series, 39), {"loss_cls": 1.25, "total_loss": 2.5})
        self.assertEqual(mean_losses(series, 0), {"loss_cls": 1.5, "total_loss": 2.75})
        with self.assertRaisesRegex(ValueError, r"iteration >= 60 \(last loss record: 59\)"):
            mean_losses(series, 60)

    def test_plot_writes_png(self):
        out = os.path.join(self.dir, "metrics.png")
        self.assertEqual(plot_metrics(self.path, out), out)
        image = np.asarray(Image.open(out).convert("RGB"))
        self.assertEqual(image.shape, (450, 1300, 3))  # figsize (13, 4.5) at 100 dpi
        self.assertGreater(len(np.unique(image.reshape(-1, 3), axis=0)), 10)  # not blank
        self.assertEqual(sorted(os.listdir(self.dir)), ["metrics.json", "metrics.png"])

    def test_errors(self):
        with self.assertRaisesRegex(FileNotFoundError, "nowhere.json"):
            load_metrics(os.path.join(self.dir, "nowhere.json"))
        empty = os.path.join(self.dir, "empty.json")
        _write(empty, [{"iteration": 3, "note": "text only"}])
        with self.assertRaisesRegex(ValueError, "holds no metrics"):
            load_metrics(empty)

    def test_command_line_on_output_dir(self):
        # `python tools/plot_metrics.py OUTPUT_DIR`, in this process.
        with mock.patch("sys.stdout", io.StringIO()) as out:
            plot_metrics_tool.main([self.dir])
        png = os.path.join(self.dir, "metrics.png")
        self.assertEqual(out.getvalue().strip(), png)
        self.assertEqual(Image.open(png).size, (1300, 450))

    def test_command_line_mean_from(self):
        with mock.patch("sys.stdout", io.StringIO()) as out:
            plot_metrics_tool.main([self.path, "--mean-from", "39"])
        self.assertRegex(out.getvalue(), r"mean from iteration 39:\n  loss_cls +1\.2500\n")
        with mock.patch("sys.stdout", io.StringIO()):
            message = "metrics.json: no loss recorded at iteration >= 99"
            with self.assertRaisesRegex(SystemExit, message):
                plot_metrics_tool.main([self.path, "--mean-from", "99"])


if __name__ == "__main__":
    unittest.main()
