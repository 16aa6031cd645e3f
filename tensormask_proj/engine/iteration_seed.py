"""
Model-side random draws that an exact ``--resume`` reproduces.

The model may draw random numbers while training (dropout; the Mask R-CNN baseline samples its
ROIs). :class:`ReseedEachIteration` seeds python's, numpy's and torch's generators before every
iteration from (run seed, rank, iteration) (:func:`~tensormask_proj.data.seeds.iteration_seed`),
so iteration k draws the same numbers in an uninterrupted run and in one resumed from a
checkpoint, on every process, with nothing to save but the run's seed.
"""

from typing import Callable

from detectron2.engine import HookBase
from detectron2.utils import comm

from ..data.seeds import iteration_seed, seed_all_rngs

__all__ = ["ReseedEachIteration"]


class ReseedEachIteration(HookBase):
    """
    Args:
        run_seed: returns the run's seed (the training loader's: it is the checkpoint's once a
            run is resumed).
    """

    def __init__(self, run_seed: Callable[[], int]):
        self.run_seed = run_seed

    def before_step(self):
        seed_all_rngs(iteration_seed(self.run_seed(), comm.get_rank(), self.trainer.iter))
