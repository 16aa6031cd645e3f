"""
Errors raised while turning a dataset dict into model inputs should name the image.

detectron2's mappers read the image with PIL, whose messages for a damaged file do not always
say which file it was ("image file is truncated (42 bytes not processed)"); with thousands of
images and worker processes that is a dead end. :class:`NamedErrorMapper` wraps any mapper and
re-raises its errors as :class:`DatasetMappingError` naming ``file_name`` (and the dataset
image id when there is one), keeping the original exception as ``__cause__``.
"""
from typing import Callable, Dict

__all__ = ["DatasetMappingError", "NamedErrorMapper"]


class DatasetMappingError(RuntimeError):
    """Mapping one dataset dict failed; the message names its image file."""


class NamedErrorMapper:
    """
    Callable with the signature of the wrapped mapper: ``dataset_dict -> dict`` (or None, which
    detectron2's MapDataset treats as "skip this one").

    Args:
        mapper: any detectron2 dataset mapper (e.g. :class:`DatasetMapper`).
    """

    def __init__(self, mapper: Callable[[Dict], Dict]):
        self.mapper = mapper

    def __call__(self, dataset_dict: Dict):
        try:
            return self.mapper(dataset_dict)
        except Exception as e:
            where = dataset_dict.get("file_name", "<dataset dict without 'file_name'>")
            if "image_id" in dataset_dict:
                where += f" (image_id {dataset_dict['image_id']})"
            # One line with the file first: the error of a DataLoader worker is re-raised in the
            # main process as text, so the file name must be in the message, not only the cause.
            raise DatasetMappingError(
                f"Preparing the inputs of image {where} failed: {type(e).__name__}: {e}"
            ) from e

    def __repr__(self):
        return f"NamedErrorMapper({self.mapper!r})"
