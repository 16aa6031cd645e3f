#!/usr/bin/env python
"""
Train and evaluate TensorMask or BlendMask with detectron2's DefaultTrainer.

    python train_net.py --config-file configs/quick_schedules/tensormask_R_18_GN_FPN_shapes.yaml
    python train_net.py --config-file CONFIG --eval-only MODEL.WEIGHTS model_final.pth
    python train_net.py --config-file CONFIG --resume               # continue from last_checkpoint
    python train_net.py --config-file CONFIG --num-gpus 8           # 8 processes on this machine
    torchrun --nproc-per-node 2 train_net.py --config-file CONFIG MODEL.DEVICE cpu
    python train_net.py --config-file CONFIG --dataset mine_train train.json images/ \\
        --dataset mine_val val.json images/ DATASETS.TRAIN "('mine_train',)" \\
        DATASETS.TEST "('mine_val',)" MODEL.TENSOR_MASK.NUM_CLASSES 3   # your own COCO data

The meta-architecture comes from the config (MODEL.META_ARCHITECTURE); the trainer is
:class:`tensormask_proj.engine.Trainer` (exact resume, unreadable images skipped, atomic
checkpoints, bfloat16 on CPUs). ``--num-gpus N`` (with ``--num-machines``, ``--machine-rank``,
``--dist-url``) starts N processes per machine, with NCCL for MODEL.DEVICE cuda and gloo for
MODEL.DEVICE cpu; under ``torchrun`` each process is one rank (tensormask_proj.engine.launch).
OUTPUT_DIR receives the checkpoints, metrics.json, tensorboard events, log.txt and
metrics.png (losses and AP; also `python tools/plot_metrics.py OUTPUT_DIR`).
"""

import logging
import os

import detectron2.utils.comm as comm
from detectron2.data import DatasetCatalog
from detectron2.engine import default_argument_parser as detectron2_argument_parser
from detectron2.engine import default_setup
from detectron2.evaluation import verify_results
from detectron2.utils.logger import setup_logger

# First: importing tensormask_proj silences the FutureWarning that importing detectron2 prints.
import tensormask_proj  # noqa: F401, I001
from tensormask_proj import get_project_cfg
from tensormask_proj.engine import (
    AtomicDetectionCheckpointer,
    Trainer,
    add_dataset_argument,
    check_config,
    fit_sizes_to_data,
    launch,
    log_registrations,
    plot_metrics,
    register_command_line_datasets,
)

logger = logging.getLogger("tensormask_proj.train_net")


def default_argument_parser():
    """detectron2's command line (``default_argument_parser``) plus ``--dataset`` (repeatable):
    ``NAME JSON IMAGE_DIR`` registers a COCO-format dataset, ``NAME`` checks that a dataset is
    registered; the config's DATASETS.TRAIN / DATASETS.TEST name the datasets used."""
    parser = detectron2_argument_parser()
    parser.description = "Train or evaluate TensorMask / BlendMask (detectron2's train_net)"
    return add_dataset_argument(
        parser, help="Name the datasets to use in DATASETS.TRAIN / DATASETS.TEST"
    )


get_parser = default_argument_parser  # the name every script of this repository exposes


def load_config(args):
    """The frozen config of the command line: the project's defaults, --config-file, then the
    KEY VALUE overrides."""
    cfg = get_project_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg


def setup(args):
    cfg = load_config(args)
    if args.eval_only and not cfg.MODEL.WEIGHTS and not args.resume:
        raise ValueError(
            "--eval-only needs a trained model: set MODEL.WEIGHTS (e.g. "
            "`MODEL.WEIGHTS output/model_final.pth`), or pass --resume to evaluate the last "
            "checkpoint of OUTPUT_DIR"
        )
    # --dataset: checked (a bad annotation stops here, named) and registered in every process.
    registrations = register_command_line_datasets(args.dataset, cfg)
    check_config(cfg, eval_only=args.eval_only)
    fitted = None
    if cfg.MODEL.FIT_SIZES_TO_DATA:
        # Before default_setup, which saves the config (with the fitted sizes) to OUTPUT_DIR.
        training_set = [d for name in cfg.DATASETS.TRAIN for d in DatasetCatalog.get(name)]
        cfg, fitted = fit_sizes_to_data(cfg, training_set)
    default_setup(cfg, args)
    # default_setup logs "detectron2" and "fvcore"; this project's loggers too (console, log.txt).
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="tensormask_proj")
    log_registrations(registrations)
    if fitted:
        logger.info(fitted)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpointer = AtomicDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        if args.resume and not cfg.MODEL.WEIGHTS and not checkpointer.has_checkpoint():
            raise FileNotFoundError(
                f"--eval-only --resume: no last_checkpoint in OUTPUT_DIR {cfg.OUTPUT_DIR}"
            )
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    try:
        # (DefaultTrainer.train runs verify_results itself when TEST.EXPECTED_RESULTS is set.)
        return trainer.train()
    finally:
        metrics = os.path.join(cfg.OUTPUT_DIR, "metrics.json")
        if comm.is_main_process() and os.path.isfile(metrics):
            try:
                logger.info(f"Loss/AP plot: {plot_metrics(metrics, metrics[:-5] + '.png')}")
            except ValueError as e:  # an empty metrics.json: nothing to plot
                logger.warning(f"No plot: {e}")


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        device=load_config(args).MODEL.DEVICE,  # NCCL for cuda, gloo for cpu
    )
