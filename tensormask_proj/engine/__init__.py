"""
Training/inference workflow helpers used by ``train_net.py`` and ``demo.py``: a checkpointer that
never leaves a broken checkpoint, config checks with actionable errors, ``--dataset`` (checked
COCO datasets from the command line), a mapper wrapper whose errors name the image, the
metrics.json plot, and bfloat16 mixed precision on the CPU.
"""
from .checkpoint import AtomicDetectionCheckpointer, CheckpointDiskFullError, non_finite_tensors
from .cpu_autocast import (
    CPUAutocastTrainer,
    cpu_autocast,
    has_native_bfloat16,
    requests_cpu_amp,
    uses_cpu_autocast,
)
from .command_line_datasets import (
    ConfigKeyEndsList,
    DatasetSpec,
    add_dataset_argument,
    config_opts_may_follow_lists,
    chosen_dataset,
    dataset_files,
    log_registrations,
    register_command_line_datasets,
)
from .config_checks import (
    check_config,
    check_datasets,
    check_device,
    check_num_classes,
    check_weights,
)
from .mapper_errors import DatasetMappingError, NamedErrorMapper, UnreadableImageError
from .plot_metrics import load_metrics, mean_losses, plot_metrics

__all__ = [
    "AtomicDetectionCheckpointer",
    "CheckpointDiskFullError",
    "non_finite_tensors",
    "CPUAutocastTrainer",
    "cpu_autocast",
    "uses_cpu_autocast",
    "has_native_bfloat16",
    "requests_cpu_amp",
    "check_config",
    "check_datasets",
    "check_device",
    "check_weights",
    "check_num_classes",
    "ConfigKeyEndsList",
    "DatasetSpec",
    "add_dataset_argument",
    "config_opts_may_follow_lists",
    "chosen_dataset",
    "dataset_files",
    "register_command_line_datasets",
    "log_registrations",
    "DatasetMappingError",
    "UnreadableImageError",
    "NamedErrorMapper",
    "load_metrics",
    "mean_losses",
    "plot_metrics",
]
