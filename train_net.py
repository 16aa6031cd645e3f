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

# First: importing tensormask_proj silences the FutureWarning that importing detectron2 prints.
import tensormask_proj  # noqa: F401

# isort: split
from detectron2.engine import default_argument_parser as detectron2_argument_parser

from tensormask_proj import get_project_cfg  # noqa: F401  (train_net.get_project_cfg, as before)
from tensormask_proj.engine import (
    Trainer,  # noqa: F401  (train_net.Trainer, as in detectron2's projects)
    add_dataset_argument,
    launch,
    run_evaluation,
    run_training,
    setup_cfg,
    setup_training,
)


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


def setup(args):
    """The frozen, checked config of the command line, with the --dataset datasets registered
    and detectron2's default_setup done (tensormask_proj.engine.setup_training)."""
    return setup_training(args)


def main(args):
    cfg = setup(args)
    if args.eval_only:
        return run_evaluation(cfg, resume=args.resume)
    return run_training(cfg, resume=args.resume)


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
        device=setup_cfg(args.config_file, args.opts).MODEL.DEVICE,  # NCCL for cuda, gloo for cpu
    )
