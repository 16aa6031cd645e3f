#!/usr/bin/env python
"""
Install detectron2 0.6, the release tensormask_proj is tested with, into the running Python
environment.

Both routes install the same release, with the same fixes:

* ``--source git`` (``auto`` picks it when ``git ls-remote`` answers): a shallow clone of the
  source repository at the ``v0.6`` tag, built with its compiled ops (C++/CUDA) as users
  normally build detectron2;
* ``--source pypi`` (machines whose only registry is PyPI): the registry's re-upload
  ``pb1-detectron2==0.6``, whose Python files are byte-identical to the ``v0.6`` tag but whose
  sdist lacks ``detectron2/layers/csrc``, so pip cannot build it as it is. This route downloads
  the sdist from the package index pip is configured with and checks its sha256, adds
  ``detectron2/_C.py``, a stand-in for the compiled module that raises a clear error naming the
  unavailable op (rotated boxes, deformable convolution, fast COCOeval) and how to get it, and
  pip-installs the ``detectron2`` Python package (no compilation), with detectron2's own install
  requirements. Nothing in tensormask_proj relies on detectron2's compiled ops.

On both, before installing, the minimal compatibility fixes that upstream detectron2 made after
0.6 for Pillow >= 10 and NumPy >= 1.24 are applied to the sources (see ``PATCHES``; every one is
listed in docs/install.md).

Usage: python tools/install_detectron2.py [--source auto|git|pypi] [--force]
"""

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse

D2_GIT_URL = "https://github.com/facebookresearch/detectron2.git"
# The release tensormask_proj is tested with (the pb1-detectron2 0.6 sdist holds its Python files).
D2_GIT_TAG = "v0.6"
PB1_NAME = "pb1-detectron2"
PB1_VERSION = "0.6"
PB1_FILENAME = f"{PB1_NAME}-{PB1_VERSION}.tar.gz"
PB1_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"

# (file relative to the sdist root, regex, replacement, why). Each is a fix upstream detectron2
# later made itself: Pillow 10 removed Image.LINEAR (an alias of BILINEAR); NumPy 1.24 removed the
# aliases np.bool / np.int / np.float / np.str of the builtins. The regex only touches the bare
# aliases (np.bool_ and np.float32 are left alone).
_NP_ALIAS = (
    r"\bnp\.(bool|int|float|str)\b(?!_)",
    r"\1",
    "NumPy >= 1.24 removed the aliases np.bool/np.int/np.float/np.str",
)
PATCHES = [
    (
        "detectron2/data/transforms/transform.py",
        r"\bImage\.LINEAR\b",
        "Image.BILINEAR",
        "Pillow >= 10 removed Image.LINEAR",
    ),
    ("detectron2/structures/masks.py",) + _NP_ALIAS,
    ("detectron2/data/build.py",) + _NP_ALIAS,
    ("detectron2/data/datasets/pascal_voc.py",) + _NP_ALIAS,
    ("detectron2/evaluation/sem_seg_evaluation.py",) + _NP_ALIAS,
    ("detectron2/evaluation/pascal_voc_evaluation.py",) + _NP_ALIAS,
    ("detectron2/utils/visualizer.py",) + _NP_ALIAS,
    ("detectron2/utils/video_visualizer.py",) + _NP_ALIAS,
]

