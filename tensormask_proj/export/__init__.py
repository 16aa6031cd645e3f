"""
Export of TensorMask and BlendMask to TorchScript and ONNX (``tools/export_model.py``).

``DeployableTensorMask`` and ``DeployableBlendMask`` are traceable inference wrappers around the
models; ``export_model`` traces one with detectron2's ``TracingAdapter`` and writes the file;
``register_onnx_ops`` registers the ONNX translation of ``tensormask_proj::swap_align2nat``.
"""

from .blendmask import DeployableBlendMask
from .exporter import (
    EXPORT_FORMATS,
    EXPORT_METHODS,
    ExportError,
    deployable_model,
    export_model,
    op_library_path,
    output_names,
    sample_image,
    tracing_adapter,
)
from .onnx_ops import ONNX_OPSET, register_onnx_ops
from .tensormask import DeployableTensorMask

__all__ = [
    "DeployableBlendMask",
    "DeployableTensorMask",
    "EXPORT_FORMATS",
    "EXPORT_METHODS",
    "ExportError",
    "ONNX_OPSET",
    "deployable_model",
    "export_model",
    "op_library_path",
    "output_names",
    "register_onnx_ops",
    "sample_image",
    "tracing_adapter",
]
