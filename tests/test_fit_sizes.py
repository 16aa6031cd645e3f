"""
tools/fit_sizes.py on a user's COCO data: ``--dataset NAME JSON IMAGE_DIR`` registers it
(checked) and the last --dataset is the one measured; it prints the config's sizes and the
fitted ones with their per-level counts, and the override to train with; a wrong name or a
config of another model is refused.
"""

import contextlib
import io
import os
import shutil
import tempfile
import unittest

from data.coco_fixtures import annotation, coco_json, write_image
from detectron2.data import DatasetCatalog, MetadataCatalog
from engine.workflow_helpers import BLENDMASK_CONFIG, TENSORMASK_CONFIG, load_script
from project_testing import CONFIG_DIR, REPO_ROOT

fit_sizes = load_script(os.path.join(REPO_ROOT, "tools", "fit_sizes.py"), "fit_sizes_tool")

NAME = "_test_fit_sizes_mine"


class TestFitSizesTool(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="test_fit_sizes_")
        images = os.path.join(cls.tmp, "images")
        os.makedirs(images)
        entries = [write_image(images, f"{i}.jpg", "rgb", 96, 128) for i in range(2)]
        # Two objects per image.
        anns = [annotation(i, box=b) for i in (1, 2) for b in ((20, 20, 40, 36), (80, 60, 12, 10))]
        cls.json = coco_json(os.path.join(cls.tmp, "mine.json"), entries, anns)
        cls.images = images

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def tearDown(self):
        if NAME in DatasetCatalog.list():
            DatasetCatalog.remove(NAME)
            MetadataCatalog.remove(NAME)

    def _run(self, config):
        out = io.StringIO()
        argv = ["--config-file", config, "--dataset", NAME, self.json, self.images]
        argv += ["MODEL.TENSOR_MASK.NUM_CLASSES", "2", "MODEL.FCOS.NUM_CLASSES", "2"]
        with contextlib.redirect_stdout(out):
            self.assertEqual(fit_sizes.main(argv), 0)
        return out.getvalue().splitlines()

    def test_tensormask_own_dataset(self):
        lines = self._run(TENSORMASK_CONFIG)
        self.assertTrue(lines[0].startswith(f"{NAME}: 2 images, training sizes (192,)"), lines[0])
        config = lines[1]
        self.assertTrue(config.startswith("config: MODEL.ANCHOR_GENERATOR.SIZES [[32, 48]"), config)
        self.assertIn("4 objects", config)
        levels = [line.split(":")[0].strip() for line in lines[2:7]]
        self.assertEqual(levels, ["p2", "p3", "p4", "p5", "p6"])  # the quick config's levels
        self.assertTrue(lines[7].startswith("fitted: MODEL.ANCHOR_GENERATOR.SIZES"), lines[7])
        self.assertIn("0 objects without any", lines[7])
        self.assertTrue(lines[-1].startswith('train with: MODEL.ANCHOR_GENERATOR.SIZES "[['))

    def test_blendmask_own_dataset(self):
        lines = self._run(BLENDMASK_CONFIG)
        self.assertEqual(
            lines[1],
            "config: MODEL.FCOS.SIZES_OF_INTEREST [64, 128]: 4 objects per level "
            "(p3: 4, p4: 0, p5: 0)",
        )
        self.assertTrue(lines[2].startswith("fitted: MODEL.FCOS.SIZES_OF_INTEREST"), lines[2])
        self.assertTrue(lines[-1].startswith('train with: MODEL.FCOS.SIZES_OF_INTEREST "['))

    def test_refusals(self):
        for argv, message in (
            (["--config-file", TENSORMASK_CONFIG, "--dataset", "shapes_trian"],
             "no dataset named 'shapes_trian' is registered. Did you mean"),
            (["--config-file", os.path.join(CONFIG_DIR, "Baselines",
                                            "mask_rcnn_R_18_GN_FPN_shapes.yaml")],
             "GeneralizedRCNN is not a TensorMask or BlendMask config"),
        ):  # fmt: skip
            err = io.StringIO()
            with self.subTest(argv=argv), contextlib.redirect_stderr(err):
                with self.assertRaises(SystemExit):
                    fit_sizes.main(argv)
                self.assertIn(message, err.getvalue())


if __name__ == "__main__":
    unittest.main()
