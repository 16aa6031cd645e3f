"""
Export of TensorMask and BlendMask to TorchScript (tracing) and ONNX.

The exported model takes one image, Tensor[3, H, W] float32 in the config's INPUT.FORMAT,
already resized by the test-time resize (as detectron2's exported models), and returns the
tuple (pred_boxes [D, 4], pred_classes [D], pred_masks [D, H, W] bool, scores [D],
image_size [2]) for that image: detectron2's ``TracingAdapter`` flattens the deployable model's
``Instances`` (fields in name order, then the image size).

Loading the TorchScript file needs the operators it calls: ``torch.ops.load_library`` on the
built ``tensormask_proj/_C*.so`` (:func:`op_library_path`) and ``import torchvision`` (nms,
roi_align); tensormask_proj itself is not needed. The ONNX file needs no extension: the op is
exported as a decomposition into standard operators (``onnx_ops``).

An export failure raises :class:`ExportError` naming the module that could not be exported.
"""

import contextlib
import glob
import importlib
import os
import re
import sys
import traceback
import types
from typing import Dict, List

import detectron2.data.transforms as T
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode


def _import_tracing_adapter():
    """
    detectron2's ``TracingAdapter``. detectron2 0.6's ``detectron2/export/__init__.py`` imports
    its Caffe2 exporter, which needs the long-gone ``caffe2`` package; upstream detectron2 later
    made that import optional. With 0.6, the ``detectron2.export`` package is entered without
    running its ``__init__`` (``flatten`` itself needs only torch and detectron2.structures).
    """
    try:
        return importlib.import_module("detectron2.export.flatten").TracingAdapter
    except ModuleNotFoundError as e:
        if e.name is None or not e.name.startswith("caffe2"):
            raise
    import detectron2

    sys.modules.pop("detectron2.export", None)
    package = types.ModuleType("detectron2.export")
    package.__path__ = [os.path.join(os.path.dirname(detectron2.__file__), "export")]
    sys.modules["detectron2.export"] = package
    return importlib.import_module("detectron2.export.flatten").TracingAdapter


TracingAdapter = _import_tracing_adapter()

from .blendmask import DeployableBlendMask
from .onnx_ops import ONNX_OPSET, register_onnx_ops
from .tensormask import DeployableTensorMask

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_METHODS",
    "ExportError",
    "deployable_model",
    "export_model",
    "op_library_path",
    "output_names",
    "sample_image",
    "tracing_adapter",
]

# The default sample image: the first validation image of the embedded dataset.
SAMPLE_DATASET = "shapes_val"

EXPORT_FORMATS = {"torchscript": "model.ts", "onnx": "model.onnx"}
EXPORT_METHODS = ("tracing", "scripting")

_DEPLOYABLE = {"TensorMask": DeployableTensorMask, "BlendMask": DeployableBlendMask}


class ExportError(RuntimeError):
    """An export failed; the message names the module (or post-processing step) at fault."""


