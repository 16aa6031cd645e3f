"""
What the shapes images contain: exact rasterization, annotations that match the rendered
visible pixels (occlusion included), and removal of hidden objects.
"""

import unittest

import numpy as np
import pycocotools.mask as mask_util

from tensormask_proj.data.datasets.shape_geometry import SHAPE_OUTLINES, polygon_area, shape_polygon
from tensormask_proj.data.datasets.shape_raster import polygon_mask
from tensormask_proj.data.datasets.shape_scene import SceneObject, generate_image, render_scene
from tensormask_proj.data.datasets.shape_style import SCENE_STYLES
from tensormask_proj.data.datasets.shape_textures import FillStyle


def _flat(bgr):
    c = np.asarray(bgr, dtype=np.float64)
    return FillStyle("flat", c, c, period=10.0, angle=0.0, noise_seed=0)


def _ann_mask(ann, height, width):
    """What COCO (and detectron2) make of an annotation: (H, W) bool."""
    seg = ann["segmentation"]
    rle = seg if ann["iscrowd"] else mask_util.merge(mask_util.frPyObjects(seg, height, width))
    return mask_util.decode(rle).astype(bool)


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


class TestPolygonMask(unittest.TestCase):
    def test_hand_computed_rectangle(self):
        # x in [1.25, 3.75): cell centres 1.5, 2.5, 3.5 are inside -> columns 1..3;
        # y in [0.5, 2.5): centres 0.5, 1.5 inside (a centre on the top edge is in, on the
        # bottom edge is out) -> rows 0..1. 6 cells.
        rect = np.array([[1.25, 0.5], [3.75, 0.5], [3.75, 2.5], [1.25, 2.5]])
        expected = np.zeros((4, 5), dtype=bool)
        expected[0:2, 1:4] = True
        np.testing.assert_array_equal(polygon_mask(rect, 4, 5), expected)
        # Orientation does not matter.
        np.testing.assert_array_equal(polygon_mask(rect[::-1], 4, 5), expected)

    def test_area_of_large_polygons_is_exact(self):
        rng = np.random.default_rng(0)
        for name in SHAPE_OUTLINES:
            poly = shape_polygon(name, 900.0, rng.uniform(0, 6.3), (500.0, 480.0), rng)
            count = polygon_mask(poly, 1000, 1000).sum()
            # Centre sampling errs by at most ~perimeter / 2 cells, and on average by ~0.
            self.assertAlmostEqual(count / polygon_area(poly), 1.0, delta=2e-3, msg=name)

    def test_agrees_with_pycocotools(self):
        rng = np.random.default_rng(1)
        for name in SHAPE_OUTLINES:
            poly = shape_polygon(name, 60.0, rng.uniform(0, 6.3), (40.0, 35.0), rng)
            ours = polygon_mask(poly, 70, 80)
            coco = mask_util.decode(mask_util.frPyObjects([poly.ravel().tolist()], 70, 80))[..., 0]
            self.assertGreater(_iou(ours, coco.astype(bool)), 0.97, name)

    def test_least_triangle_angle(self):
        def least_angle(poly):
            edges = [poly[(i + 1) % 3] - poly[i] for i in range(3)]
            cosines = [
                np.dot(-edges[i - 1], edges[i])
                / (np.linalg.norm(edges[i - 1]) * np.linalg.norm(edges[i]))
                for i in range(3)
            ]
            angles = np.degrees(np.arccos(cosines))
            self.assertAlmostEqual(sum(angles), 180.0, places=6)
            return min(angles)

        rng = np.random.default_rng(2)
        for bound in (30.0, 45.0):
            least = [
                least_angle(shape_polygon("triangle", 50.0, angle, (0, 0), rng, bound))
                for angle in rng.uniform(0, 6.3, size=300)
            ]
            # Every triangle keeps the bound, and the family still spans it (not only
            # near-equilateral triangles).
            self.assertGreaterEqual(min(least), bound, bound)
            self.assertLess(min(least), bound + 3, bound)
        self.assertEqual(SCENE_STYLES["default"].min_triangle_angle, 45.0)
        self.assertEqual(SCENE_STYLES["stress"].min_triangle_angle, 30.0)
        with self.assertRaisesRegex(ValueError, "min_triangle_angle"):
            shape_polygon("triangle", 50.0, 0.0, (0, 0), rng, 75.0)

    def test_clipped_to_grid(self):
        rect = np.array([[-3.0, -2.0], [2.0, -2.0], [2.0, 10.0], [-3.0, 10.0]])
        mask = polygon_mask(rect, 4, 5)
        self.assertEqual(mask.sum(), 4 * 2)
        self.assertTrue(mask[:, :2].all())


