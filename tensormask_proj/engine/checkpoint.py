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
"""
import os

import torch

from detectron2.checkpoint import DetectionCheckpointer

from ..utils import atomic_write

__all__ = ["AtomicDetectionCheckpointer", "non_finite_tensors"]


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
        with atomic_write(save_file) as f:
            torch.save(data, f)
        self.tag_last_checkpoint(basename)

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
