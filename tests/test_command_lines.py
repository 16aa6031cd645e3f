"""
The command lines of train_net.py, demo.py, tools/*.py and benchmarks/*.py: every script exposes
its parser (``get_parser()``, importable without side effects), every option has a help text,
output locations are ``--output``, datasets are ``--dataset``, and no script prints detectron2's
``torch.jit.script`` FutureWarning (silenced at ``import tensormask_proj``, for those imports
only).
"""

import subprocess
import sys
import unittest
import warnings

import torch
from project_testing import REPO_ROOT
from test_docs import _load_script, script_paths

from tensormask_proj.engine import ConfigKeyEndsList

# Maintained with the GPU checks of the op; its parser is built inside main() (test_docs.py
# reads it from there), and its options are described by its docstring.
NOT_COVERED = {"benchmarks/swap_align2nat.py"}


def _scripts():
    return [s for s in script_paths() if s not in NOT_COVERED]


class TestParsers(unittest.TestCase):
    def test_every_option_has_help(self):
        for script in _scripts():
            parser = _load_script(script).get_parser()
            for action in parser._actions:
                if action.help == "==SUPPRESS==" or action.dest == "help":
                    continue  # internal options (a worker process's), and -h
                with self.subTest(script=script, option=action.option_strings or action.dest):
                    self.assertTrue(action.help, "no help text")

    def test_one_vocabulary(self):
        """Output locations are --output, datasets --dataset, on every script."""
        retired = {"--output-dir", "-o", "--out", "--split", "--json", "--image-root"}
        for script in _scripts():
            options = {
                o for a in _load_script(script).get_parser()._actions for o in a.option_strings
            }
            with self.subTest(script=script):
                self.assertFalse(options & retired)
        for script in ("demo.py", "tools/coco_subset.py", "tools/export_model.py",
                       "tools/plot_metrics.py", "tools/visualize_data.py",
                       "benchmarks/learning.py"):  # fmt: skip
            with self.subTest(script=script):
                options = {
                    o for a in _load_script(script).get_parser()._actions for o in a.option_strings
                }
                self.assertIn("--output", options)
        for script in ("train_net.py", "demo.py", "tools/class_confusion.py",
                       "tools/coco_subset.py", "tools/visualize_data.py",
                       "benchmarks/learning.py", "tools/fit_sizes.py"):  # fmt: skip
            with self.subTest(script=script):
                parser = _load_script(script).get_parser()
                dataset = next(a for a in parser._actions if "--dataset" in a.option_strings)
                self.assertIsInstance(dataset, ConfigKeyEndsList)  # the shared --dataset
                self.assertIn("NAME JSON IMAGE_DIR: register", dataset.help)

    def test_export_offers_only_what_works(self):
        parser = _load_script("tools/export_model.py").get_parser()
        method = next(a for a in parser._actions if a.dest == "export_method")
        self.assertEqual(method.choices, ["tracing"])


class TestFutureWarning(unittest.TestCase):
    def test_scripts_do_not_print_it(self):
        for script in ("train_net.py", "demo.py"):
            with self.subTest(script=script):
                proc = subprocess.run(
                    [sys.executable, script, "--help"], cwd=REPO_ROOT, capture_output=True,
                    text=True,
                )  # fmt: skip
                self.assertEqual(proc.returncode, 0, proc.stderr)
                self.assertNotIn("FutureWarning", proc.stdout + proc.stderr)
        # Everything the scripts import, with the warning made an error.
        code = (
            "import tensormask_proj, tensormask_proj.engine, tensormask_proj.export, "
            "tensormask_proj.evaluation, detectron2.engine, detectron2.evaluation, "
            "detectron2.utils.visualizer"
        )
        proc = subprocess.run(
            [sys.executable, "-W", "error::FutureWarning", "-c", code], cwd=REPO_ROOT,
            capture_output=True, text=True,
        )  # fmt: skip
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_silenced_for_those_imports_only(self):
        """A torch.jit.script call of one's own still warns."""

        def double(x: torch.Tensor) -> torch.Tensor:
            return x * 2

        import tensormask_proj  # noqa: F401

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.jit.script(double)
        self.assertTrue(
            any("torch.jit.script" in str(w.message) for w in caught),
            [str(w.message) for w in caught],
        )


if __name__ == "__main__":
    unittest.main()
