"""
The account of the training images that could not be read, kept by the training process.

The training loader skips an image it cannot read (``UnreadableImageError``) and takes another
one, as detectron2's ``MapDataset`` does when a mapper returns None. Each batch reports how many
images were read for it and which failed; :class:`BadImageLog` adds the reports up in the order
the trainer consumes the batches (so with DataLoader workers as without), logs each bad file
once, and stops training when too many reads fail:

    stop when  number of bad files > tolerated_files
          and  failed reads > max_fraction * reads

(config: ``DATALOADER.BAD_IMAGES.TOLERATED_FILES`` and ``.MAX_FRACTION``). The fraction is over
reads, so a bad file drawn once per epoch keeps weighing what it weighs in the dataset; the
tolerated count keeps one bad file of a tiny dataset from stopping a run. The state is saved in
checkpoints, so a resumed run goes on counting where it stopped.
"""

import logging
from typing import Dict, List, NamedTuple, Optional

__all__ = ["UnreadableImage", "BadImagesError", "BadImageLog"]

logger = logging.getLogger(__name__)


class UnreadableImage(NamedTuple):
    """One failed read: the image file, its dataset image id (or None) and the error."""

    file_name: str
    image_id: Optional[object]
    reason: str


class BadImagesError(RuntimeError):
    """Too many training images could not be read; the message lists them."""


def describe_files(files: Dict[str, UnreadableImage], limit: int = 50) -> str:
    """One line per file: ``file (image_id N): reason``, at most ``limit`` lines."""
    lines = [f"  {f} (image_id {u.image_id}): {u.reason}" for f, u in list(files.items())[:limit]]
    if len(files) > limit:
        lines.append(f"  ... and {len(files) - limit} more")
    return "\n".join(lines)


class BadImageLog:
    """
    Args:
        max_fraction: stop when more than this fraction of the reads failed (and ...)
        tolerated_files: ... more than this many distinct files are bad.
        dataset_name: named in the messages.
    """

    def __init__(self, max_fraction: float, tolerated_files: int, dataset_name: str = ""):
        if not 0.0 <= max_fraction <= 1.0:
            raise ValueError(
                f"DATALOADER.BAD_IMAGES.MAX_FRACTION must be in [0, 1], got {max_fraction}"
            )
        if tolerated_files < 0:
            raise ValueError(
                f"DATALOADER.BAD_IMAGES.TOLERATED_FILES must be >= 0, got {tolerated_files}"
            )
        self.max_fraction = float(max_fraction)
        self.tolerated_files = int(tolerated_files)
        self.dataset_name = dataset_name
        self.reads = 0
        self.failed_reads = 0
        self.files: Dict[str, UnreadableImage] = {}  # first failure of each file, in order

    def add(self, reads: int, failures: List[UnreadableImage]) -> None:
        """
        Account for one batch: ``reads`` images read for it, ``failures`` among them.

        Raises:
            BadImagesError: past the threshold. The account is then left as it was before this
                batch, so that a run resumed from a checkpoint stops at the same batch.
        """
        reads_after = self.reads + reads
        failed_after = self.failed_reads + len(failures)
        new = {}
        for failure in failures:
            if failure.file_name not in self.files and failure.file_name not in new:
                new[failure.file_name] = failure
        files_after = len(self.files) + len(new)
        if files_after > self.tolerated_files and failed_after > self.max_fraction * reads_after:
            everything = {**self.files, **new}
            raise BadImagesError(
                f"Training stopped: {failed_after} of {reads_after} image reads failed "
                f"({files_after} files), more than DATALOADER.BAD_IMAGES allows (MAX_FRACTION "
                f"{self.max_fraction}, TOLERATED_FILES {self.tolerated_files}). Unreadable "
                f"images{self._of_dataset()}:\n{describe_files(everything)}\nRepair or remove "
                "them (or raise the thresholds), then resume with --resume."
            )
        self.reads, self.failed_reads = reads_after, failed_after
        for file_name, failure in new.items():
            self.files[file_name] = failure
            logger.warning(
                f"Skipped an unreadable training image{self._of_dataset()}: {file_name} "
                f"(image_id {failure.image_id}): {failure.reason}. Another image was taken "
                f"instead. Unreadable so far: {len(self.files)} files, {self.failed_reads} of "
                f"{self.reads} reads (each file is logged once)."
            )

    def _of_dataset(self) -> str:
        return f" of {self.dataset_name}" if self.dataset_name else ""

    def state_dict(self) -> Dict:
        return {
            "reads": self.reads,
            "failed_reads": self.failed_reads,
            "files": [tuple(u) for u in self.files.values()],
        }

    def load_state_dict(self, state: Dict) -> None:
        self.reads = int(state["reads"])
        self.failed_reads = int(state["failed_reads"])
        self.files = {u[0]: UnreadableImage(*u) for u in state["files"]}
