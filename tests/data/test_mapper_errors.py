"""NamedErrorMapper: errors name the image; an image that cannot be read or decoded (a JPEG cut
short with its header intact, not an image, missing) raises UnreadableImageError, every other
error (a bad annotation, an image of another size than its annotation) DatasetMappingError."""

import os
import pickle
import shutil
import tempfile
import unittest

from detectron2.data import DatasetMapper
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from tensormask_proj.data.mapper_errors import (
    DatasetMappingError,
    NamedErrorMapper,
    UnreadableImageError,
)

from .coco_fixtures import write_image


class TestNamedErrorMapper(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="test_mapper_errors_")
        write_image(cls.dir, "good.jpg", "rgb", height=48, width=64)
        write_image(cls.dir, "truncated.jpg", "rgb", height=48, width=64)
        path = os.path.join(cls.dir, "truncated.jpg")
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:  # the header (and size) intact, the pixels cut short
            f.write(data[: len(data) // 2])
        with open(os.path.join(cls.dir, "garbage.jpg"), "w") as f:
            f.write("not an image")
        cls.mapper = NamedErrorMapper(
            DatasetMapper(is_train=True, augmentations=[T.NoOpTransform()], image_format="BGR")
        )

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def _dict(self, name, **extra):
        box = {"bbox": [4, 4, 20, 20], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0}
        d = {"file_name": os.path.join(self.dir, name), "image_id": 42, "height": 48, "width": 64}
        return {**d, "annotations": [box], **extra}

    def test_good_image(self):
        self.assertEqual(tuple(self.mapper(self._dict("good.jpg"))["image"].shape), (3, 48, 64))

    def test_unreadable_images(self):
        cases = {
            "truncated.jpg": "image file is truncated",
            "garbage.jpg": "cannot identify image file",
            "missing.jpg": "No such file",
        }
        for name, reason in cases.items():
            with self.subTest(name=name):
                with self.assertRaises(UnreadableImageError) as raised:
                    self.mapper(self._dict(name))
                error = raised.exception
                path = os.path.join(self.dir, name)
                self.assertEqual((error.file_name, error.image_id), (path, 42))
                self.assertIn(reason, error.reason)
                self.assertIn(f"image {path} (image_id 42) failed: ", str(error))
                self.assertIsInstance(error, DatasetMappingError)  # callers of before still work

    def test_other_errors_are_not_unreadable_images(self):
        bad_annotation = self._dict("good.jpg", annotations=[{"bbox": [1, 2], "category_id": 0}])
        wrong_size = self._dict("good.jpg", height=64, width=48)
        for name, d in (("annotation", bad_annotation), ("size", wrong_size)):
            with self.subTest(name):
                with self.assertRaises(DatasetMappingError) as raised:
                    self.mapper(d)
                self.assertNotIsInstance(raised.exception, UnreadableImageError)
                self.assertIn("good.jpg (image_id 42)", str(raised.exception))

    def test_non_os_error_of_an_unreadable_file(self):
        # PIL raises SyntaxError/ValueError for some damaged files: the file is then re-read.
        def mapper(d):
            raise ValueError("tile cannot extend outside image")

        d = self._dict("truncated.jpg")
        with self.assertRaises(UnreadableImageError):
            NamedErrorMapper(mapper)(d)
        with self.assertRaises(DatasetMappingError) as raised:  # a readable file: not the image
            NamedErrorMapper(mapper)(self._dict("good.jpg"))
        self.assertNotIsInstance(raised.exception, UnreadableImageError)

    def test_error_can_be_rebuilt_from_its_message(self):
        # DataLoader workers re-raise an exception in the main process as type(message).
        with self.assertRaises(UnreadableImageError) as raised:
            self.mapper(self._dict("garbage.jpg"))
        rebuilt = type(raised.exception)(str(raised.exception))
        self.assertEqual(str(rebuilt), str(raised.exception))
        self.assertEqual(pickle.loads(pickle.dumps(raised.exception)).args, raised.exception.args)


if __name__ == "__main__":
    unittest.main()
