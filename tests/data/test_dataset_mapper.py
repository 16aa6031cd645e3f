"""BlendMaskDatasetMapper: the "basis_sem" map is rasterised from the transformed annotations."""

import os
import tempfile
import unittest

import cv2
import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.data import transforms as T
from detectron2.structures import BoxMode, PolygonMasks, polygons_to_bitmask

from tensormask_proj.config import add_blendmask_config
from tensormask_proj.data.dataset_mapper import (
    BlendMaskDatasetMapper,
    thing_semantic_from_instances,
)

HEIGHT, WIDTH = 48, 64


def _polygon_anno(points, category_id, iscrowd=0):
    xs, ys = points[0::2], points[1::2]
    return {
        "bbox": [min(xs), min(ys), max(xs), max(ys)],
        "bbox_mode": BoxMode.XYXY_ABS,
        "segmentation": [list(map(float, points))],
        "category_id": category_id,
        "iscrowd": iscrowd,
    }


SQUARE = [10, 10, 30, 10, 30, 30, 10, 30]  # class 2
TRIANGLE = [20, 5, 40, 40, 5, 40]  # class 4, drawn after the square: wins the overlap
CROWD = [45, 5, 60, 5, 60, 20, 45, 20]  # crowd: dropped by the mapper, so background


class TestBlendMaskDatasetMapper(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.image_path = os.path.join(cls._tmp.name, "image.png")
        rng = np.random.RandomState(0)
        cv2.imwrite(cls.image_path, rng.randint(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8))

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def _dataset_dict(self, annotations=None):
        if annotations is None:
            annotations = [
                _polygon_anno(SQUARE, 2),
                _polygon_anno(TRIANGLE, 4),
                _polygon_anno(CROWD, 1, iscrowd=1),
            ]
        return {
            "file_name": self.image_path,
            "height": HEIGHT,
            "width": WIDTH,
            "image_id": 0,
            "annotations": annotations,
        }

    def _mapper(self, augmentations, is_train=True, basis_sem_on=True):
        return BlendMaskDatasetMapper(
            is_train,
            augmentations=augmentations,
            image_format="BGR",
            use_instance_mask=True,
            basis_sem_on=basis_sem_on,
        )

    def test_values_after_flip_and_resize(self):
        # Horizontal flip then x2 resize: a point (x, y) moves to (2 * (64 - x), 2 * y).
        augs = [T.HFlipTransform(WIDTH), T.ResizeTransform(HEIGHT, WIDTH, 2 * HEIGHT, 2 * WIDTH)]
        out = self._mapper(augs)(self._dataset_dict())
        sem = out["basis_sem"]
        self.assertEqual(sem.dtype, torch.long)
        self.assertEqual(tuple(sem.shape), (2 * HEIGHT, 2 * WIDTH))
        self.assertEqual(tuple(sem.shape), tuple(out["image"].shape[1:]))

        def at(x, y):  # value at original-image point (x, y)
            return sem[int(2 * y), int(2 * (WIDTH - x))].item()

        self.assertEqual(at(12, 12), 3)  # square only (class 2 + 1)
        self.assertEqual(at(22, 28), 5)  # square and triangle overlap: triangle, drawn later
        self.assertEqual(at(30, 37), 5)  # triangle only
        self.assertEqual(at(52, 12), 0)  # crowd region: dropped
        self.assertEqual(at(3, 3), 0)  # background
        self.assertEqual(set(torch.unique(sem).tolist()), {0, 3, 5})

    def test_matches_transforming_a_precomputed_map(self):
        # AdelaiDet's route: rasterise once at the original size, then transform the map with
        # nearest-neighbour resampling. Both agree up to a thin band at the shape borders.
        augs = [T.HFlipTransform(WIDTH), T.ResizeTransform(HEIGHT, WIDTH, 72, 96)]
        out = self._mapper(augs)(self._dataset_dict())
        precomputed = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
        for points, cls in ((SQUARE, 2), (TRIANGLE, 4)):
            precomputed[polygons_to_bitmask([np.array(points, float)], HEIGHT, WIDTH)] = cls + 1
        transformed = T.TransformList(augs).apply_segmentation(precomputed)
        agree = (out["basis_sem"].numpy() == transformed).mean()
        self.assertGreater(agree, 0.95)

    def test_empty_annotations_and_inference(self):
        out = self._mapper([])(self._dataset_dict(annotations=[]))
        self.assertEqual(tuple(out["basis_sem"].shape), (HEIGHT, WIDTH))
        self.assertEqual(int(out["basis_sem"].sum()), 0)
        # Inference and LOSS_ON=False: no basis_sem.
        self.assertNotIn("basis_sem", self._mapper([], is_train=False)(self._dataset_dict()))
        self.assertNotIn("basis_sem", self._mapper([], basis_sem_on=False)(self._dataset_dict()))

    def test_from_config(self):
        cfg = add_blendmask_config(get_cfg())
        cfg.MODEL.MASK_ON = True
        cfg.MODEL.BASIS_MODULE.LOSS_ON = True
        self.assertTrue(BlendMaskDatasetMapper(cfg, True).basis_sem_on)
        self.assertFalse(BlendMaskDatasetMapper(cfg, False).basis_sem_on)
        cfg.MODEL.MASK_ON = False
        with self.assertRaisesRegex(ValueError, "MASK_ON"):
            BlendMaskDatasetMapper(cfg, True)

    def test_thing_semantic_from_bitmasks(self):
        from detectron2.structures import BitMasks, Instances

        masks = torch.zeros(2, 4, 5, dtype=torch.bool)
        masks[0, :2, :3] = True
        masks[1, 1:, 2:] = True
        inst = Instances((4, 5), gt_classes=torch.tensor([0, 5]), gt_masks=BitMasks(masks))
        expected = torch.tensor(
            [[1, 1, 1, 0, 0], [1, 1, 6, 6, 6], [0, 0, 6, 6, 6], [0, 0, 6, 6, 6]]
        )
        self.assertTrue(torch.equal(thing_semantic_from_instances(inst, (4, 5)), expected))
        polygons = Instances((4, 5), gt_classes=torch.tensor([1]))
        polygons.gt_masks = PolygonMasks([[[0.0, 0.0, 5.0, 0.0, 5.0, 4.0, 0.0, 4.0]]])
        self.assertTrue(bool((thing_semantic_from_instances(polygons, (4, 5)) == 2).all()))


if __name__ == "__main__":
    unittest.main()
