"""
Errors raised while turning a dataset dict into model inputs should name the image, and say
whether the image itself could not be read.

detectron2's mappers read the image with PIL, whose messages for a damaged file do not always
say which file it was ("image file is truncated (42 bytes not processed)"); with thousands of
images and worker processes that is a dead end. :class:`NamedErrorMapper` wraps any mapper and
re-raises its errors as :class:`DatasetMappingError` naming ``file_name`` (and the dataset
image id when there is one), keeping the original exception as ``__cause__``.

When the image file cannot be read or decoded (truncated, not an image, missing, an I/O error
of the disk or share), the error is an :class:`UnreadableImageError`: the training loader skips
such an image and takes another one, evaluation leaves it out (``docs/datasets.md``). Every other
error (a bad annotation, a bug in a mapper) still stops the run.
"""

from typing import Callable, Dict, Optional

from detectron2.data.detection_utils import read_image

__all__ = ["DatasetMappingError", "UnreadableImageError", "NamedErrorMapper"]


class DatasetMappingError(RuntimeError):
    """Mapping one dataset dict failed; the message names its image file."""


class UnreadableImageError(DatasetMappingError):
    """
    The image file of a dataset dict could not be read or decoded.

    Attributes:
        file_name (str or None), image_id (the dataset's id or None), reason (str: the
        original error, "OSError: image file is truncated ...").
    """

    def __init__(
        self,
        message: str,
        file_name: Optional[str] = None,
        image_id=None,
        reason: Optional[str] = None,
    ):
        # (One positional argument is enough to rebuild it, as DataLoader workers do.)
        super().__init__(message)
        self.file_name = file_name
        self.image_id = image_id
        self.reason = reason


def _image_is_unreadable(error: Exception, file_name: Optional[str]) -> bool:
    """Whether ``error``, raised by a mapper, comes from reading the image ``file_name``."""
    if isinstance(error, OSError):  # PIL's truncated/unidentified image, missing file, EIO
        return True
    if not file_name:
        return False
    # PIL also raises SyntaxError, ValueError, ... for some damaged files. Any other error is
    # the image's only if the file cannot be read on its own (this costs a read, on errors only).
    try:
        read_image(file_name)
    except Exception:
        return True
    return False


class NamedErrorMapper:
    """
    Callable with the signature of the wrapped mapper: ``dataset_dict -> dict`` (or None, which
    detectron2's MapDataset treats as "skip this one").

    Raises:
        UnreadableImageError: the image file could not be read or decoded.
        DatasetMappingError: any other error of the wrapped mapper.

    Args:
        mapper: any detectron2 dataset mapper (e.g. :class:`DatasetMapper`).
    """

    def __init__(self, mapper: Callable[[Dict], Dict]):
        self.mapper = mapper

    def __call__(self, dataset_dict: Dict):
        try:
            return self.mapper(dataset_dict)
        except Exception as e:
            file_name = dataset_dict.get("file_name")
            where = file_name or "<dataset dict without 'file_name'>"
            if "image_id" in dataset_dict:
                where += f" (image_id {dataset_dict['image_id']})"
            reason = f"{type(e).__name__}: {e}"
            # One line with the file first: the error of a DataLoader worker is re-raised in the
            # main process as text, so the file name must be in the message, not only the cause.
            message = f"Preparing the inputs of image {where} failed: {reason}"
            if _image_is_unreadable(e, file_name):
                image_id = dataset_dict.get("image_id")
                raise UnreadableImageError(message, file_name, image_id, reason) from e
            raise DatasetMappingError(message) from e

    def __repr__(self):
        return f"NamedErrorMapper({self.mapper!r})"
