"""
A :class:`DetectionCheckpointer` that never leaves a half-written or diverged checkpoint behind.

fvcore writes a checkpoint, and the ``last_checkpoint`` tag, straight to their final names, so
a run killed while saving leaves a truncated ``model_XXXXXXX.pth`` (or an empty tag) that
``--resume`` then trips over. Here both are written with :func:`~tensormask_proj.utils.atomic_write`
(a temporary file in the same directory, renamed into place), the checkpoint before the tag, so
the tag always names a complete file.

Saving can also be refused: :attr:`frozen` is set by the trainer once the loss has become
non-finite, and a model whose weights are not all finite is never saved (it also freezes the
checkpointer). Either way the last good checkpoint stays the one ``last_checkpoint`` names.

Around that:

* the temporary files of a save interrupted by ``kill -9`` are deleted when the next
  checkpointer of the folder is created (the next start), once their process is gone;
* a full disk (or quota) stops with one :class:`CheckpointDiskFullError` naming the output
  folder, the bytes the checkpoint needs and the bytes free;
* each save logs its size and duration, the cost of SOLVER.CHECKPOINT_PERIOD.
"""

import errno
import os
import shutil
import time

import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..utils.atomic_file import atomic_write, remove_stale_temporary_files

__all__ = ["AtomicDetectionCheckpointer", "CheckpointDiskFullError", "non_finite_tensors"]

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class CheckpointDiskFullError(OSError):
    """A checkpoint could not be written: no space left in the output folder."""


def _tensor_bytes(obj) -> int:
    """Bytes of the tensors in a (nested) checkpoint dict: what torch.save writes, roughly."""
    if torch.is_tensor(obj):
        return obj.untyped_storage().nbytes()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _is_disk_full(error: BaseException, directory: str, needed: int) -> bool:
    """Whether ``error`` (raised while writing into ``directory``) means the disk is full: an
    ENOSPC/EDQUOT anywhere in its chain (torch.save turns the OSError of a write into a
    RuntimeError of inline_container.cc), or less free space than ``needed``."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL:
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return shutil.disk_usage(directory).free < needed
    except OSError:
        return False


def non_finite_tensors(state_dict) -> list:
    """Names of the floating-point tensors of ``state_dict`` holding a NaN or an infinity."""
    return [
        name
        for name, value in state_dict.items()
        if torch.is_tensor(value)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    """
    Same constructor and API as :class:`DetectionCheckpointer`; see the module docstring for
    what differs. ``frozen`` (bool): when True, :meth:`save` only logs a warning.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frozen = False
        if self.save_dir and self.save_to_disk:
            for path in remove_stale_temporary_files(self.save_dir):
                self.logger.info(f"Removed {path}, left by a checkpoint save that was killed")

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        if self.frozen:
            self.logger.warning(f"Not saving checkpoint '{name}': training diverged")
            return
        model_state = self.model.state_dict()
        bad = non_finite_tensors(model_state)
        if bad:
            # The loss check runs before the optimizer step, but an infinite gradient with a
            # finite loss still produces NaN weights one step later: never tag those as "last".
            self.frozen = True
            shown = ", ".join(bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
            self.logger.error(
                f"Not saving checkpoint '{name}': non-finite weights in {shown}. "
                f"The last checkpoint stays {self.get_checkpoint_file() or '(none)'}"
            )
            return
        data = {"model": model_state}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)

        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        start = time.perf_counter()
        try:
            with atomic_write(save_file) as f:
                torch.save(data, f)
            self.tag_last_checkpoint(basename)
        except (OSError, RuntimeError) as e:
            needed = _tensor_bytes(data)
            if not _is_disk_full(e, self.save_dir, needed):
                raise
            raise self._disk_full_error(basename, needed) from None
        size = os.path.getsize(save_file)
        self.logger.info(
            f"Saved {basename}: {size / 2**20:.1f} MB in {time.perf_counter() - start:.2f} s"
        )

    def _disk_full_error(self, basename: str, needed: int) -> CheckpointDiskFullError:
        try:
            free = f"{shutil.disk_usage(self.save_dir).free:,} bytes free"
        except OSError:
            free = "free space unknown"
        last = self.get_checkpoint_file() or "none"
        return CheckpointDiskFullError(
            errno.ENOSPC,
            f"Cannot save checkpoint {basename}: the disk of the output folder "
            f"{os.path.abspath(self.save_dir)} is full. The checkpoint needs about {needed:,} "
            f"bytes ({needed / 2**20:.1f} MB), {free}. Free some space there (older "
            "model_*.pth files; SOLVER.CHECKPOINT_MAX_TO_KEEP keeps fewer) or choose another "
            f"OUTPUT_DIR, then resume with --resume from the last checkpoint ({last}).",
        )

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        tag_file = os.path.join(self.save_dir, "last_checkpoint")
        with atomic_write(tag_file, "w") as f:
            f.write(last_filename_basename)

    def _load_file(self, filename: str):
        try:
            return super()._load_file(filename)
        except Exception as e:
            # torch's messages ("failed finding central directory") do not say which file.
            raise RuntimeError(
                f"Cannot read checkpoint {filename}: {type(e).__name__}: {e}. The file is "
                "damaged or not a checkpoint; fetch it again or point MODEL.WEIGHTS elsewhere."
            ) from e
