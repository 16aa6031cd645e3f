"""
check_coco_dataset and register_coco_dataset on crafted COCO datasets: each bad annotation or
image of issues 11 and 36 (repeated category ids, ids that are lists, every annotation skipped,
negative boxes, degenerate polygons, coordinates of 1e7) is either an error naming the file,
image id and annotation id, or a counted skip or fix; images detectron2 reads correctly are
accepted.
"""

import json
import os
import shutil
import tempfile
import unittest

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog

from tensormask_proj.data.coco_checks import CocoDatasetError, check_coco_dataset
from tensormask_proj.data.coco_datasets import describe_registration, register_coco_dataset

from .coco_fixtures import (
    CATEGORIES,
    annotation,
    coco_json,
    rle_compressed,
    rle_uncompressed,
    write_image,
)


class CocoCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="test_coco_checks_")
        self.images = os.path.join(self.tmp, "images")
        os.makedirs(self.images)
        self.json = os.path.join(self.tmp, "instances.json")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def check(self, images, annotations, mask_format="polygon", **kwargs):
        coco_json(self.json, images, annotations, **kwargs)
        return check_coco_dataset(self.json, self.images, mask_format)

    def assertError(self, images, annotations, *texts, mask_format="polygon", **kwargs):
        with self.assertRaises(CocoDatasetError) as raised:
            self.check(images, annotations, mask_format, **kwargs)
        message = str(raised.exception)
        for text in (self.json,) + texts:
            self.assertIn(text, message)
        return message

    def rgb(self, name="a.jpg", **kwargs):
        return write_image(self.images, name, "rgb", **kwargs)