class TestOcclusion(unittest.TestCase):
    H, W = 200, 220

    # Its min_visible_fraction is 0.3.
    STYLE = SCENE_STYLES["stress"]

    def _render(self, objects):
        background = np.full((self.H, self.W, 3), 128.0, dtype=np.float32)
        return render_scene(
            np.random.default_rng(0), objects, self.H, self.W, background, self.STYLE
        )

    def test_hole_and_cut_are_annotated_exactly(self):
        rng = np.random.default_rng(0)
        square = np.array([[50.0, 50.0], [150.0, 50.0], [150.0, 150.0], [50.0, 150.0]])
        inner = shape_polygon("circle", 40.0, 0.3, (100.0, 100.0), rng)  # inside: a hole
        corner = shape_polygon("star", 40.0, 0.0, (100.0, 150.0), rng)  # across the bottom edge
        scene = self._render(
            [
                SceneObject(2, [square], _flat([200, 0, 0])),
                SceneObject(0, [inner], _flat([0, 200, 0])),
                SceneObject(3, [corner], _flat([0, 0, 200])),
            ]
        )
        self.assertEqual(len(scene.annotations), 3)
        sq = scene.annotations[0]
        # Visible square = 100 * 100 - inner circle - the part of the star above y = 150.
        star_inside = polygon_mask(corner * 16, 3200, 3520)[: 150 * 16].sum() / 256.0
        expected = 10000.0 - polygon_area(inner) - star_inside
        shoelace = sum(polygon_area(np.reshape(p, (-1, 2))) for p in sq["segmentation"])
        self.assertAlmostEqual(shoelace / expected, 1.0, delta=2e-3)
        self.assertAlmostEqual(sq["area"] / expected, 1.0, delta=5e-3)
        self.assertEqual(sq["bbox"], [50.0, 50.0, 100.0, 100.0])
        mask = _ann_mask(sq, self.H, self.W)
        self.assertFalse(mask[100, 100])  # the hole is empty...
        self.assertTrue(mask[60, 60])  # ...the rest is not
        self.assertFalse(mask[148, 100])  # the star's tip covers the square there
        # Unoccluded objects keep their exact polygon.
        np.testing.assert_allclose(
            np.reshape(scene.annotations[1]["segmentation"][0], (-1, 2)), inner, atol=0.005
        )

    def test_hidden_objects_are_removed_from_the_scene(self):
        def box(x0, y0, x1, y1):
            return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)

        big = box(20, 20, 180, 180)  # drawn last, on top of the others
        objects = [
            SceneObject(0, [box(30, 30, 60, 60)], _flat([10, 10, 10])),  # fully covered
            SceneObject(1, [box(150, 100, 190, 130)], _flat([10, 10, 10])),  # 1/4 visible
            SceneObject(4, [box(170, 60, 200, 90)], _flat([10, 10, 10])),  # 1/3 visible
            SceneObject(2, [box(175, 140, 215, 180)], _flat([10, 10, 10])),  # 7/8 visible
            SceneObject(3, [big], _flat([250, 250, 250])),
        ]
        scene = self._render(objects)
        # min_visible_fraction is 0.3: 1/4 visible goes, 1/3 visible stays.
        self.assertEqual([o.category for o in scene.objects], [4, 2, 3])
        # Removed objects are not drawn either: no dark fragment is left unannotated.
        self.assertGreater(scene.image[45, 45].mean(), 200)  # big square
        self.assertGreater(scene.image[115, 185].mean(), 100)  # background
        self.assertLess(scene.image[75, 190].mean(), 50)  # the kept dark square
        # The kept partly covered square is annotated by its visible 20 x 30 px.
        self.assertEqual(scene.annotations[0]["bbox"], [180.0, 60.0, 20.0, 30.0])
        self.assertEqual(scene.annotations[0]["area"], 600.0)


