"""
A :class:`DetectionCheckpointer` whose files are never left half-written.

fvcore writes a checkpoint straight to its final name, so a run killed while saving leaves a
truncated ``model_XXXXXXX.pth`` that looks like any other. Here the file is written under a
temporary name in the same directory and renamed into place (atomic on POSIX) before
``last_checkpoint`` is updated, so ``--resume`` always finds a complete file. Saving can also be
refused (:attr:`frozen`), which the trainer uses once training has diverged so that no
checkpoint with NaN weights replaces the last good one.
"""
import os

import torch

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["AtomicDetectionCheckpointer"]


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frozen = False  # when True, save() only logs

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        if self.frozen:
            self.logger.warning(f"Not saving checkpoint '{name}': training diverged")
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)

        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        tmp_file = os.path.join(self.save_dir, f".{basename}.tmp")
        self.logger.info(f"Saving checkpoint to {save_file}")
        with self.path_manager.open(tmp_file, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_file, save_file)
        self.tag_last_checkpoint(basename)