class TestAnnotations(CocoCase):
    def test_valid_dataset_is_unchanged(self):
        check = self.check([self.rgb()], [annotation(1), annotation(1, category_id=3)])
        self.assertFalse(check.changed)
        self.assertEqual(check.summary(), "")
        self.assertEqual(len(check.dataset["annotations"]), 2)
        self.assertEqual(check.thing_classes, ["blob", "bar"])

    def test_polygons_of_fewer_than_3_points(self):
        two_points = [[10, 8, 22, 18]]
        valid = annotation(1)["segmentation"][0]
        check = self.check(
            [self.rgb()],
            [
                annotation(1),
                annotation(1, segmentation=two_points),  # id 102: nothing left -> skipped
                annotation(1, segmentation=[valid, [1, 2, 3, 4, 5]]),  # id 103: odd count
            ],
        )
        self.assertEqual(check.skipped["no_valid_mask"], 1)
        self.assertEqual(check.fixed["polygons_dropped"], 1)
        kept = {a["id"]: a for a in check.dataset["annotations"]}
        self.assertEqual(sorted(kept), [101, 103])
        self.assertEqual(kept[103]["segmentation"], [valid])
        summary = check.summary()
        self.assertIn("skipped 1 annotation(s): no usable mask", summary)
        self.assertIn("annotation id 102 of image id 1", summary)
        self.assertIn(os.path.join(self.images, "a.jpg"), summary)

    def test_empty_or_missing_segmentation(self):
        without = annotation(1)
        del without["segmentation"]
        check = self.check([self.rgb()], [annotation(1), annotation(1, segmentation=[]), without])
        self.assertEqual(check.skipped["no_valid_mask"], 2)
        self.assertEqual([a["id"] for a in check.dataset["annotations"]], [101])

    def test_dataset_without_masks(self):
        # Without a mask: a detection dataset. A model without masks trains on it as it is; a
        # model with masks cannot.
        anns = [annotation(1, segmentation=[]), annotation(1)]
        del anns[1]["segmentation"]
        self.assertFalse(self.check([self.rgb()], anns, mask_format=None).changed)
        self.assertError([self.rgb()], anns, "none of its 2 annotations has a 'segmentation'")
        # Nor does a model without masks look at broken ones.
        anns = [annotation(1, segmentation=[[1, 2, 3, 4]]), annotation(1, segmentation="x")]
        self.assertFalse(self.check([self.rgb()], anns, mask_format=None).changed)

    def test_rle_masks(self):
        image = self.rgb()  # 48 x 64
        anns = [
            annotation(1, segmentation=rle_compressed(48, 64, (10, 8, 12, 10))),
            annotation(1, segmentation=rle_uncompressed(48, 64, (30, 20, 5, 6))),
        ]
        # detectron2 turns RLE into bitmasks only: an error naming the key, with polygons.
        message = self.assertError(
            [image], anns, "annotation id 101 of image id 1", "annotation id 102 of image id 1"
        )
        self.assertIn("INPUT.MASK_FORMAT bitmask", message)
        check = self.check([image], anns, mask_format="bitmask")
        self.assertFalse(check.changed)
        # Crowd regions are dropped by the mapper before masks are built: RLE is fine there.
        crowd = [annotation(1), dict(anns[0], iscrowd=1)]
        self.assertFalse(self.check([image], crowd).changed)

    def test_rle_of_the_wrong_size(self):
        anns = [annotation(1, segmentation=rle_uncompressed(40, 64, (10, 8, 12, 10)))]
        self.assertError([self.rgb()], anns, "annotation id 101", "RLE size [40, 64]")
        broken = rle_uncompressed(48, 64, (10, 8, 12, 10))
        broken["counts"][-1] -= 1
        self.assertError([self.rgb()], [annotation(1, segmentation=broken)], "do not add up")

    def test_boxes_outside_the_image(self):
        # Image 64 x 48. Partly outside: clipped (as detectron2's mapper clips it in training).
        check = self.check(
            [self.rgb()],
            [
                annotation(1, box=(-4, 40, 20, 20)),  # 101: clipped to [0, 40, 16, 8]
                annotation(1, box=(60, 2, 10, 5)),  # 102: clipped to [60, 2, 4, 5]
                annotation(1, box=(70, 10, 5, 5)),  # 103: wholly right of the image
                annotation(1, box=(-20, -20, 10, 10)),  # 104: wholly above-left
                annotation(1, box=(10, 10, 0, 5)),  # 105: zero width
                annotation(1, box=(10, 10, 5, -1)),  # 106: negative height, see below
            ],
        )
        self.assertEqual(check.fixed["box_clipped"], 2)
        self.assertEqual(check.skipped["box_outside_image"], 2)
        self.assertEqual(check.skipped["zero_area_box"], 1)
        boxes = {a["id"]: a["bbox"] for a in check.dataset["annotations"]}
        self.assertEqual(boxes, {101: [0, 40, 16, 8], 102: [60, 2, 4, 5], 106: [10, 9, 5, 1]})
        self.assertIn("annotation id 103 of image id 1", check.examples["box_outside_image"])
        self.assertIn("annotation id 105 of image id 1", check.examples["zero_area_box"])

    def test_negative_box(self):
        # A negative width or height is a mistake, not an empty box: said so. The annotation's
        # polygons, what the annotator drew, give the box when there are any.
        polygon = [[30, 20, 40, 20, 40, 26, 30, 26]]
        anns = [
            annotation(1, bbox=[40, 20, -10, 6], segmentation=polygon),  # 101: box from polygon
            annotation(1, bbox=[40, 20, -10, 6], segmentation=[]),  # 102: no polygon
            annotation(1, bbox=[40, 20, 10, -6], segmentation=[[60, 20, 90, 20, 90, 26]]),  # 103
            annotation(1),
        ]
        check = self.check([self.rgb()], anns)
        self.assertEqual(check.fixed["box_from_polygons"], 2)
        self.assertEqual(check.skipped["negative_box"], 1)
        self.assertEqual(check.skipped["zero_area_box"], 0)
        self.assertEqual(check.skipped["no_valid_mask"], 0)
        boxes = {a["id"]: a["bbox"] for a in check.dataset["annotations"]}
        # 103's polygon reaches past the image (64 px wide): its box is clipped as any box.
        self.assertEqual(boxes, {101: [30, 20, 10, 6], 103: [60, 20, 4, 6], 104: [10, 8, 12, 10]})
        self.assertIn("annotation id 102 of image id 1", check.examples["negative_box"])
        summary = check.summary()
        self.assertIn("skipped 1 annotation(s): box of negative width or height", summary)
        self.assertIn("fixed 2 annotation(s): box of negative width or height replaced", summary)
        # A model without masks has no polygon to take the box from.
        check = self.check([self.rgb()], anns, mask_format=None)
        self.assertEqual(check.skipped["negative_box"], 3)

    def test_degenerate_polygons(self):
        # Image 64 x 48. Zero-area polygons and polygons wholly outside the image rasterise to
        # empty masks: dropped, and the annotation kept when it has other polygons.
        valid = annotation(1)["segmentation"][0]
        collinear = [10, 10, 20, 20, 30, 30]
        repeated = [5, 5, 5, 5, 5, 5, 5, 5]
        nearly = [0.1, 0.2, 10.1, 20.2, 30.1, 60.2]  # collinear in floats (not exactly)
        outside = [70, 10, 80, 10, 80, 20]  # the box 101 is inside the image, its polygon not
        left = [-30, 5, 0, 5, 0, 9, -30, 9]  # touches the border only
        check = self.check(
            [self.rgb()],
            [
                annotation(1, segmentation=[outside]),  # 101: skipped
                annotation(1, segmentation=[collinear, repeated]),  # 102: skipped
                annotation(1, segmentation=[valid, nearly, left]),  # 103: kept, two dropped
                annotation(1, segmentation=[valid, outside, [1, 2, 3, 4]]),  # 104: both reasons
                annotation(1, segmentation=[[10, 10, 20, 20, 30, 31]]),  # 105: thin, but kept
            ],
        )
        self.assertEqual(check.skipped["degenerate_mask"], 2)
        self.assertEqual(check.skipped["no_valid_mask"], 0)
        self.assertEqual(check.fixed["degenerate_polygons_dropped"], 2)
        self.assertEqual(check.fixed["polygons_dropped"], 1)
        kept = {a["id"]: a["segmentation"] for a in check.dataset["annotations"]}
        self.assertEqual(kept, {103: [valid], 104: [valid], 105: [[10, 10, 20, 20, 30, 31]]})
        self.assertIn("annotation id 101 of image id 1", check.examples["degenerate_mask"])
        summary = check.summary()
        self.assertIn("skipped 2 annotation(s): every polygon degenerate (zero area", summary)
        self.assertIn("fixed 2 annotation(s): degenerate polygons (zero area", summary)

    def test_far_coordinates_are_clipped(self):
        # Coordinates of 1e7 made pycocotools allocate memory in proportion and gave empty
        # masks. They are clipped to one image size around the image; inside the image the
        # mask is that of the polygon as drawn.
        far = 1e7
        # A U whose arms run far right, and a triangle whose long edge crosses the image.
        u_shape = [10, 10, far, 10, far, 20, 20, 20, 20, 30, far, 30, far, 40, 10, 40]
        triangle = [10, 10, far + 10, 10, 10, 40]
        near = [50, 30, 100, 30, 100, 40, 50, 40]  # past the border, within the margin: as is
        check = self.check(
            [self.rgb()],
            [
                annotation(1, segmentation=[u_shape]),
                annotation(1, segmentation=[triangle, near]),
                annotation(1, segmentation=[[-far, -far, far, -far, 0, far]]),  # covers all
            ],
        )
        self.assertEqual(check.fixed["polygons_clipped"], 3)
        self.assertIn("annotation id 101 of image id 1", check.examples["polygons_clipped"])
        kept = {a["id"]: a["segmentation"] for a in check.dataset["annotations"]}
        for polygons in kept.values():
            for polygon in polygons:
                self.assertTrue(all(-64 <= x <= 128 for x in polygon[0::2]), polygon)
                self.assertTrue(all(-48 <= y <= 96 for y in polygon[1::2]), polygon)
        self.assertEqual(kept[102][1], near)

        def mask(polygons):
            return mask_util.decode(mask_util.merge(mask_util.frPyObjects(polygons, 48, 64)))

        # The same shapes drawn with the far points brought in along their edges by hand.
        u_near = [10, 10, 100, 10, 100, 20, 20, 20, 20, 30, 100, 30, 100, 40, 10, 40]
        y_at_100 = 40 - 30 * (100 - 10) / far
        triangle_near = [10, 10, 100, 10, 100, y_at_100, 10, 40]
        np.testing.assert_array_equal(mask(kept[101]), mask([u_near]))
        np.testing.assert_array_equal(mask(kept[102][:1]), mask([triangle_near]))
        self.assertEqual(int(mask(kept[103]).sum()), 48 * 64)
        self.assertGreater(int(mask(kept[101]).sum()), 0)

    def test_malformed_box(self):
        anns = [annotation(1, bbox=[1, 2, 3]), annotation(1, bbox=[1, 2, 3, float("nan")])]
        self.assertError([self.rgb()], anns, "annotation id 101", "annotation id 102", "bbox")

    def test_category_missing_from_categories(self):
        self.assertError(
            [self.rgb(), self.rgb("b.jpg")],
            [annotation(1), annotation(2, category_id=2)],
            "annotation id 102 of image id 2",
            os.path.join(self.images, "b.jpg"),
            "category_id 2 is not in 'categories'",
        )

    def test_unknown_image_and_repeated_ids(self):
        self.assertError(
            [self.rgb()],
            [annotation(1), annotation(7), annotation(1, id=101)],
            "annotation id 102 of image id 7",
            "image id not in 'images'",
            "annotation id repeated",
        )

    def test_repeated_category_ids(self):
        # detectron2 would ask for 4 classes, then fail its thing_classes assertion.
        categories = [
            {"id": 1, "name": "blob"},
            {"id": 3, "name": "bar"},
            {"id": 3, "name": "box"},
            {"id": 5, "name": "ring"},
        ]
        self.assertError(
            [self.rgb()],
            [annotation(1)],
            "category id 3 is given to 2 categories (['bar', 'box'])",
            "4 categories but 3 distinct ids",
            categories=categories,
        )

    def test_ids_that_are_not_integers(self):
        # A list as an id made pycocotools fail with "unhashable type: 'list'".
        message = self.assertError(
            [self.rgb(), dict(self.rgb("b.jpg"), id=[2])],
            [
                annotation(1, id=[7, 8]),
                annotation([1]),
                annotation(1, category_id={"id": 1}),
                annotation(1, id=None),
            ],
            "image id [2] (file b.jpg): image id is not an integer or a string",
            "annotation id [7, 8] of image id 1 (file ",
            "id [7, 8] not an integer or a string",
            "annotation id 102 of image id [1] (file None): image_id [1] not an integer",
            "annotation id 103 of image id 1 (file ",
            "category_id {'id': 1} not an integer or a string",
            "id None not an integer",
            "category {'id': 2.5, 'name': 'half'}: id 2.5 is not an integer or a string",
            categories=list(CATEGORIES) + [{"id": 2.5, "name": "half"}],
        )
        self.assertIn("6 problem(s)", message)
        # Strings are ids too (pycocotools only hashes them), but not mixed with integers:
        # detectron2 sorts image and category ids.
        strings = [dict(self.rgb(), id="a")]
        check = self.check(strings, [annotation("a", id="x")])
        self.assertFalse(check.changed)
        self.assertError(
            strings + [self.rgb("b.jpg")],
            [annotation("a")],
            "image ids mix integers and strings",
        )

    def test_every_annotation_skipped(self):
        # detectron2 would log the skips, then stop with a bare "No valid data found".
        message = self.assertError(
            [self.rgb()],
            [annotation(1, segmentation=[]), annotation(1, box=(70, 10, 5, 5))],
            "none of its 2 annotations is left to train on (2 skipped)",
            "skipped 1 annotation(s): box wholly outside its image, e.g. annotation id 102",
            "skipped 1 annotation(s): no usable mask",
        )
        self.assertNotIn("problem(s)", message)
        # Crowd regions are not trained on either.
        self.assertError(
            [self.rgb()],
            [annotation(1, iscrowd=1), annotation(1, segmentation=[[1, 2, 3, 4]])],
            "none of its 2 annotations is left to train on (1 skipped, 1 crowd region(s)",
        )
        # A dataset without annotations (to run inference on) is no such case.
        self.assertFalse(self.check([self.rgb()], []).changed)

    def test_errors_are_listed_then_counted(self):
        anns = [annotation(1, category_id=9) for _ in range(13)]
        message = self.assertError([self.rgb()], anns, "13 problem(s)", "... and 3 more")
        self.assertIn("annotation id 110 ", message)
        self.assertNotIn("annotation id 111 ", message)