class TestMaskFidelity(unittest.TestCase):
    """Annotations vs the rendered visible pixels of generated images (the stress style: it has
    the smallest objects and the most occlusion)."""

    @classmethod
    def setUpClass(cls):
        cls.records = []  # (max side of bbox, IoU, occluded, area ratio)
        for index in range(60):
            scene = generate_image(seed=11, index=index, style=SCENE_STYLES["stress"])
            h, w = scene.image.shape[:2]
            for ann, cov, obj in zip(scene.annotations, scene.coverage, scene.objects):
                rendered = cov >= 0.5
                annotated = _ann_mask(ann, h, w)
                occluded = ann["area"] < 0.98 * sum(polygon_area(p) for p in obj.polygons)
                cls.records.append(
                    (
                        max(ann["bbox"][2:]),
                        _iou(annotated, rendered),
                        occluded,
                        ann["area"] / cov.sum(),
                    )
                )
        cls.records = np.array(cls.records, dtype=np.float64)

    def test_iou_with_rendered_pixels(self):
        size, iou = self.records[:, 0], self.records[:, 1]
        self.assertGreater(len(size), 150)
        self.assertGreater(iou[size >= 16].mean(), 0.97)
        self.assertGreater(iou[size >= 16].min(), 0.85)
        self.assertGreater(iou[size >= 64].mean(), 0.99)
        self.assertGreater(iou[size < 16].mean(), 0.9)

    def test_occluded_objects_are_annotated_by_visible_part(self):
        size, iou, occluded = self.records[:, 0], self.records[:, 1], self.records[:, 2] > 0
        self.assertGreater(occluded.sum(), 15)  # occlusion is common, not a corner case
        self.assertGreater(iou[occluded & (size >= 16)].mean(), 0.96)

    def test_area_matches_rendered_coverage(self):
        size, ratio = self.records[:, 0], self.records[:, 3]
        big = size >= 32
        np.testing.assert_allclose(np.median(ratio[big]), 1.0, atol=0.01)
        self.assertLess(np.abs(ratio[big] - 1).max(), 0.08)


class TestDefaultStyle(unittest.TestCase):
    """The default style is learnable in minutes yet not trivial: every class, objects for
    every FPN level from P2 to P5, overlaps, crowds, and no object smaller than 24 px."""

    @classmethod
    def setUpClass(cls):
        style = SCENE_STYLES["default"]
        cls.sizes, cls.classes, cls.occluded, cls.crowds, cls.counts = [], [], 0, 0, []
        for index in range(80):
            scene = generate_image(seed=3, index=index, style=style)
            if scene.image.shape[0] != style.image_height:
                raise AssertionError(f"image height {scene.image.shape[0]}")
            cls.counts.append(sum(not o.iscrowd for o in scene.objects))
            for ann, obj in zip(scene.annotations, scene.objects):
                if ann["iscrowd"]:
                    cls.crowds += 1
                    continue
                cls.classes.append(ann["category_id"])
                full_size = max(np.ptp(obj.polygons[0], axis=0))
                cls.sizes.append(full_size)
                full_area = polygon_area(obj.polygons[0])
                cls.occluded += ann["area"] < 0.98 * full_area

    def test_classes_sizes_and_counts(self):
        sizes = np.array(self.sizes)
        self.assertEqual(set(self.classes), set(range(1, len(SCENE_STYLES["default"].classes) + 1)))
        self.assertGreaterEqual(sizes.min(), 24.0 - 1e-6)
        self.assertLessEqual(sizes.max(), 0.66 * 192 + 1e-6)
        # Objects for every FPN level P2..P5 (TensorMask's quick config has windows of 32/48,
        # 64/96, 128/192, 256/384 px there).
        for low, high in [(24, 32), (32, 64), (64, 100), (100, 128)]:
            self.assertGreater(((sizes >= low) & (sizes < high)).sum(), 8, (low, high))
        self.assertLessEqual(max(self.counts), SCENE_STYLES["default"].max_objects)
        self.assertGreater(np.mean(self.counts), 2.0)

    def test_overlaps_and_crowds_occur(self):
        self.assertGreater(self.occluded, 15)
        self.assertGreater(self.crowds, 0)


if __name__ == "__main__":
    unittest.main()
