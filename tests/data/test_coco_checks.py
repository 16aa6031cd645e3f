"""
check_coco_dataset and register_coco_dataset on crafted COCO datasets: each bad annotation or
image of issue 11 is either an error naming the file, image id and annotation id, or a counted
skip or fix; images detectron2 reads correctly are accepted.
"""
import json
import os
import shutil
import tempfile
import unittest

from detectron2.data import DatasetCatalog, MetadataCatalog

from tensormask_proj.data.coco_checks import CocoDatasetError, check_coco_dataset
from tensormask_proj.data.coco_datasets import describe_registration, register_coco_dataset

from .coco_fixtures import (
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
        check = self.check(
            [self.rgb()], [annotation(1), annotation(1, segmentation=[]), without]
        )
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
                annotation(1, box=(10, 10, 5, -1)),  # 106: negative height
            ],
        )
        self.assertEqual(check.fixed["box_clipped"], 2)
        self.assertEqual(check.skipped["box_outside_image"], 2)
        self.assertEqual(check.skipped["zero_area_box"], 2)
        boxes = {a["id"]: a["bbox"] for a in check.dataset["annotations"]}
        self.assertEqual(boxes, {101: [0, 40, 16, 8], 102: [60, 2, 4, 5]})
        self.assertIn("annotation id 103 of image id 1", check.examples["box_outside_image"])
        self.assertIn("annotation id 105 of image id 1", check.examples["zero_area_box"])

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