# detectron2/_C.py: the stand-in for the compiled extension.
C_STUB = '''"""
Stand-in for detectron2's compiled extension, written by tensormask_proj's
tools/install_detectron2.py because this detectron2 was installed without compiling its C++/CUDA
sources (they are missing from the registry's pb1-detectron2 0.6 sdist).

Everything else in detectron2 works. Using one of the compiled ops raises an error that names
it. To get them, build detectron2 0.6 from source (needs access to github.com and a compiler):
    python tools/install_detectron2.py --source git --force
"""

_OPS = {
    "deform_conv": "deformable convolution (DeformConv / ModulatedDeformConv)",
    "modulated_deform_conv": "deformable convolution (DeformConv / ModulatedDeformConv)",
    "roi_align_rotated": "rotated-box RoIAlign (ROIAlignRotated)",
    "box_iou_rotated": "rotated boxes (pairwise_iou_rotated / RotatedBoxes.iou)",
    "nms_rotated": "rotated boxes (nms_rotated)",
    "COCOeval": "the fast C++ COCOeval (COCOEvaluator(..., use_fast_impl=True));"
    " pass use_fast_impl=False",
    "InstanceAnnotation": "the fast C++ COCOeval (COCOEvaluator(..., use_fast_impl=True));"
    " pass use_fast_impl=False",
}


class CompiledOpUnavailable(AttributeError):
    """Raised when a detectron2 compiled op is requested from this stand-in."""


def get_compiler_version():
    return "none (detectron2 installed without its compiled ops)"


def get_cuda_version():
    return "none (detectron2 installed without its compiled ops)"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    what = next((desc for key, desc in _OPS.items() if name.startswith(key)), "a compiled op")
    raise CompiledOpUnavailable(
        f"detectron2._C.{name} is unavailable: {what} needs detectron2's compiled extension, and "
        "this detectron2 was installed without it (tensormask_proj's tools/install_detectron2.py,"
        " from the pb1-detectron2 0.6 sdist that lacks the C++ sources). Build detectron2 0.6 "
        "from source to get it: python tools/install_detectron2.py --source git --force "
        "(in tensormask_proj's repository)"
    )
'''

SETUP_PY = """# Written by tensormask_proj's tools/install_detectron2.py: package detectron2's
# Python sources without compiling its extension (detectron2/_C.py is a stand-in, see its
# docstring).
from setuptools import find_packages, setup

setup(
    name="detectron2",
    version="{version}",
    description="detectron2 {version} (Python package only; compiled ops unavailable)",
    url="https://github.com/facebookresearch/detectron2",
    packages=find_packages(include=["detectron2", "detectron2.*"]),
    package_data={{"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]}},
    python_requires=">=3.6",
    install_requires={requires!r},
)
"""


def log(msg):
    print(f"[install_detectron2] {msg}", flush=True)


def pip(*args):
    cmd = [sys.executable, "-m", "pip", *args]
    log(" ".join(cmd))
    subprocess.check_call(cmd)


def installed_detectron2():
    """Return (version, has_real_C) of an importable detectron2, or None."""
    code = (
        "import detectron2, importlib.util as u; s = u.find_spec('detectron2._C');"
        "print(detectron2.__version__, bool(s and s.origin and not s.origin.endswith('.py')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    version, real = out.stdout.split()
    return version, real == "True"


def git_reachable(timeout=15):
    if shutil.which("git") is None:
        return False
    try:
        r = subprocess.run(
            ["git", "ls-remote", "--heads", D2_GIT_URL],
            capture_output=True,
            timeout=timeout,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0


def git(*args):
    cmd = ["git", *args]
    log(" ".join(cmd))
    subprocess.check_call(cmd, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})


def install_from_git():
    """Clone the v0.6 tag, apply PATCHES and build it (detectron2's own C++/CUDA ops; torch
    must already be installed: no build isolation)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "detectron2")
        git("clone", "--depth", "1", "--branch", D2_GIT_TAG, D2_GIT_URL, src)
        apply_patches(src)
        pip("install", "--no-build-isolation", src)


class _LinkParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def index_urls():
    """The package indexes pip is configured with, PyPI's simple index as the fallback."""
    urls = []
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    )
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(("index-url", "index_url")):
            urls += value.strip().strip("'\"").split()
    for env in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        urls += os.environ.get(env, "").split()
    urls.append("https://pypi.org/simple")
    seen = []
    for u in urls:
        if u not in seen:
            seen.append(u)
    return seen


