#!/usr/bin/env python
"""
Fit the object sizes of each pyramid level to a dataset, and show what the config's own sizes
give (``tensormask_proj/engine/size_fitting.py``):

    python tools/fit_sizes.py \\
        --config-file configs/quick_schedules/tensormask_R_18_GN_FPN_shapes.yaml
    python tools/fit_sizes.py --config-file CONFIG --dataset my_train train.json images/ \\
        MODEL.TENSOR_MASK.NUM_CLASSES 3

For a TensorMask config: the positive windows per level and the objects without any, with the
config's MODEL.ANCHOR_GENERATOR.SIZES, then with the fitted sizes. For a BlendMask config: the
objects per level with MODEL.FCOS.SIZES_OF_INTEREST, then with the fitted ones. The last line is
the command-line override to train with; ``MODEL.FIT_SIZES_TO_DATA True`` makes ``train_net.py``
fit and apply them itself. The dataset is the last ``--dataset`` (``NAME`` registered, or ``NAME
JSON IMAGE_DIR``), else the config's DATASETS.TRAIN, measured at the training resize.
"""

import argparse
import sys
import tempfile

# First: importing tensormask_proj silences the FutureWarning that importing detectron2 prints.
import tensormask_proj  # noqa: F401

# isort: split
from detectron2.data import DatasetCatalog

from tensormask_proj.engine import (
    ARCHITECTURES,
    add_dataset_argument,
    architecture_of,
    chosen_dataset,
    log_registrations,
    register_command_line_datasets,
    setup_cfg,
)
from tensormask_proj.engine.architectures import config_value
from tensormask_proj.engine.size_fitting import SIZE_FITTERS, scaled_images


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Fit TensorMask's window sizes or BlendMask's sizes of interest to a dataset"
    )
    parser.add_argument(
        "--config-file", required=True, metavar="FILE", help="a TensorMask or BlendMask config"
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        help='config overrides as KEY VALUE pairs (e.g. INPUT.MIN_SIZE_TRAIN "(256,)"); last '
        "on the command line (they take the rest of it)",
    )
    return add_dataset_argument(
        parser, help="The dataset measured is the last --dataset's (default: DATASETS.TRAIN)"
    )


def fit(cfg, dataset_dicts) -> str:
    """The report of the config's sizes and of the fitted ones on ``dataset_dicts``."""
    key = architecture_of(cfg, unknown_ok=True).fitted_sizes_key
    if key is None:
        fitting = " or ".join(a.name for a in ARCHITECTURES.values() if a.fitted_sizes_key)
        raise ValueError(
            f"{cfg.MODEL.META_ARCHITECTURE} is not a {fitting} config (MODEL.META_ARCHITECTURE)"
        )
    fitter = SIZE_FITTERS[key]
    own = fitter.evaluate(cfg, scaled_images(cfg, dataset_dicts), config_value(cfg, key))
    fitted = fitter.fit(cfg, dataset_dicts)
    value = fitter.value(fitted)
    return "\n".join(
        [
            "config: " + own.describe(cfg),
            "fitted: " + fitted.describe(cfg),
            f'train with: {key} "{value}"  (or MODEL.FIT_SIZES_TO_DATA True)',
        ]
    )


def main(argv=None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    cfg = setup_cfg(args.config_file, args.opts)
    with tempfile.TemporaryDirectory(prefix="fit_sizes_") as cache_dir:
        try:
            log_registrations(register_command_line_datasets(args.dataset, cfg, cache_dir))
        except (ValueError, FileNotFoundError) as e:  # (CocoDatasetError is a ValueError)
            parser.error(str(e))
        default = cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else None
        name = chosen_dataset(args.dataset, default)
        if name is None or name not in DatasetCatalog.list():
            parser.error(
                f"DATASETS.TRAIN[0]: dataset {name!r} is not registered; choose one "
                "with --dataset NAME or --dataset NAME JSON IMAGE_DIR"
            )
        dicts = DatasetCatalog.get(name)
        try:
            report = fit(cfg, dicts)
        except ValueError as e:
            parser.error(str(e))
    print(
        f"{name}: {len(dicts)} images, training sizes {tuple(cfg.INPUT.MIN_SIZE_TRAIN)} "
        f"(max {cfg.INPUT.MAX_SIZE_TRAIN})"
    )
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