def op_library_path() -> str:
    """Path of the built ``tensormask_proj._C`` extension, for ``torch.ops.load_library``."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = sorted(glob.glob(os.path.join(package, "_C*.so")))
    if not found:
        raise FileNotFoundError(
            f"tensormask_proj's compiled operators (_C*.so) are not built in {package}: run "
            "`make setup` (or `pip install --no-build-isolation -e .`)"
        )
    return found[0]


def sample_image(cfg, path: str = None, index: int = 0) -> torch.Tensor:
    """
    An input for the exported model: the image at ``path`` (default: image ``index`` of the
    embedded ``shapes_val`` dataset, generated if needed), read in the config's INPUT.FORMAT and
    resized by the test-time resize, as Tensor[3, H, W] float32.
    """
    if path is None:
        dicts = DatasetCatalog.get(SAMPLE_DATASET)
        path = dicts[index]["file_name"]
    elif not os.path.isfile(path):
        raise FileNotFoundError(f"--sample-image: no such file: {path}")
    image = read_image(path, format=cfg.INPUT.FORMAT)
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    image = resize.get_transform(image).apply_image(image)
    return torch.as_tensor(image.astype("float32").transpose(2, 0, 1))


def deployable_model(model: nn.Module) -> nn.Module:
    """The traceable inference wrapper of a TensorMask or BlendMask model (put in eval mode)."""
    name = type(model).__name__
    if name not in _DEPLOYABLE:
        raise ExportError(
            f"Export supports the meta-architectures {sorted(_DEPLOYABLE)}, got {name} "
            "(MODEL.META_ARCHITECTURE)"
        )
    return _DEPLOYABLE[name](model.eval()).eval()


def tracing_adapter(model: nn.Module, image: torch.Tensor) -> TracingAdapter:
    """
    detectron2's ``TracingAdapter`` around the deployable model: flattened input (image,),
    flattened output as in the module docstring.
    """
    adapter = TracingAdapter(
        deployable_model(model), ([{"image": image}],), lambda m, inputs: m(inputs)[0]
    )
    adapter.eval()
    return adapter


def output_names(adapter: TracingAdapter) -> List[str]:
    """Names of the flattened outputs (the adapter must have run once)."""
    if adapter.outputs_schema is None:
        raise ValueError("output_names: run the adapter once first (it records the schema)")
    return list(adapter.outputs_schema.keys) + ["image_size"]


class _ModuleStack:
    """
    While active, tracks which submodules of ``root`` are executing (forward hooks), so that
    an exception can be attributed to the innermost one; optionally also records, for every
    dispatcher operator called, the innermost module that called it first.
    """

    def __init__(self, root: nn.Module):
        self.root = root
        self.stack: List[str] = []
        self.op_modules: Dict[str, str] = {}
        self._handles = []

    def __enter__(self):
        for name, module in self.root.named_modules():
            label = name or type(self.root).__name__
            self._handles.append(module.register_forward_pre_hook(self._enter_hook(label)))
            self._handles.append(module.register_forward_hook(self._exit_hook))
        return self

    def _enter_hook(self, label: str):
        def hook(module, args):
            self.stack.append(label)

        return hook

    def _exit_hook(self, module, args, output):
        self.stack.pop()

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        return False

    def innermost(self) -> str:
        return self.stack[-1] if self.stack else ""


class _OpRecorder(TorchDispatchMode):
    def __init__(self, modules: _ModuleStack):
        super().__init__()
        self.modules = modules

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.modules.op_modules.setdefault(func._schema.name, self.modules.innermost())
        return func(*args, **(kwargs or {}))


def _describe(module_path: str, adapter: TracingAdapter) -> str:
    deployable = adapter.model
    if not module_path or module_path == type(deployable.model).__name__:
        return (
            f"the post-processing of {type(deployable).__name__} "
            f"({type(deployable).__module__})"
        )
    module = deployable.model.get_submodule(module_path)
    return f"module '{module_path}' ({type(module).__name__})"


def _where(error: Exception) -> str:
    """The innermost source line of the failure outside torch itself, as 'file:line (function)'."""
    torch_dir = os.path.dirname(torch.__file__)
    frames = [
        f
        for f in traceback.extract_tb(error.__traceback__)
        if not f.filename.startswith(torch_dir) and "contextlib" not in f.filename
    ]
    if not frames:
        return ""
    frame = frames[-1]
    return f" at {frame.filename}:{frame.lineno} ({frame.name})"


def _unsupported_op(error: Exception):
    # e.g. "ONNX export failed on an operator with unrecognized namespace foo::bar", or
    # "Exporting the operator 'foo::bar' to ONNX opset version 17 is not supported".
    match = re.search(r"\b([A-Za-z_]\w*::[A-Za-z_]\w*)", str(error))
    return match.group(1) if match else None


@contextlib.contextmanager
def _naming_failures(adapter: TracingAdapter, what: str):
    """Re-raise an export failure as an ExportError that names the module at fault."""
    modules = _ModuleStack(adapter.model.model)
    try:
        with modules:
            yield
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001  (any tracer or exporter error gets its module named)
        culprit = modules.innermost()
        op = None if culprit else _unsupported_op(e)
        if op is not None:
            # The graph was traced; converting one of its operators failed. Find its caller.
            with _ModuleStack(adapter.model.model) as recorder, _OpRecorder(recorder):
                with torch.no_grad():
                    adapter(*adapter.flattened_inputs)
            culprit = recorder.op_modules.get(op, "")
            where = f"{_describe(culprit, adapter)} calls operator {op}, which"
            raise ExportError(f"{what}: {where} cannot be exported: {e}") from e
        raise ExportError(
            f"{what}: {_describe(culprit, adapter)} could not be exported{_where(e)}: {e}"
        ) from e


def _first_unscriptable(module: nn.Module, prefix: str = ""):
    """(path, error) of the deepest submodule that ``torch.jit.script`` refuses, else None."""
    try:
        torch.jit.script(module)
        return None
    except Exception as e:  # noqa: BLE001  (the scripting compiler raises many error types)
        for name, child in module.named_children():
            found = _first_unscriptable(child, f"{prefix}{name}.")
            if found is not None:
                return found
        return prefix.rstrip(".") or type(module).__name__, e


def export_model(
    model: nn.Module, image: torch.Tensor, fmt: str, output_dir: str, method: str = "tracing"
) -> str:
    """
    Export ``model`` (TensorMask or BlendMask) traced on ``image`` (Tensor[3, H, W] float32,
    test-resized) to ``output_dir``.

    Returns:
        the path of the written file (``model.ts`` or ``model.onnx``).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {sorted(EXPORT_FORMATS)}, got {fmt!r}")
    if method not in EXPORT_METHODS:
        raise ValueError(f"export method must be one of {EXPORT_METHODS}, got {method!r}")
    adapter = tracing_adapter(model, image)
    if method == "scripting":
        found = _first_unscriptable(adapter.model)
        reason = "" if found is None else f" ({found[0]} is not scriptable: {found[1]})"
        # The deployable wrappers take and return detectron2 structures (list of dicts,
        # Instances, Boxes) that TorchScript cannot compile; their tensor programs trace for any
        # input size, which is what --export-method tracing records.
        raise ExportError(
            f"--export-method scripting is not supported for {type(model).__name__}{reason}; "
            "use --export-method tracing (the traced model is valid for any image size and any "
            "number of detections)"
        )
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, EXPORT_FORMATS[fmt])
    with torch.no_grad():
        with _naming_failures(adapter, f"{fmt} export of {type(model).__name__}"):
            adapter(*adapter.flattened_inputs)  # records the output schema
            if fmt == "torchscript":
                traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
                traced.save(path)
            else:
                register_onnx_ops()
                _export_onnx(adapter, path)
    return path


def _export_onnx(adapter: TracingAdapter, path: str) -> None:
    names = output_names(adapter)
    dynamic_axes = {"image": {1: "height", 2: "width"}}
    for name in names[:-1]:
        dynamic_axes[name] = {0: "detections"}
    if "pred_masks" in names:
        dynamic_axes["pred_masks"] = {0: "detections", 1: "height", 2: "width"}
    # The TorchScript-based exporter: it traces (as the TorchScript export does) and translates
    # the project's ops with the decompositions registered by register_onnx_ops. The dynamo=True
    # exporter needs torch.export, which stops at detectron2's own data-dependent checks (seen:
    # "Could not guard on data-dependent expression" at detectron2/layers/wrappers.py's
    # `if x.numel() == 0 and self.training`, on the padded image's unbacked size), and needs
    # onnxscript besides.
    torch.onnx.export(
        adapter,
        adapter.flattened_inputs,
        path,
        dynamo=False,
        opset_version=ONNX_OPSET,
        input_names=["image"],
        output_names=names,
        dynamic_axes=dynamic_axes,
    )
