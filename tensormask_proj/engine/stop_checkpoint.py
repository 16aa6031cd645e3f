"""
When training stops on an error, keep the work done: save the last finished iteration, and say
how to resume.

detectron2's trainer saves only every SOLVER.CHECKPOINT_PERIOD iterations; an exception (an
unreadable image past the threshold, out of memory, a bug, Ctrl-C) lost everything since the
last period. :class:`CheckpointOnStop` runs when training ends early (detectron2 calls the hooks'
``after_train`` with ``trainer.iter < max_iter`` then). If iteration k failed before its optimizer
step began, the weights, the optimizer, the LR schedule (stepped after each finished iteration)
and the data loader are exactly those after iteration k-1: it saves them as
``model_{k-1}.pth``, which ``--resume`` continues from iteration k as if nothing had happened. If
the step had begun (a failure inside the step or in a hook after it), the state is neither, and
nothing is saved. The log and the exception's note name the checkpoint and the command.

A training that diverged (non-finite loss) has a frozen checkpointer: nothing is saved, and the
last good checkpoint stays the one to resume from (see :mod:`.checkpoint`).
"""

import logging
import os
import shlex
import sys
from typing import List, Optional

from detectron2.engine import HookBase

__all__ = ["CheckpointOnStop", "resume_command"]

logger = logging.getLogger(__name__)


def resume_command(argv: Optional[List[str]] = None) -> str:
    """The command line of this process with ``--resume`` (before the config overrides, which
    would swallow it), e.g. ``python train_net.py --resume --config-file C OUTPUT_DIR out``."""
    argv = list(sys.argv if argv is None else argv)
    if not argv or not argv[0].endswith(".py"):
        return "the training command again, with --resume"
    args = [a for a in argv[1:] if a != "--resume"]
    return shlex.join(["python", argv[0], "--resume", *args])


class CheckpointOnStop(HookBase):
    """
    Args:
        checkpointer: the trainer's checkpointer (an AtomicDetectionCheckpointer).
        optimizer: the trainer's optimizer, watched to know whether a step has begun.
        file_prefix: as detectron2's PeriodicCheckpointer ("model").
    """

    def __init__(self, checkpointer, optimizer, file_prefix: str = "model"):
        self.checkpointer = checkpointer
        self.optimizer = optimizer
        self.file_prefix = file_prefix
        self._step_began_at = None
        self._handle = None

    def before_train(self):
        self._step_began_at = None
        self._handle = self.optimizer.register_step_pre_hook(self._step_begins)

    def _step_begins(self, optimizer, args, kwargs):
        self._step_began_at = self.trainer.iter

    def after_train(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        trainer = self.trainer
        if trainer.iter >= trainer.max_iter:  # finished (detectron2 sets iter = max_iter)
            return
        if not self.checkpointer.save_to_disk:
            return  # not the main process: it saves nothing, and says nothing
        error = sys.exc_info()[1]
        message = f"Training stopped at iteration {trainer.iter}"
        if error is not None:
            message += f" ({type(error).__name__})"
        message += f". {self._save()}\nResume with: {resume_command()}"
        logger.error(message)
        if error is not None and hasattr(error, "add_note"):  # Python >= 3.11
            error.add_note(message)

    def _save(self) -> str:
        """Save the last finished iteration if possible; a sentence saying what was done."""
        trainer = self.trainer
        finished = trainer.iter - 1
        last = self.checkpointer.get_checkpoint_file()
        name = f"{self.file_prefix}_{finished:07d}"
        if self._step_began_at == trainer.iter:
            return (
                f"It failed after the optimizer step of iteration {trainer.iter} began (in the "
                "step, or in a hook after it): the state is not that of a finished iteration, "
                f"so nothing was saved; the last checkpoint is {last or 'none'}."
            )
        if finished < trainer.start_iter:
            return f"No iteration finished in this run; the last checkpoint is {last or 'none'}."
        if last and os.path.basename(last) == f"{name}.pth":
            return f"The last finished iteration, {finished}, is saved in {last}."
        if self.checkpointer.frozen:
            return f"Training diverged: nothing saved; the last good checkpoint is {last}."
        # Save "after iteration k-1": the trainer's state_dict reports trainer.iter.
        trainer.iter = finished
        try:
            self.checkpointer.save(name, iteration=finished)
        except Exception as e:  # (e.g. a full disk) the original error matters more
            logger.exception(f"Could not save {name}.pth")
            return f"Saving iteration {finished} failed ({e}); the last checkpoint is {last}."
        finally:
            trainer.iter = finished + 1
        saved = self.checkpointer.get_checkpoint_file()
        return f"The state after iteration {finished} (the last finished one) is saved in {saved}."
