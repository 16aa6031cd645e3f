"""
Installation: setup.py declares the runtime packages of requirements.txt (lower bounds there,
exact pins here); tools/install_detectron2.py installs detectron2 0.6 by both routes (the git
route clones the v0.6 tag and applies the same fixes as the registry route before building,
checked here without network); importing tensormask_proj without detectron2 says how to get it.
"""

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

from project_testing import REPO_ROOT


def _load(relative, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, relative))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _name(requirement: str) -> str:
    name = re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name.lower())


# requirements.txt also pins what builds and tests the project, which are not runtime packages.
BUILD_AND_TEST = {"ninja", "setuptools", "wheel", "pytest"}


class TestSetupRequirements(unittest.TestCase):
    def setUp(self):
        self.setup_py = _load("setup.py", "tensormask_proj_setup")  # (main guard: no build)
        with open(os.path.join(REPO_ROOT, "requirements.txt")) as f:
            self.pinned = {
                _name(line) for line in f if line.strip() and not line.lstrip().startswith("#")
            }

    def test_runtime_packages_are_the_pinned_ones(self):
        declared = {_name(r) for r in self.setup_py.INSTALL_REQUIRES}
        extras = {_name(r) for reqs in self.setup_py.EXTRAS_REQUIRE.values() for r in reqs}
        self.assertLessEqual(declared | extras, self.pinned, "declared but not pinned")
        self.assertEqual(self.pinned - declared - extras, BUILD_AND_TEST - extras)
        self.assertEqual(set(self.setup_py.EXTRAS_REQUIRE), {"export", "test"})

    def test_lower_bounds_only(self):
        for requirement in self.setup_py.INSTALL_REQUIRES:
            self.assertNotIn("==", requirement, "exact pins belong to requirements.txt")


class TestInstallDetectron2(unittest.TestCase):
    def setUp(self):
        self.tool = _load("tools/install_detectron2.py", "install_detectron2_tool")

    def test_git_route_builds_the_patched_v0_6_tag(self):
        calls, patched_at_install = [], {}

        def fake_check_call(cmd, **kwargs):
            calls.append(cmd)
            if cmd[0] == "git":
                # The clone: a source tree holding the text every patch fixes.
                src = cmd[-1]
                for rel, *_ in self.tool.PATCHES:
                    os.makedirs(os.path.join(src, os.path.dirname(rel)), exist_ok=True)
                    with open(os.path.join(src, rel), "w") as f:
                        f.write("Image.LINEAR\nx = np.bool(1) + np.float(2) + np.bool_(0)\n")
            else:
                src = cmd[-1]
                for rel, *_ in self.tool.PATCHES:
                    with open(os.path.join(src, rel)) as f:
                        patched_at_install[rel] = f.read()

        with mock.patch.object(self.tool.subprocess, "check_call", fake_check_call):
            self.tool.install_from_git()
        git, pip = calls
        self.assertEqual(git[:6], ["git", "clone", "--depth", "1", "--branch", "v0.6"])
        self.assertEqual(git[6], "https://github.com/facebookresearch/detectron2.git")
        self.assertEqual(pip[1:5], ["-m", "pip", "install", "--no-build-isolation"])
        self.assertEqual(len(patched_at_install), len(self.tool.PATCHES))
        transform = patched_at_install["detectron2/data/transforms/transform.py"]
        self.assertIn("Image.BILINEAR", transform)
        masks = patched_at_install["detectron2/structures/masks.py"]
        self.assertIn("x = bool(1) + float(2) + np.bool_(0)", masks)

    def test_no_unpinned_source(self):
        with open(os.path.join(REPO_ROOT, "tools", "install_detectron2.py")) as f:
            text = f.read()
        self.assertNotIn("git+", text)  # pip's unpinned git+URL route is gone
        self.assertIn("--source git --force", self.tool.C_STUB)
        args = self.tool.get_parser().parse_args(["--source", "git", "--force"])
        self.assertEqual((args.source, args.force), ("git", True))


class TestImportWithoutDetectron2(unittest.TestCase):
    def test_error_names_the_installer(self):
        code = "import sys; sys.modules['detectron2'] = None; import tensormask_proj"
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp
            )
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("needs detectron2 0.6", proc.stderr)
        self.assertIn("python tools/install_detectron2.py", proc.stderr)


if __name__ == "__main__":
    unittest.main()
