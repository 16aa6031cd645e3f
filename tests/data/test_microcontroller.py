"""
The built-in microcontroller datasets (real photos shipped in the package): registered on
import, their content, the non-contiguous category ids 1, 3, 4, 5 through training and
COCOEvaluator, the files setup.py ships, and the three microcontroller configs (each builds and
trains on a batch; the TensorMask one runs train_net.py for 2 iterations and evaluates).
"""

import collections
import fnmatch
import importlib.util
import json
import os
import shutil
import tempfile
import unittest

from detectron2.data import DatasetCatalog, MetadataCatalog
from engine.workflow_helpers import cfg_opts, load_predictions, run_train_net, tail
from modeling.tensormask import tensormask_testing
from PIL import Image
from project_testing import (
    CONFIG_DIR,
    REPO_ROOT,
    assert_every_config_builds,
    make_input,
    project_cfg,
)

from tensormask_proj.data import prepare_dataset
from tensormask_proj.data.datasets import (
    MICROCONTROLLER_ROOT,
    MICROCONTROLLER_SPLITS,
    get_microcontroller_metadata,
)

CLASSES = ["Arduino", "ESP8266", "Heltec", "Raspberry"]
JSON_IDS = {1, 3, 4, 5}
# name -> (json file, images, instances, instances per class)
SPLITS = {
    "microcontroller_train": ("train.json", 119, 143, [38, 37, 36, 32]),
    "microcontroller_val": ("val.json", 30, 35, [5, 11, 8, 11]),
}
TENSORMASK_CONFIG = os.path.join(
    CONFIG_DIR, "quick_schedules", "tensormask_R_18_GN_FPN_microcontroller.yaml"
)
BLENDMASK_CONFIG = os.path.join(
    CONFIG_DIR, "quick_schedules", "blendmask_R_18_GN_FPN_microcontroller.yaml"
)
MASK_RCNN_CONFIG = os.path.join(
    CONFIG_DIR, "Baselines", "mask_rcnn_R_18_GN_FPN_microcontroller.yaml"
)


class TestRegistration(unittest.TestCase):
    def test_registered_on_import_with_metadata(self):
        self.assertEqual(set(MICROCONTROLLER_SPLITS), set(SPLITS))
        for name, (json_name, _, _, _) in SPLITS.items():
            with self.subTest(name=name):
                self.assertIn(name, DatasetCatalog.list())
                meta = MetadataCatalog.get(name)
                self.assertEqual(meta.evaluator_type, "coco")
                self.assertEqual(meta.thing_classes, CLASSES)
                self.assertEqual(meta.thing_dataset_id_to_contiguous_id, {1: 0, 3: 1, 4: 2, 5: 3})
                self.assertEqual(len({tuple(c) for c in meta.thing_colors}), 4)
                # The package's own copy, whatever the working directory.
                self.assertEqual(meta.json_file, os.path.join(MICROCONTROLLER_ROOT, json_name))
                self.assertEqual(meta.image_root, os.path.join(MICROCONTROLLER_ROOT, "images"))
                paths = prepare_dataset(name)  # nothing to generate: the paths
                self.assertEqual(paths.json_file, meta.json_file)
                self.assertEqual(paths.image_root, meta.image_root)

    def test_dataset_dicts(self):
        for name, (_, num_images, num_instances, per_class) in SPLITS.items():
            with self.subTest(name=name):
                dicts = DatasetCatalog.get(name)  # load_coco_json: the metadata stays as set
                self.assertEqual(len(dicts), num_images)
                anns = [a for d in dicts for a in d["annotations"]]
                self.assertEqual(len(anns), num_instances)
                counts = collections.Counter(a["category_id"] for a in anns)
                # Contiguous classes 0..3 for training, in json id order.
                self.assertEqual([counts[i] for i in range(4)], per_class)
                self.assertTrue(all(len(a["segmentation"]) >= 1 for a in anns))
                self.assertEqual(MetadataCatalog.get(name).thing_classes, CLASSES)
                for d in dicts:
                    self.assertTrue(os.path.isfile(d["file_name"]), d["file_name"])
                    self.assertEqual((d["width"], d["height"]), (800, 600))

    def test_json_keeps_the_export_ids_and_images_exist(self):
        file_names = set()
        for name, (json_name, num_images, _, _) in SPLITS.items():
            with open(os.path.join(MICROCONTROLLER_ROOT, json_name)) as f:
                data = json.load(f)
            self.assertEqual({c["id"]: c["name"] for c in data["categories"]},
                             dict(zip(sorted(JSON_IDS), CLASSES)))  # fmt: skip
            self.assertEqual({a["category_id"] for a in data["annotations"]}, JSON_IDS)
            names = [im["file_name"] for im in data["images"]]
            self.assertEqual(len(set(names)), num_images)
            file_names |= set(names)
        self.assertEqual(len(file_names), 149, "train and val share no image")
        on_disk = set(os.listdir(os.path.join(MICROCONTROLLER_ROOT, "images")))
        self.assertEqual(on_disk, file_names)
        for file_name in sorted(file_names):
            with Image.open(os.path.join(MICROCONTROLLER_ROOT, "images", file_name)) as im:
                self.assertEqual(im.size, (800, 600), file_name)

    def test_metadata_function(self):
        meta = get_microcontroller_metadata()
        self.assertEqual(meta["thing_classes"], CLASSES)
        self.assertEqual(sorted(meta["thing_dataset_id_to_contiguous_id"]), sorted(JSON_IDS))


