"""
Random states that are a function of where training is, not of what ran before.

An exact ``--resume`` needs every random draw of iteration k to be the same whether the process
ran iterations 0..k-1 itself or loaded a checkpoint of iteration k-1. Instead of saving and
restoring every generator (numpy, python, torch, in every DataLoader worker, on every rank),
each draw is seeded from plain integers that a checkpoint already implies:

* the mapping (augmentation) of the sample at position ``p`` of the sampler's stream, attempt
  ``a`` (a retry after an unreadable image): ``sample_seed(run_seed, p, a)``;
* everything the model draws at iteration ``k`` on rank ``r`` (dropout, ROI sampling of the
  Mask R-CNN baseline): ``iteration_seed(run_seed, r, k)``.

The run's seed is SEED, or the random seed drawn once when SEED < 0; checkpoints record it.
"""

import contextlib
import random
from typing import Iterator

import numpy as np
import torch

__all__ = [
    "derive_seed",
    "sample_seed",
    "retry_seed",
    "iteration_seed",
    "seed_all_rngs",
    "seeded_rngs",
]

# Distinct first words keep the sample and iteration streams independent for equal numbers.
_SAMPLE, _ITERATION, _RETRY = 0, 1, 2


def derive_seed(*entropy: int) -> int:
    """A 32-bit seed mixed from non-negative integers (numpy's SeedSequence: nearby inputs give
    unrelated seeds, so consecutive positions do not get correlated augmentations)."""
    return int(np.random.SeedSequence([int(x) for x in entropy]).generate_state(1)[0])


def sample_seed(run_seed: int, position: int, attempt: int = 0) -> int:
    """Seed of the mapping of the sample at ``position`` of the (global) sampler stream."""
    return derive_seed(run_seed, _SAMPLE, position, attempt)


def retry_seed(run_seed: int, position: int, attempt: int) -> int:
    """Seed choosing the replacement image after ``attempt`` failed at ``position``."""
    return derive_seed(run_seed, _RETRY, position, attempt)


def iteration_seed(run_seed: int, rank: int, iteration: int) -> int:
    """Seed of the model-side random draws of ``iteration`` on process ``rank``."""
    return derive_seed(run_seed, _ITERATION, rank, iteration)


def seed_all_rngs(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (torch: CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """
    Run the block with python's, numpy's and torch's CPU generators seeded with ``seed`` (the
    ones detectron2's augmentations and mappers draw from), then put back the states they had:
    with DATALOADER.NUM_WORKERS 0 the mapping runs in the training process, and must not move
    the model's random stream.
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    try:
        random.seed(seed)
        np.random.seed(seed)
        torch.default_generator.manual_seed(seed)  # the CPU one only: CUDA's stays the model's
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
