#!/usr/bin/env python
"""
Build tensormask_proj and its compiled operators (tensormask_proj._C).

The CPU kernels are always compiled. The CUDA kernels are compiled too whenever a CUDA toolkit
matching torch's CUDA version is found, even without a visible GPU (so every build proves the
CUDA code compiles). Environment variables:
  FORCE_CUDA=1 / FORCE_CUDA=0   compile the CUDA kernels / never compile them
  CUDA_HOME                      the toolkit to use; when unset it is asked from `nvcc` itself
                                 (the `nvcc` on PATH may be a wrapper script in another prefix)
  TORCH_CUDA_ARCH_LIST           GPU architectures; default: the visible GPUs', else "8.0;9.0"
  MAX_JOBS                       parallel compile jobs (ninja)
Install with `pip install --no-build-isolation -e .` (torch must already be installed: the build
compiles against it). The runtime dependencies (INSTALL_REQUIRES) are declared with the lowest
versions the code needs; requirements.txt pins the exact versions the project is tested with.
detectron2 0.6 is a dependency too, but it is not on PyPI under its name: install it with
`python tools/install_detectron2.py` (`make setup` does all of this).
"""

import glob
import os
import re
import shutil
import subprocess
import sys

from setuptools import find_packages, setup

CSRC = os.path.join("tensormask_proj", "layers", "csrc")
DEFAULT_CUDA_ARCH_LIST = "8.0;9.0"

# Runtime dependencies, lower bounds only (exact, tested pins: requirements.txt). detectron2 0.6
# is not among them: not on PyPI under its name (tools/install_detectron2.py installs it, and
# importing tensormask_proj without it says so).
INSTALL_REQUIRES = [
    "torch>=2.4",  # torch.library.register_fake / register_autograd (the compiled ops)
    "torchvision>=0.19",  # nms, roi_align (the version paired with torch 2.4)
    "fvcore>=0.1.5,<0.1.6",  # the range detectron2 0.6 accepts
    "iopath>=0.1.7,<0.1.10",  # the range detectron2 0.6 accepts
    "pycocotools>=2.0.2",
    "opencv-python-headless>=4.5",
    "numpy>=1.24",
    "Pillow>=10",
    "matplotlib",  # the metrics.json plot
    "tqdm",  # progress of the embedded dataset's generation
    "tensorboard",  # detectron2's training event writer
]
EXTRAS_REQUIRE = {
    # tools/export_model.py: onnx for the ONNX exporter, onnxruntime to run the exported model
    "export": ["onnx>=1.15", "onnxruntime>=1.17"],
    "test": ["pytest"],
}

# Data files shipped inside the package: the built-in microcontroller dataset (its images,
# COCO json files, licence and README), registered on import from the package's own folder.
PACKAGE_DATA = {
    "tensormask_proj.data.datasets": [
        "microcontroller/*.json",
        "microcontroller/images/*.jpg",
        "microcontroller/LICENSE",
        "microcontroller/README.md",
    ],
}


