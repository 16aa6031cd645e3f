#!/usr/bin/env python
"""
Train and evaluate TensorMask or BlendMask with detectron2's DefaultTrainer.

    python train_net.py --config-file configs/quick_schedules/tensormask_R_18_GN_FPN_shapes.yaml
    python train_net.py --config-file CONFIG --eval-only MODEL.WEIGHTS model_final.pth
    python train_net.py --config-file CONFIG --num-gpus 8          # DDP through detectron2.launch
    python train_net.py --config-file CONFIG --resume               # continue from last_checkpoint

The meta-architecture comes from the config (MODEL.META_ARCHITECTURE); this script only
overrides the trainer hooks that differ: the evaluator (COCOEvaluator), the train loader's
mapper (BlendMask's adds the "basis_sem" target), and a checkpointer that never leaves a
half-written file and never overwrites the last good checkpoint once training has diverged.
"""
import logging
import os
import weakref

import torch

import detectron2.utils.comm as comm
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_train_loader
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import COCOEvaluator, verify_results

from tensormask_proj import get_project_cfg
from tensormask_proj.data import BlendMaskDatasetMapper
from tensormask_proj.engine import AtomicDetectionCheckpointer, plot_metrics

logger = logging.getLogger("tensormask_proj.train_net")


def has_fast_coco_eval() -> bool:
    """Whether detectron2 was built with its C++ COCOeval (the pb1 fallback install is not)."""
    from detectron2 import _C

    return hasattr(_C, "COCOevalAccumulate")


class Trainer(DefaultTrainer):
    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        return COCOEvaluator(
            dataset_name, output_dir=output_folder, use_fast_impl=has_fast_coco_eval()
        )

    @classmethod
    def build_train_loader(cls, cfg):
        mapper = None  # detectron2's DatasetMapper
        if cfg.MODEL.META_ARCHITECTURE == "BlendMask":
            mapper = BlendMaskDatasetMapper(cfg, is_train=True)
        return build_detection_train_loader(cfg, mapper=mapper)

    def build_hooks(self):
        # Swap in the atomic checkpointer before the default hooks capture self.checkpointer.
        self.checkpointer = AtomicDetectionCheckpointer(
            self._trainer.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        return super().build_hooks()

    def train(self):
        try:
            return super().train()
        except FloatingPointError as e:
            # Raised by detectron2 before the optimizer step that would have used the bad loss.
            # Keep the last good checkpoint: the hooks' after_train must not save over it.
            self.checkpointer.frozen = True
            last = self.checkpointer.get_checkpoint_file() or "none saved yet"
            raise FloatingPointError(
                f"{e}\nTraining stopped: the loss is not finite. The last checkpoint ({last}) "
                "is intact; lower SOLVER.BASE_LR or raise SOLVER.WARMUP_ITERS and resume with "
                "--resume."
            ) from e


def check_config(cfg: CfgNode) -> None:
    """Fail early, naming the key or file, for problems that would otherwise surface deep inside."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"MODEL.DEVICE is '{cfg.MODEL.DEVICE}' but no CUDA GPU is visible: add "
            "`MODEL.DEVICE cpu` to the command line (or use a config that sets it)"
        )
    if cfg.MODEL.WEIGHTS and "://" not in cfg.MODEL.WEIGHTS and not os.path.isfile(
        cfg.MODEL.WEIGHTS
    ):
        raise FileNotFoundError(f"MODEL.WEIGHTS: weights file not found: {cfg.MODEL.WEIGHTS}")
    for key in ("TRAIN", "TEST"):
        for name in cfg.DATASETS[key]:
            if name not in DatasetCatalog.list():
                raise KeyError(
                    f"DATASETS.{key}: dataset '{name}' is not registered. Registered datasets: "
                    f"{', '.join(sorted(DatasetCatalog.list()))}"
                )
            meta = MetadataCatalog.get(name)
            json_file = getattr(meta, "json_file", None)  # (the embedded ones generate it)
            if json_file and "://" not in json_file and not os.path.isfile(json_file):
                raise FileNotFoundError(
                    f"DATASETS.{key}: annotations of dataset '{name}' not found at {json_file}. "
                    "Set DETECTRON2_DATASETS to the folder holding the datasets (see README, "
                    "'Training on COCO')."
                )


def setup(args):
    cfg = get_project_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    check_config(cfg)
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        AtomicDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    try:
        res = trainer.train()
    finally:
        metrics = os.path.join(cfg.OUTPUT_DIR, "metrics.json")
        if comm.is_main_process() and os.path.isfile(metrics):
            try:
                logger.info(f"Loss/AP plot: {plot_metrics(metrics, metrics[:-5] + '.png')}")
            except ValueError as e:  # an empty metrics.json: nothing to plot
                logger.warning(f"No plot: {e}")
    if comm.is_main_process() and res:
        verify_results(cfg, res)
    return res


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
