"""
Small crafted COCO datasets for the checks of command-line datasets: images of every kind the
checks must accept or refuse (grayscale, RGBA, 16-bit, EXIF-rotated, 1x1 px), written to a
temporary folder, and a json builder whose annotations default to a valid square.
"""

import json
import os
import shutil
import tempfile
import unittest
from typing import Dict, List, Optional

import numpy as np
from PIL import Image

CATEGORIES = [{"id": 1, "name": "blob"}, {"id": 3, "name": "bar"}]  # ids need not be contiguous
_EXIF_ORIENTATION = 0x0112


def picture(name: str, height: int = 48, width: int = 64) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of image ``name``: a textured background (seeded by the name)
    with a bright square in the middle."""
    rng = np.random.default_rng(sum(name.encode()))
    image = rng.integers(0, 90, size=(height, width, 3), dtype=np.uint8)
    image[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = (220, 200, 60)
    return image


def write_image(folder: str, name: str, kind: str, height: int = 48, width: int = 64) -> Dict:
    """
    Write image ``name`` of ``kind`` into ``folder``; return its COCO "images" entry (id 0: set
    by :func:`coco_json`), with the size detectron2 reads it at.

    kind: "rgb" (JPEG), "gray" (8-bit PNG), "rgba", "rgb16" (16-bit RGB PNG), "gray16" (16-bit
    grayscale PNG), "exif" (JPEG stored width x height with EXIF orientation 6: read turned,
    height x width).
    """
    rgb = picture(name, height, width)
    path = os.path.join(folder, name)
    if kind == "rgb":
        Image.fromarray(rgb).save(path, quality=95)
    elif kind == "gray":
        Image.fromarray(rgb).convert("L").save(path)
    elif kind == "rgba":
        Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])).save(path)
    elif kind == "rgb16":
        import cv2  # PIL cannot write 16-bit RGB

        cv2.imwrite(path, rgb[:, :, ::-1].astype(np.uint16) * 257)
    elif kind == "gray16":
        Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257).save(path)
    elif kind == "exif":
        exif = Image.Exif()
        exif[_EXIF_ORIENTATION] = 6  # "rotate 90° clockwise to display"
        Image.fromarray(rgb).save(path, exif=exif.tobytes(), quality=95)
        height, width = width, height
    else:
        raise ValueError(kind)
    return {"id": 0, "file_name": name, "height": height, "width": width}


def annotation(image_id: int, box=None, **fields) -> Dict:
    """An annotation of ``image_id``: by default a 12x10 square at (10, 8) of category 1, with
    its polygon; ``box`` (XYWH) moves it; ``fields`` override anything (id is set later)."""
    x, y, w, h = box or (10, 8, 12, 10)
    ann = {
        "image_id": image_id,
        "category_id": 1,
        "bbox": [x, y, w, h],
        "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
        "area": w * h,
        "iscrowd": 0,
    }
    ann.update(fields)
    return ann


def coco_json(
    path: str,
    images: List[Dict],
    annotations: List[Dict],
    categories: Optional[List[Dict]] = None,
) -> str:
    """Write a COCO instances json; images get ids 1, 2, ... and annotations 101, 102, ...
    unless they carry their own (image ids in annotations refer to the final ids)."""
    images = [dict(img, id=img["id"] or i + 1) for i, img in enumerate(images)]
    annotations = [dict({"id": 101 + i}, **ann) for i, ann in enumerate(annotations)]
    content = {
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES if categories is None else categories,
    }
    with open(path, "w") as f:
        json.dump(content, f)
    return path


def rle_uncompressed(height: int, width: int, box) -> Dict:
    """Uncompressed COCO RLE (column-major counts) of the XYWH integer ``box``."""
    x, y, w, h = box
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y : y + h, x : x + w] = 1
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {"size": [height, width], "counts": counts}


def rle_compressed(height: int, width: int, box) -> Dict:
    """Compressed COCO RLE (counts as a string, as pycocotools writes it to json)."""
    import pycocotools.mask as mask_util

    rle = mask_util.frPyObjects(rle_uncompressed(height, width, box), height, width)
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def write_odd_dataset(root: str) -> str:
    """
    A dataset of every oddity that trains (after its checks) under ``root``: returns its json
    path (images in root/images). 6 images, 16 annotations of which 4 are skipped (two without
    a usable mask, a box wholly outside, a zero-area box) and 4 fixed (a box clipped, a
    collinear polygon dropped beside a valid one, a box of negative width taken from its
    polygon, a polygon reaching x = 1e7 clipped); RLE masks (so INPUT.MASK_FORMAT bitmask), 2
    classes, a crowd region.
    """
    images_dir = os.path.join(root, "images")
    os.makedirs(images_dir)
    images = [
        write_image(images_dir, "rgb.jpg", "rgb"),  # 1
        write_image(images_dir, "gray.png", "gray"),  # 2
        write_image(images_dir, "rgba.png", "rgba"),  # 3
        write_image(images_dir, "rgb16.png", "rgb16"),  # 4
        write_image(images_dir, "exif.jpg", "exif"),  # 5: read turned, 48 wide x 64 high
        write_image(images_dir, "tiny.png", "rgb", height=1, width=1),  # 6
    ]
    anns = [
        annotation(1),
        annotation(1, box=(30, 20, 20, 12), category_id=3),
        annotation(1, segmentation=[[10, 8, 22, 18]]),  # 2 points: skipped
        annotation(2, segmentation=rle_compressed(48, 64, (16, 12, 32, 24)), category_id=3),
        annotation(2, segmentation=[]),  # skipped
        annotation(3, segmentation=rle_uncompressed(48, 64, (16, 12, 32, 24))),
        annotation(3, box=(50, 30, 30, 30)),  # partly outside: clipped
        # A collinear polygon beside a valid one: dropped, the annotation kept.
        annotation(3, segmentation=[[10, 8, 22, 8, 22, 18, 10, 18], [10, 10, 20, 20, 30, 30]]),
        annotation(4, box=(16, 12, 32, 24)),
        annotation(4, box=(70, 10, 5, 5)),  # wholly outside: skipped
        # Negative width: the box is taken from the polygon.
        annotation(4, bbox=[40, 20, -10, 6], segmentation=[[30, 20, 40, 20, 40, 26, 30, 26]]),
        # Far coordinates: clipped before rasterisation.
        annotation(4, box=(40, 30, 24, 10), segmentation=[[40, 30, 1e7, 30, 1e7, 40, 40, 40]]),
        annotation(5, box=(8, 16, 32, 32), category_id=3),
        annotation(5, box=(8, 16, 0, 32)),  # zero area: skipped
        annotation(5, box=(20, 40, 10, 10), iscrowd=1),
        annotation(6, box=(0, 0, 1, 1)),
    ]
    return coco_json(os.path.join(root, "instances.json"), images, anns)


class OddDatasetTestCase(unittest.TestCase):
    """
    Tests on the dataset of ``write_odd_dataset``, written once per class into a temporary
    folder (``cls.json``, ``cls.images``) and registered by the tests under ``NAME``, which is
    unregistered after each test.
    """

    NAME = None  # set by subclasses

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix=f"test{cls.NAME}_")
        cls.json = write_odd_dataset(os.path.join(cls.tmp, "mine"))
        cls.images = os.path.join(cls.tmp, "mine", "images")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def tearDown(self):
        from detectron2.data import DatasetCatalog, MetadataCatalog

        if self.NAME in DatasetCatalog.list():
            DatasetCatalog.remove(self.NAME)
            MetadataCatalog.remove(self.NAME)
