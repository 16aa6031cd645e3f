"""
The training engine of ``train_net.py`` (:class:`Trainer`, :func:`run_training`,
:func:`run_evaluation`, :func:`launch` for several processes on any device), the config set-up of
every entry point (:func:`setup_cfg`), the table of per-architecture facts (:func:`architecture_of`)
and the workflow helpers the scripts use: a checkpointer that
never leaves a broken checkpoint, a checkpoint of the last finished iteration when training
stops on an error, per-iteration seeds for an exact ``--resume``, config checks with actionable
errors, ``--dataset`` (checked COCO datasets from the command line), a mapper wrapper whose errors
name the image (and tell unreadable images apart), evaluation without the unreadable images, the
metrics.json plot, and bfloat16 mixed precision on the CPU.
"""

from ..data.mapper_errors import DatasetMappingError, NamedErrorMapper, UnreadableImageError
from .architectures import (
    ARCHITECTURES,
    Architecture,
    UnknownArchitectureError,
    architecture_of,
    build_train_mapper,
)
from .checkpoint import AtomicDetectionCheckpointer, CheckpointDiskFullError, non_finite_tensors
from .command_line_datasets import (
    ConfigKeyEndsList,
    DatasetSpec,
    add_dataset_argument,
    chosen_dataset,
    config_opts_may_follow_lists,
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
    num_classes_keys,
)
from .cpu_autocast import (
    CPUAutocastTrainer,
    cpu_autocast,
    has_native_bfloat16,
    requests_cpu_amp,
    uses_cpu_autocast,
)
from .iteration_seed import ReseedEachIteration
from .launch import distributed_backend, launch, started_by_torchrun
from .plot_metrics import load_metrics, mean_losses, plot_metrics
from .setup import UnknownConfigKeyError, setup_cfg, setup_training
from .size_fitting import (
    count_positive_windows,
    fit_sizes_of_interest,
    fit_sizes_to_data,
    fit_window_sizes,
    warn_unassigned_objects,
)
from .stop_checkpoint import CheckpointOnStop, resume_command
from .trainer import (
    Trainer,
    inner_trainer_class,
    run_evaluation,
    run_training,
    wrap_for_processes,
)
from .unreadable_test_images import (
    MarkUnreadable,
    ReadableImagesCOCOEvaluator,
    SkipUnreadableImages,
    build_readable_test_loader,
)

__all__ = [
    "setup_cfg",
    "setup_training",
    "UnknownConfigKeyError",
    "Architecture",
    "ARCHITECTURES",
    "UnknownArchitectureError",
    "architecture_of",
    "build_train_mapper",
    "num_classes_keys",
    "run_training",
    "run_evaluation",
    "inner_trainer_class",
    "count_positive_windows",
    "fit_window_sizes",
    "fit_sizes_of_interest",
    "fit_sizes_to_data",
    "warn_unassigned_objects",
    "Trainer",
    "wrap_for_processes",
    "launch",
    "distributed_backend",
    "started_by_torchrun",
    "AtomicDetectionCheckpointer",
    "CheckpointDiskFullError",
    "non_finite_tensors",
    "CheckpointOnStop",
    "resume_command",
    "ReseedEachIteration",
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
    "MarkUnreadable",
    "SkipUnreadableImages",
    "ReadableImagesCOCOEvaluator",
    "build_readable_test_loader",
    "load_metrics",
    "mean_losses",
    "plot_metrics",
]