class TestImages(CocoCase):
    def test_accepted_kinds(self):
        images = [
            write_image(self.images, "gray.png", "gray"),
            write_image(self.images, "rgba.png", "rgba"),
            write_image(self.images, "rgb16.png", "rgb16"),
            write_image(self.images, "exif.jpg", "exif"),  # json: the turned size, 48 x 64
            write_image(self.images, "tiny.png", "rgb", height=1, width=1),
        ]
        anns = [annotation(i + 1) for i in range(4)]
        anns.append(annotation(5, box=(0, 0, 1, 1)))
        check = self.check(images, anns)
        self.assertFalse(check.changed)

    def test_missing_image(self):
        listed = dict(self.rgb(), file_name="gone.jpg")
        self.assertError(
            [self.rgb(), listed],
            [annotation(2)],
            "image id 2 (file " + os.path.join(self.images, "gone.jpg"),
            "missing on disk",
        )

    def test_unreadable_and_wrongly_sized_images(self):
        with open(os.path.join(self.images, "junk.jpg"), "w") as f:
            f.write("not an image")
        junk = dict(self.rgb(), file_name="junk.jpg")
        wrong = dict(self.rgb("b.jpg"), width=100)
        self.assertError(
            [junk, wrong], [], "image id 1", "cannot be read", "image id 2", "json says 100x48"
        )

    def test_16_bit_grayscale(self):
        image = write_image(self.images, "depth.png", "gray16")
        self.assertError([image], [annotation(1)], "image id 1", "depth.png", "16-bit")

    def test_exif_orientation_with_the_stored_size(self):
        image = write_image(self.images, "turned.jpg", "exif")
        stored = dict(image, width=image["height"], height=image["width"])
        self.assertError([stored], [annotation(1)], "image id 1", "turned.jpg", "EXIF")


