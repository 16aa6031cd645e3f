from .checkpoint import AtomicDetectionCheckpointer
from .plot_metrics import load_metrics, plot_metrics

__all__ = ["AtomicDetectionCheckpointer", "load_metrics", "plot_metrics"]
