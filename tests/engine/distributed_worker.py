"""
The function every process of tests/engine/test_distributed.py runs (a module of its own, so
that the processes spawned by ``tensormask_proj.engine.launch`` can import it): train a tiny
config with the project's Trainer and record, per rank and iteration, a digest of the weights
and the losses.
"""

import hashlib
import json
import os
from typing import Dict, List

from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

from tensormask_proj.engine import Trainer

from .workflow_helpers import TinySplit, register_in_process


def weights_digest(model) -> str:
    """sha256 of every parameter's bytes, in name order (equal digests: bitwise equal weights)."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


class _Record(HookBase):
    """After every step: this rank's weights digest; on rank 0, the iteration's total loss (the
    mean over the ranks, as detectron2 logs it)."""

    def __init__(self):
        self.digests: Dict[int, str] = {}
        self.losses: Dict[int, float] = {}

    def after_step(self):
        model = self.trainer._trainer.model
        self.digests[self.trainer.iter] = weights_digest(getattr(model, "module", model))
        if comm.is_main_process():
            self.losses[self.trainer.iter] = self.trainer.storage.history("total_loss").latest()


def train_and_record(cfg, splits: List[TinySplit], result_dir: str) -> None:
    """Train ``cfg`` (frozen) in this process; write ``rank{R}.json`` (world size, digests per
    iteration, losses on rank 0) into ``result_dir``."""
    for split in splits:
        register_in_process(split)
    # As train_net's default_setup: rank r seeds SEED + r (rank 0 builds the weights that DDP
    # gives every rank, the same as a single process's).
    seed_all_rng(cfg.SEED + comm.get_rank())
    trainer = Trainer(cfg)
    record = _Record()
    trainer.register_hooks([record])
    trainer.resume_or_load(resume=False)
    trainer.train()
    result = {
        "world_size": comm.get_world_size(),
        "digests": record.digests,
        "losses": record.losses,
    }
    with open(os.path.join(result_dir, f"rank{comm.get_rank()}.json"), "w") as f:
        json.dump(result, f)


def record_ranks(result_dir: str) -> None:
    """Write ``ranks{R}.json``: this process's global and local rank and sizes, as detectron2's
    comm reads them, and the sum over all processes of (rank + 1) (a collective that works)."""
    import torch
    import torch.distributed as dist

    total = torch.tensor([comm.get_rank() + 1.0])
    dist.all_reduce(total)
    result = {
        "rank": comm.get_rank(),
        "world_size": comm.get_world_size(),
        "local_rank": comm.get_local_rank(),
        "local_size": comm.get_local_size(),
        "backend": dist.get_backend(),
        "sum": float(total),
        "gathered": comm.all_gather(comm.get_rank()),
    }
    with open(os.path.join(result_dir, f"ranks{comm.get_rank()}.json"), "w") as f:
        json.dump(result, f)
