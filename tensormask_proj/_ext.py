"""
Loading of the compiled operators (``tensormask_proj._C``).

Importing the package never fails because the extension is missing; using an op then raises an
error that says how to build it (see :func:`assert_has_ops`).
"""

import importlib

_import_error = None
try:
    importlib.import_module("tensormask_proj._C")  # registers torch.ops.tensormask_proj.*
except ImportError as e:  # not built, or built against another torch
    _import_error = e


def has_ops() -> bool:
    """Whether the compiled operators are loaded."""
    return _import_error is None


def assert_has_ops() -> None:
    if _import_error is not None:
        raise RuntimeError(
            "tensormask_proj's compiled operators (tensormask_proj._C) could not be loaded: "
            f"{_import_error}. Build them from the repository root with `make setup` (or "
            "`pip install --no-build-isolation -e .` in an environment that has torch). If "
            "the extension exists, it was probably built against another torch version: "
            "rebuild it after changing torch."
        )