class TestPackageData(unittest.TestCase):
    """Every file of the data folder is package data of setup.py (a wheel ships it)."""

    def test_setup_ships_every_data_file(self):
        spec = importlib.util.spec_from_file_location(
            "tensormask_proj_setup_data", os.path.join(REPO_ROOT, "setup.py")
        )
        setup_py = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(setup_py)  # (main guard: no build)
        package = "tensormask_proj.data.datasets"
        package_dir = os.path.join(REPO_ROOT, *package.split("."))
        self.assertEqual(
            os.path.realpath(package_dir), os.path.realpath(os.path.dirname(MICROCONTROLLER_ROOT))
        )
        patterns = setup_py.PACKAGE_DATA[package]
        files = [
            os.path.relpath(os.path.join(folder, f), package_dir).replace(os.sep, "/")
            for folder, _, names in os.walk(MICROCONTROLLER_ROOT)
            for f in names
        ]
        self.assertGreaterEqual(len(files), 149 + 4)
        unshipped = [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)]
        self.assertEqual(unshipped, [])
        for required in ("LICENSE", "README.md", "train.json", "val.json"):
            self.assertIn(f"microcontroller/{required}", files)
        with open(os.path.join(MICROCONTROLLER_ROOT, "LICENSE")) as f:
            licence = f.read()
        self.assertTrue(licence.startswith("MIT License"))
        self.assertIn("dmitriy-egvut", licence)


def _batch(make_input, **kwargs):
    """Two training inputs with classes within the 4 microcontroller classes, one empty."""
    return [
        make_input((128, 160), [[10, 12, 70, 90], [90, 20, 150, 110]], [0, 3], **kwargs),
        make_input((128, 160), [], [], seed=2),
    ]


class TestConfigs(unittest.TestCase):
    def test_each_config_builds_and_trains_on_a_batch(self):
        for path, arch, batch in (
            (TENSORMASK_CONFIG, "TensorMask", _batch(tensormask_testing.make_input, seed=1)),
            (BLENDMASK_CONFIG, "BlendMask", _batch(make_input, seed=1)),
            (MASK_RCNN_CONFIG, "GeneralizedRCNN", _batch(tensormask_testing.make_input, seed=1)),
        ):
            assert_every_config_builds(self, [path], arch, batch)

    def test_configs_use_the_microcontroller_datasets(self):
        for path in (TENSORMASK_CONFIG, BLENDMASK_CONFIG, MASK_RCNN_CONFIG):
            cfg = project_cfg(path)
            self.assertEqual(cfg.DATASETS.TRAIN, ("microcontroller_train",))
            self.assertEqual(cfg.DATASETS.TEST, ("microcontroller_val",))
            self.assertEqual(cfg.INPUT.MIN_SIZE_TRAIN, (256,))
            self.assertEqual(cfg.SOLVER.MAX_ITER, 1200)


class TestTrainAndEvaluate(unittest.TestCase):
    """train_net.py (a fresh process) trains the TensorMask microcontroller config 2 iterations
    at 128 px and evaluates on microcontroller_val (30 images, a few seconds) with COCOEvaluator:
    its predictions carry the json's category ids 1, 3, 4, 5, not the classes 0..3."""

    def test_train_net_two_iterations_and_coco_evaluation(self):
        out = tempfile.mkdtemp(prefix="test_microcontroller_")
        self.addCleanup(shutil.rmtree, out, ignore_errors=True)
        opts = {
            "INPUT.MIN_SIZE_TRAIN": "(128,)",
            "INPUT.MAX_SIZE_TRAIN": 176,
            "INPUT.MIN_SIZE_TEST": 128,
            "INPUT.MAX_SIZE_TEST": 176,
            "SOLVER.IMS_PER_BATCH": 2,
            "SOLVER.BASE_LR": 0.005,
            "SOLVER.WARMUP_ITERS": 10,
            "SOLVER.STEPS": "()",
            "SOLVER.MAX_ITER": 2,
            "SOLVER.CHECKPOINT_PERIOD": 100,
            # An untrained model scores everything near the prior: keep 10 per image.
            "MODEL.TENSOR_MASK.SCORE_THRESH_TEST": 0.0,
            "TEST.DETECTIONS_PER_IMAGE": 10,
            "OUTPUT_DIR": out,
        }
        args = ["--config-file", TENSORMASK_CONFIG, "--num-gpus", "1"] + cfg_opts(opts)
        run = run_train_net(args, [], timeout=240)
        self.assertEqual(run.returncode, 0, tail(run.stdout))
        self.assertIn("Evaluation results for microcontroller_val", run.stdout)
        self.assertIn("copypaste: Task: segm", run.stdout)
        predictions = load_predictions(out)
        self.assertGreater(len(predictions), 0)
        self.assertLessEqual({p["category_id"] for p in predictions}, JSON_IDS)
        with open(MetadataCatalog.get("microcontroller_val").json_file) as f:
            val_ids = {im["id"] for im in json.load(f)["images"]}
        self.assertLessEqual({p["image_id"] for p in predictions}, val_ids)


if __name__ == "__main__":
    unittest.main()