class TestRegistration(CocoCase):
    def register(self, name):
        self.addCleanup(MetadataCatalog.remove, name)
        self.addCleanup(DatasetCatalog.remove, name)
        cache_dir = os.path.join(self.tmp, "c")
        return register_coco_dataset(name, self.json, self.images, cache_dir, "polygon")

    def test_clean_dataset_registers_its_own_json(self):
        coco_json(self.json, [self.rgb()], [annotation(1, category_id=3)])
        check = self.register("_test_coco_clean")
        metadata = MetadataCatalog.get("_test_coco_clean")
        self.assertEqual(metadata.json_file, self.json)
        self.assertEqual(metadata.thing_classes, ["blob", "bar"])
        dicts = DatasetCatalog.get("_test_coco_clean")
        self.assertEqual(dicts[0]["annotations"][0]["category_id"], 1)  # contiguous id of 3
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "c")))
        self.assertIn("1 images, 1 annotations, 2 classes", describe_registration("x", check))
        with self.assertRaisesRegex(ValueError, "already registered"):
            register_coco_dataset("_test_coco_clean", self.json, self.images, self.tmp)

    def test_skips_go_to_a_checked_copy(self):
        anns = [annotation(1), annotation(1, segmentation=[]), annotation(1, box=(60, 2, 10, 5))]
        coco_json(self.json, [self.rgb()], anns)
        check = self.register("_test_coco_skips")
        copy = os.path.join(self.tmp, "c", "_test_coco_skips.json")
        self.assertEqual(MetadataCatalog.get("_test_coco_skips").json_file, copy)
        with open(copy) as f:
            self.assertEqual([a["id"] for a in json.load(f)["annotations"]], [101, 103])
        self.assertEqual(len(DatasetCatalog.get("_test_coco_skips")[0]["annotations"]), 2)
        text = describe_registration("_test_coco_skips", check)
        self.assertIn("skipped 1 annotation(s)", text)
        self.assertIn("fixed 1 annotation(s): box clipped", text)
        self.assertIn(copy, text)


if __name__ == "__main__":
    unittest.main()