def _toolkit_from_nvcc():
    """The toolkit directory of the `nvcc` on PATH, as nvcc itself reports it.

    torch guesses CUDA_HOME as the parent of nvcc's directory, which is wrong when `nvcc` is a
    wrapper script installed elsewhere (as on the machines this project is developed on).
    `nvcc --dryrun` on an empty CUDA file prints the real `TOP=` directory it runs from.
    """
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    try:
        out = subprocess.run(
            [nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"^#\$ TOP=(.+)$", out.stdout + out.stderr, re.MULTILINE)
    if match is None:
        return None
    top = os.path.realpath(match.group(1).strip())
    return top if os.path.isfile(os.path.join(top, "bin", "nvcc")) else None


def _cuda_wanted():
    """Decide whether to compile the CUDA kernels; sets CUDA_HOME when it finds the toolkit."""
    force = os.environ.get("FORCE_CUDA")
    if force == "0":
        print("[setup.py] FORCE_CUDA=0: compiling the CPU kernels only")
        return False
    if not os.environ.get("CUDA_HOME"):
        toolkit = _toolkit_from_nvcc()
        if toolkit:
            os.environ["CUDA_HOME"] = toolkit
    import torch

    home = os.environ.get("CUDA_HOME")
    if torch.version.cuda is None:
        if force == "1":
            raise SystemExit("[setup.py] FORCE_CUDA=1 but this torch build has no CUDA support")
        print("[setup.py] torch has no CUDA support: compiling the CPU kernels only")
        return False
    if not home or not os.path.isfile(os.path.join(home, "bin", "nvcc")):
        if force == "1":
            raise SystemExit("[setup.py] FORCE_CUDA=1 but no CUDA toolkit found (set CUDA_HOME)")
        print("[setup.py] no CUDA toolkit found: compiling the CPU kernels only")
        return False
    version = subprocess.run(
        [os.path.join(home, "bin", "nvcc"), "--version"], capture_output=True, text=True
    ).stdout
    match = re.search(r"release (\d+)\.(\d+)", version)
    toolkit_major = match.group(1) if match else "?"
    if toolkit_major != torch.version.cuda.split(".")[0] and force != "1":
        print(
            f"[setup.py] CUDA toolkit {home} (release {toolkit_major}) does not match torch's "
            f"CUDA {torch.version.cuda}: compiling the CPU kernels only (FORCE_CUDA=1 to try)"
        )
        return False
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCH_LIST
    print(
        f"[setup.py] compiling the CUDA kernels with CUDA_HOME={home} "
        f"TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', '(visible GPUs)')}"
    )
    return True


def _link_the_process_cxx_runtime():
    """Link arguments that make the extension use the C++ runtime (libstdc++) that torch runs on.

    A compiler may link libstdc++ statically into a shared library: seen on a GPU machine whose
    `g++` is a relocated GCC (a wrapper with `-B` prefixes holding libstdc++.a but no
    libstdc++.so). The extension then carries a second C++ runtime. Errors of its kernels
    (TORCH_CHECK) are thrown by libc10 with the process's runtime and unwound through the
    extension's frames with the other one's personality routine: the process died with a
    segmentation fault instead of raising RuntimeError, even for a one-line TORCH_LIBRARY op.
    Naming the runtime file torch has loaded, before the driver's own -lstdc++, makes the linker
    resolve the C++ runtime there (NEEDED libstdc++.so.6), whatever the driver would pick.
    """
    if not sys.platform.startswith("linux"):
        return []
    import torch  # noqa: F401 (loads the C++ runtime into this process)

    try:
        with open("/proc/self/maps") as maps:
            loaded = {line.split()[-1] for line in maps if "/libstdc++.so" in line}
    except OSError:
        return []
    loaded = sorted(path for path in loaded if os.path.isfile(path))
    if len(loaded) != 1:
        return []
    print(f"[setup.py] linking the C++ runtime torch uses: {loaded[0]}")
    return ["-Wl,--push-state,--no-as-needed", loaded[0], "-Wl,--pop-state"]


def _require_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SystemExit(
            "[setup.py] torch is not importable here: install torch first (pip install -r "
            "requirements.txt), then build with `pip install --no-build-isolation -e .` (pip's "
            "build isolation hides the torch installed in the environment)"
        )


def get_extensions():
    _require_torch()
    with_cuda = _cuda_wanted()
    # Import only after CUDA_HOME is settled: torch.utils.cpp_extension reads it at import.
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = sorted(glob.glob(os.path.join(CSRC, "*.cpp")))
    sources += sorted(glob.glob(os.path.join(CSRC, "cpu", "*.cpp")))
    extra_compile_args = {"cxx": ["-O3", "-fopenmp"]}
    extension = CppExtension
    if with_cuda:
        extension = CUDAExtension
        sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
        extra_compile_args["nvcc"] = ["-O3", "--expt-relaxed-constexpr"]
    return [
        extension(
            "tensormask_proj._C",
            sources,
            include_dirs=[os.path.abspath(CSRC)],
            extra_compile_args=extra_compile_args,
            extra_link_args=["-fopenmp"] + _link_the_process_cxx_runtime(),
        )
    ]


if __name__ == "__main__":
    ext_modules = get_extensions()  # before any torch.utils.cpp_extension import (CUDA_HOME)
    from torch.utils.cpp_extension import BuildExtension

    setup(
        name="tensormask_proj",
        version="0.1.0",
        description="TensorMask and BlendMask instance segmentation as a detectron2 project",
        packages=find_packages(exclude=("tests", "tests.*", "configs", "benchmarks")),
        package_data=PACKAGE_DATA,
        python_requires=">=3.9",
        install_requires=INSTALL_REQUIRES,
        extras_require=EXTRAS_REQUIRE,
        ext_modules=ext_modules,
        cmdclass={"build_ext": BuildExtension},
    )
