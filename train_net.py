#!/usr/bin/env python
"""
Train and evaluate TensorMask or BlendMask with detectron2's DefaultTrainer.

    python train_net.py --config-file configs/quick_schedules/tensormask_R_18_GN_FPN_shapes.yaml
    python train_net.py --config-file CONFIG --eval-only MODEL.WEIGHTS model_final.pth
    python train_net.py --config-file CONFIG --num-gpus 8          # DDP through detectron2.launch
    python train_net.py --config-file CONFIG --resume               # continue from last_checkpoint
    python train_net.py --config-file CONFIG --dataset mine_train train.json images/ \\
        --dataset mine_val val.json images/ DATASETS.TRAIN "('mine_train',)" \\
        DATASETS.TEST "('mine_val',)" MODEL.TENSOR_MASK.NUM_CLASSES 3   # your own COCO data

The meta-architecture comes from the config (MODEL.META_ARCHITECTURE); this script only
overrides the trainer hooks that differ:

* the loaders: the training mapper (BlendMask's adds the "basis_sem" target; errors name the
  image file), a training loader that ``--resume`` continues exactly (same weights as an
  uninterrupted run with the same SEED) and that skips unreadable images (DATALOADER.BAD_IMAGES),
  and a test loader and COCOEvaluator that leave unreadable images out;
* the checkpoints: never half-written, never overwriting the last good one once training has
  diverged (a non-finite loss stops training with a message naming it), holding the optimizer,
  the data loader's position and the run's seed; training that stops on an error saves its last
  finished iteration first and logs the --resume command.
OUTPUT_DIR receives the checkpoints, metrics.json, tensorboard events, log.txt and
metrics.png (losses and AP; also `python tools/plot_metrics.py OUTPUT_DIR`).
"""
import logging
import os
import weakref

# First: importing tensormask_proj silences the FutureWarning that importing detectron2 prints.
import tensormask_proj  # noqa: F401, I001

import detectron2.utils.comm as comm
from detectron2.data import DatasetMapper
from detectron2.engine import DefaultTrainer, default_setup, hooks, launch
from detectron2.engine import default_argument_parser as detectron2_argument_parser
from detectron2.evaluation import verify_results
from detectron2.utils.logger import setup_logger

from tensormask_proj import get_project_cfg
from tensormask_proj.data.dataset_mapper import build_train_mapper
from tensormask_proj.data.resumable_train_loader import build_resumable_train_loader
from tensormask_proj.engine import (
    AtomicDetectionCheckpointer,
    CPUAutocastTrainer,
    CheckpointOnStop,
    NamedErrorMapper,
    ReadableImagesCOCOEvaluator,
    ReseedEachIteration,
    add_dataset_argument,
    build_readable_test_loader,
    check_config,
    cpu_autocast,
    log_registrations,
    plot_metrics,
    register_command_line_datasets,
    requests_cpu_amp,
    uses_cpu_autocast,
)

logger = logging.getLogger("tensormask_proj.train_net")


def has_fast_coco_eval() -> bool:
    """Whether detectron2 was built with its C++ COCOeval (the pb1 fallback install is not)."""
    from detectron2 import _C

    return hasattr(_C, "COCOevalAccumulate")


