"""
Helpers shared by the tests of both models (on the path through pytest.ini's ``pythonpath``):
project cfgs on the CPU and the from-scratch training + COCO evaluation of the learning tests.
"""
import os

import torch

from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler, build_optimizer
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

from tensormask_proj.config import get_project_cfg
from tensormask_proj.data import prepare_dataset
from tensormask_proj.engine import cpu_autocast

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CONFIG_DIR = os.path.join(REPO_ROOT, "configs")


def project_cfg(config_file, opts=()):
    """A project cfg (both models' keys) merged from ``config_file`` and ``opts``, on the CPU."""
    cfg = get_project_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def train_and_evaluate(cfg, output_dir, train_mapper=None, test_mapper=None):
    """
    Train ``cfg`` from scratch with a plain loop over detectron2's loader, optimizer and LR
    schedule, then COCO-evaluate it on DATASETS.TEST[0] (the pure-Python COCOeval).
    With SOLVER.AMP.ENABLED, training and inference run under CPU bfloat16 autocast as in
    train_net.py.

    Returns:
        (results, losses): the evaluator's {"bbox": {...}, "segm": {...}} and the total loss of
        every iteration.
    """
    for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST):
        prepare_dataset(name, progress=False)  # COCOEvaluator reads the json files
    # Seeds the model's initialisation and the loader's TrainingSampler (shared_random_seed).
    seed_all_rng(cfg.SEED if cfg.SEED >= 0 else 0)
    model = build_model(cfg).train()
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    loader = build_detection_train_loader(cfg, mapper=train_mapper)
    losses = []
    with EventStorage(0) as storage:
        for iteration, data in zip(range(cfg.SOLVER.MAX_ITER), loader):
            storage.iter = iteration
            with cpu_autocast(cfg):
                loss_dict = model(data)
            loss = sum(loss_dict.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss {loss_dict} at iteration {iteration}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
    model.eval()
    name = cfg.DATASETS.TEST[0]
    evaluator = COCOEvaluator(name, output_dir=output_dir, use_fast_impl=False)
    loader = build_detection_test_loader(cfg, name, mapper=test_mapper)
    with cpu_autocast(cfg):
        results = inference_on_dataset(model, loader, evaluator)
    return results, losses