def fetch_sdist(dest_dir):
    errors = []
    for index in index_urls():
        page_url = index.rstrip("/") + f"/{PB1_NAME}/"
        try:
            if urlparse(page_url).scheme == "file":
                continue  # local mirrors here hold wheels only
            with urllib.request.urlopen(page_url, timeout=60) as r:
                parser = _LinkParser()
                parser.feed(r.read().decode("utf-8", "replace"))
            link = next(
                (link for link in parser.links if urlparse(link).path.endswith("/" + PB1_FILENAME)),
                None,
            )
            if link is None:
                errors.append(f"{page_url}: no {PB1_FILENAME}")
                continue
            url = urljoin(page_url, link.split("#")[0])
            path = os.path.join(dest_dir, PB1_FILENAME)
            log(f"downloading {url}")
            with urllib.request.urlopen(url, timeout=300) as r, open(path, "wb") as f:
                shutil.copyfileobj(r, f)
            digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
            if digest != PB1_SHA256:
                errors.append(f"{url}: sha256 {digest} != expected {PB1_SHA256}")
                continue
            return path
        except OSError as e:
            errors.append(f"{page_url}: {e}")
    raise SystemExit(
        f"[install_detectron2] could not download {PB1_FILENAME}:\n  " + "\n  ".join(errors)
    )


def apply_patches(src_root):
    for rel, pattern, repl, why in PATCHES:
        path = os.path.join(src_root, rel)
        text = open(path).read()
        new, count = re.subn(pattern, repl, text)
        if count == 0:
            raise SystemExit(f"[install_detectron2] patch '{why}' found nothing to fix in {rel}")
        open(path, "w").write(new)
        log(f"patched {rel}: {why} ({count} place(s))")


def base_requirements(src_root):
    req_file = os.path.join(src_root, "pb1_detectron2.egg-info", "requires.txt")
    reqs = []
    for line in open(req_file):
        line = line.strip()
        if line.startswith("["):
            break  # extras and environment-marker sections follow
        if line:
            reqs.append(line)
    return reqs


def install_from_pypi_sdist():
    with tempfile.TemporaryDirectory() as tmp:
        sdist = fetch_sdist(tmp)
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = os.path.join(tmp, f"{PB1_NAME}-{PB1_VERSION}")
        apply_patches(src)
        with open(os.path.join(src, "detectron2", "_C.py"), "w") as f:
            f.write(C_STUB)
        with open(os.path.join(src, "setup.py"), "w") as f:
            f.write(SETUP_PY.format(version=PB1_VERSION, requires=base_requirements(src)))
        for stale in ("setup.cfg", "pyproject.toml"):
            if os.path.exists(os.path.join(src, stale)):
                os.remove(os.path.join(src, stale))
        pip("install", "--no-build-isolation", src)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "--source",
        choices=["auto", "git", "pypi"],
        default=os.environ.get("D2_SOURCE", "auto"),
        help=f"git: build the {D2_GIT_TAG} tag of the source repository (with its compiled "
        f"ops); pypi: the {PB1_NAME}=={PB1_VERSION} fallback (no compiled ops); auto: git when "
        "the repository is reachable (default, or $D2_SOURCE)",
    )
    parser.add_argument(
        "--force", action="store_true", help="reinstall even if detectron2 is installed"
    )
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)

    found = installed_detectron2()
    if found and not args.force:
        version, real_c = found
        log(
            f"detectron2 {version} already installed "
            f"({'with' if real_c else 'without'} compiled ops); use --force to reinstall"
        )
        return
    source = args.source
    if source == "auto":
        source = "git" if git_reachable() else "pypi"
        log(
            f"source repository {'reachable' if source == 'git' else 'unreachable'}: "
            f"installing from {source}"
        )
    if source == "git":
        install_from_git()
    else:
        install_from_pypi_sdist()
    found = installed_detectron2()
    if not found:
        raise SystemExit("[install_detectron2] detectron2 does not import after installation")
    log(f"detectron2 {found[0]} installed ({'with' if found[1] else 'without'} compiled ops)")


if __name__ == "__main__":
    main()
