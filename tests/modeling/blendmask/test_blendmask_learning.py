"""
Learning test: BlendMask trains from scratch on the embedded "shapes" dataset on a CPU and
reaches a mask AP clearly above chance.

Uses detectron2's own pieces end to end: build_detection_train_loader with the project's
BlendMaskDatasetMapper, SimpleTrainer, COCOEvaluator (use_fast_impl=False) and
inference_on_dataset. See LEARNING_CONFIG for the schedule and MIN_MASK_AP for the bound.
"""
import logging
import os
import tempfile
import time
import unittest

import torch

from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import SimpleTrainer, hooks
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler, build_optimizer
from detectron2.utils.env import seed_all_rng

from tensormask_proj.data import BlendMaskDatasetMapper, prepare_dataset

from .blendmask_testing import CONFIG_DIR, blendmask_cfg

LEARNING_CONFIG = os.path.join(CONFIG_DIR, "quick_schedules", "blendmask_R_18_GN_learning_test.yaml")
# Mask AP (COCO, 0-100) on shapes_val. Measured: see the config file's header. An untrained model
# scores 0.0 (no detection passes the 0.05 threshold); random boxes score ~0.
MIN_MASK_AP = 15.0
MIN_BOX_AP = 15.0


class _LossRecorder(hooks.HookBase):
    """Keeps the total loss of every iteration."""

    def __init__(self):
        self.losses = []

    def after_step(self):
        self.losses.append(self.trainer.storage.history("total_loss").latest())


class TestBlendMaskLearns(unittest.TestCase):
    def test_quick_config_learns_shapes(self):
        num_threads = torch.get_num_threads()
        torch.set_num_threads(2)  # the CI machines have 2 cores
        try:
            self._train_and_evaluate()
        finally:
            torch.set_num_threads(num_threads)

    def _train_and_evaluate(self):
        cfg = blendmask_cfg(LEARNING_CONFIG)
        train_name, test_name = cfg.DATASETS.TRAIN[0], cfg.DATASETS.TEST[0]
        prepare_dataset(train_name, progress=False)
        prepare_dataset(test_name, progress=False)  # COCOEvaluator reads its json file
        seed_all_rng(cfg.SEED)

        start = time.perf_counter()
        model = build_model(cfg)
        optimizer = build_optimizer(cfg, model)
        loader = build_detection_train_loader(cfg, mapper=BlendMaskDatasetMapper(cfg, True))
        trainer = SimpleTrainer(model, loader, optimizer)
        recorder = _LossRecorder()
        trainer.register_hooks([hooks.LRScheduler(optimizer, build_lr_scheduler(cfg, optimizer)), recorder])
        trainer.train(0, cfg.SOLVER.MAX_ITER)
        train_time = time.perf_counter() - start

        model.eval()
        with tempfile.TemporaryDirectory() as tmp:
            evaluator = COCOEvaluator(
                test_name, tasks=("bbox", "segm"), output_dir=tmp, use_fast_impl=False
            )
            test_loader = build_detection_test_loader(
                cfg, test_name, mapper=BlendMaskDatasetMapper(cfg, False)
            )
            results = inference_on_dataset(model, test_loader, evaluator)
        total_time = time.perf_counter() - start
        logging.getLogger(__name__).warning(
            f"BlendMask learning test: mask AP {results['segm']['AP']:.1f}, box AP "
            f"{results['bbox']['AP']:.1f}, train {train_time:.0f} s, total {total_time:.0f} s"
        )

        first, last = recorder.losses[:10], recorder.losses[-10:]
        self.assertLess(sum(last) / len(last), 0.7 * sum(first) / len(first))
        self.assertGreater(results["segm"]["AP"], MIN_MASK_AP)
        self.assertGreater(results["bbox"]["AP"], MIN_BOX_AP)


if __name__ == "__main__":
    unittest.main()
