"""
Evaluation leaves out the images it cannot read, and says which.

A damaged test image used to stop evaluation (and with it the end of a training run). Here the
test loader's mapper turns an :class:`UnreadableImageError` into a marker, the loader wrapper
drops the marked images from the batches and logs each one (file, image id, error) and a summary
at the end, and the COCO evaluator evaluates on the images it received predictions for, instead
of counting the unread ones as images where nothing was found.
"""

import itertools
import logging
from typing import Callable, Dict, Iterator, List

from detectron2.data import build_detection_test_loader
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm

from ..data.mapper_errors import UnreadableImageError

__all__ = ["MarkUnreadable", "SkipUnreadableImages", "ReadableImagesCOCOEvaluator"]

logger = logging.getLogger(__name__)

UNREADABLE = "unreadable"  # key of the marker dict: the error


class MarkUnreadable:
    """Mapper wrapper: ``{"file_name", "image_id", "unreadable": error}`` instead of raising
    :class:`UnreadableImageError` (wrap a :class:`NamedErrorMapper`)."""

    def __init__(self, mapper: Callable[[Dict], Dict]):
        self.mapper = mapper

    def __call__(self, dataset_dict: Dict) -> Dict:
        try:
            return self.mapper(dataset_dict)
        except UnreadableImageError as e:
            return {"file_name": e.file_name, "image_id": e.image_id, UNREADABLE: e.reason}


class SkipUnreadableImages:
    """
    A test loader without the images marked by :class:`MarkUnreadable`. ``len`` is the wrapped
    loader's (the images to try); ``unreadable`` lists the marked dicts of the last pass.
    """

    def __init__(self, loader, dataset_name: str):
        self.loader = loader
        self.dataset_name = dataset_name
        self.unreadable: List[Dict] = []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[List[Dict]]:
        self.unreadable = []
        for batch in self.loader:
            kept = [d for d in batch if UNREADABLE not in d]
            for d in batch:
                if UNREADABLE in d:
                    self.unreadable.append(d)
                    logger.warning(
                        f"Evaluation of {self.dataset_name} leaves out an unreadable image: "
                        f"{d['file_name']} (image_id {d['image_id']}): {d[UNREADABLE]}"
                    )
            if kept:
                yield kept
        if self.unreadable:
            files = "\n".join(
                f"  {d['file_name']} (image_id {d['image_id']})" for d in self.unreadable
            )
            logger.warning(
                f"Evaluation of {self.dataset_name} left out {len(self.unreadable)} unreadable "
                f"images (of {len(self.loader)} in this process):\n{files}"
            )


def build_readable_test_loader(cfg, dataset_name: str, mapper) -> SkipUnreadableImages:
    """detectron2's test loader of ``dataset_name`` with ``mapper`` (a NamedErrorMapper), without
    the images that cannot be read."""
    loader = build_detection_test_loader(cfg, dataset_name, mapper=MarkUnreadable(mapper))
    return SkipUnreadableImages(loader, dataset_name)


class ReadableImagesCOCOEvaluator(COCOEvaluator):
    """
    :class:`COCOEvaluator` (same arguments) whose metrics cover the images it received
    predictions for, when some images of the dataset got none (left out as unreadable);
    otherwise the whole dataset, as detectron2's.
    """

    def evaluate(self, img_ids=None):
        if img_ids is None and getattr(self, "_do_evaluation", False):
            seen = [p["image_id"] for p in self._predictions]
            if self._distributed:  # (every process calls evaluate)
                seen = list(itertools.chain(*comm.all_gather(seen)))
            dataset_ids = self._coco_api.getImgIds()
            left_out = sorted(set(dataset_ids) - set(seen))
            if left_out and seen:
                logger.warning(
                    f"COCO metrics over {len(set(seen))} of {len(dataset_ids)} images: "
                    f"{len(left_out)} left out (unreadable), image ids {left_out[:20]}"
                    + (" ..." if len(left_out) > 20 else "")
                )
                img_ids = sorted(set(seen))
        return super().evaluate(img_ids)