class Trainer(DefaultTrainer):
    def __init__(self, cfg):
        if not requests_cpu_amp(cfg):
            super().__init__(cfg)
            return
        # SOLVER.AMP.ENABLED on a CPU: detectron2's AMPTrainer is CUDA-only. Build the default
        # SimpleTrainer; where the CPU has native bfloat16, give it the autocast run_step (the
        # subclass adds no state; re-creating the trainer would start a second data loader
        # iterator). Elsewhere it stays float32 (uses_cpu_autocast warns).
        float32_cfg = cfg.clone()
        float32_cfg.defrost()
        float32_cfg.SOLVER.AMP.ENABLED = False
        super().__init__(float32_cfg)
        self.cfg = cfg.clone()
        if uses_cpu_autocast(cfg):
            self._trainer.__class__ = CPUAutocastTrainer

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        with cpu_autocast(cfg):
            return super().test(cfg, model, evaluators)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        # (COCO metrics over the images read: unreadable ones are left out, and listed.)
        return ReadableImagesCOCOEvaluator(
            dataset_name, output_dir=output_folder, use_fast_impl=has_fast_coco_eval()
        )

    @classmethod
    def build_train_loader(cls, cfg):
        # (BlendMask's mapper adds the "basis_sem" target.) Errors (a bad annotation, say) name
        # the image file; an unreadable image is skipped and replaced (DATALOADER.BAD_IMAGES).
        # The loader's position and seed go into the checkpoints: --resume continues exactly.
        mapper = NamedErrorMapper(build_train_mapper(cfg))
        return build_resumable_train_loader(cfg, mapper)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        mapper = NamedErrorMapper(DatasetMapper(cfg, is_train=False))
        return build_readable_test_loader(cfg, dataset_name, mapper)

    def build_hooks(self):
        # Swap in the atomic checkpointer before the default hooks capture self.checkpointer.
        self.checkpointer = AtomicDetectionCheckpointer(
            self._trainer.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        ret = super().build_hooks()
        max_to_keep = self.cfg.SOLVER.CHECKPOINT_MAX_TO_KEEP
        for hook in ret:
            if isinstance(hook, hooks.PeriodicCheckpointer) and max_to_keep > 0:
                hook.max_to_keep = max_to_keep
        loader = self._trainer.data_loader
        # First: the seeds before anything of the iteration runs; the save of the last finished
        # iteration before the other hooks' after_train (a final evaluation) when training fails.
        return [
            ReseedEachIteration(lambda: loader.seed),
            CheckpointOnStop(self.checkpointer, self._trainer.optimizer),
            *ret,
        ]

    # detectron2 0.6 checkpoints only the outer trainer's state (iteration, hooks), not the
    # optimizer of the inner SimpleTrainer: --resume would restart SGD momentum from zero.
    # Later detectron2 versions save it under "_trainer" the same way. The data loader's state
    # (seed, batches consumed: self.iter + 1, unreadable images) makes --resume exact.
    def state_dict(self):
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        ret["data_loader"] = self._trainer.data_loader.state_dict(self.iter + 1)
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logger.warning("The checkpoint holds no optimizer state: SGD momentum restarts at 0")
        loader = self._trainer.data_loader
        if "data_loader" in state_dict:
            loader.load_state_dict(state_dict["data_loader"])
        else:
            # (Batch k of a new stream: the loader's batches stay the iterations' numbers.)
            loader.skip_to(self.iter + 1)
            logger.warning(
                "The checkpoint records no data loader state (it predates exact resume): the "
                "data order and augmentations restart, as a new shuffled stream (data seed "
                f"{loader.seed}) from batch {loader.start_batch}; the weights, optimizer and LR "
                "schedule are restored. This run does not continue the interrupted one exactly."
            )

    def run_step(self):
        try:
            super().run_step()
        except FloatingPointError as e:
            # detectron2 raises this before the optimizer step that would have used the bad
            # loss. Freeze the checkpointer now, before the hooks' after_train runs, so that
            # nothing replaces the last good checkpoint.
            self.checkpointer.frozen = True
            last = self.checkpointer.get_checkpoint_file() or "none saved yet"
            raise FloatingPointError(
                f"{e}\nTraining stopped: the loss is not finite. The last checkpoint ({last}) "
                "is intact; lower SOLVER.BASE_LR or raise SOLVER.WARMUP_ITERS and resume with "
                "--resume."
            ) from e


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
    cfg = get_project_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    if args.eval_only and not cfg.MODEL.WEIGHTS and not args.resume:
        raise ValueError(
            "--eval-only needs a trained model: set MODEL.WEIGHTS (e.g. "
            "`MODEL.WEIGHTS output/model_final.pth`), or pass --resume to evaluate the last "
            "checkpoint of OUTPUT_DIR"
        )
    # --dataset: checked (a bad annotation stops here, named) and registered in every process.
    registrations = register_command_line_datasets(args.dataset, cfg)
    check_config(cfg, eval_only=args.eval_only)
    default_setup(cfg, args)
    # default_setup logs "detectron2" and "fvcore"; this project's loggers too (console, log.txt).
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="tensormask_proj")
    log_registrations(registrations)
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
    )
