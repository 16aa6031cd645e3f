"""
Bad image files never stop a run (train_net's Trainer, in process, TensorMask on a tiny shapes
split of 8 images, 4 iterations of 2 images: one epoch):

* a JPEG whose header is intact but whose data is cut short, drawn at iteration 0, and an image
  deleted while training runs (a disk or share going bad), drawn at iteration 3: both are
  skipped, each logged once with its file, image id and the running count, and training ends;
* with DATALOADER.BAD_IMAGES at 0 (stop at the first one), the deleted image stops training with
  an error listing it, after saving the last finished iteration; once the file is back,
  ``--resume`` finishes the run;
* evaluation leaves an unreadable image out, lists it, and computes the COCO metrics over the
  others (a model predicting the ground truth exactly gets box AP 100 on them).
"""

import os
import shutil
import tempfile
import unittest

import torch
from detectron2.data import DatasetCatalog
from detectron2.engine import HookBase
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.env import seed_all_rng
from torch import nn

from tensormask_proj.data.bad_images import BadImagesError
from tensormask_proj.data.resumable_train_loader import IndexBatches

from .workflow_helpers import (
    TENSORMASK_CONFIG,
    TRAIN_NET,
    TinySplit,
    cfg_opts,
    load_script,
    register_in_process,
    tiny_training_cfg,
    unregister_in_process,
    workflow_cfg,
)

train_net = load_script(TRAIN_NET, "train_net")

MAX_ITER = 4
BAD_IMAGES_LOGGER = "tensormask_proj.data.bad_images"


def _truncate(path):
    """Keep the first half of a JPEG: its header (and size) intact, its pixels cut short."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


class _DeleteAt(HookBase):
    """Deletes ``path`` before iteration ``iteration`` (keeping a copy in ``backup``)."""

    def __init__(self, iteration, path, backup):
        self.iteration, self.path, self.backup = iteration, path, backup

    def before_step(self):
        if self.trainer.iter == self.iteration:
            shutil.move(self.path, self.backup)


class TestUnreadableTrainingImages(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="test_unreadable_images_")
        cls.split = TinySplit("_test_unreadable_train8", 8, 11, os.path.join(cls.tmp, "datasets"))
        register_in_process(cls.split)
        # The images of iterations 0 and 3 in the data order of SEED 0.
        loader = train_net.Trainer.build_train_loader(cls._cfg("probe"))
        batches = IndexBatches(loader.make_sampler(loader.seed), loader.groups, loader.batch_size)
        first, _, _, fourth = (batch[0][1] for _, batch in zip(range(4), batches))
        cls.truncated = loader.dataset[first]
        cls.deleted = loader.dataset[fourth]
        cls.original = os.path.join(cls.tmp, "original.jpg")
        shutil.copy(cls.truncated["file_name"], cls.original)

    @classmethod
    def tearDownClass(cls):
        unregister_in_process(cls.split)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def tearDown(self):  # the images as generated
        shutil.copy(self.original, self.truncated["file_name"])
        if os.path.exists(self.deleted["file_name"] + ".away"):
            shutil.move(self.deleted["file_name"] + ".away", self.deleted["file_name"])

    @classmethod
    def _cfg(cls, out, *opts):
        return tiny_training_cfg(cls.split, os.path.join(cls.tmp, out), MAX_ITER, 100, *opts)

    def _trainer(self, cfg, resume=False):
        seed_all_rng(cfg.SEED)
        trainer = train_net.Trainer(cfg)
        trainer.resume_or_load(resume=resume)
        away = self.deleted["file_name"] + ".away"
        trainer.register_hooks([_DeleteAt(2, self.deleted["file_name"], away)])
        return trainer

    def test_training_skips_them_and_ends(self):
        _truncate(self.truncated["file_name"])
        trainer = self._trainer(self._cfg("skips"))
        with self.assertLogs(BAD_IMAGES_LOGGER, "WARNING") as logs:
            trainer.train()
        self.assertTrue(os.path.isfile(os.path.join(trainer.cfg.OUTPUT_DIR, "model_final.pth")))
        truncated, deleted = logs.output  # each logged once
        self.assertIn(
            f"{self.truncated['file_name']} (image_id {self.truncated['image_id']}): OSError: "
            "image file is truncated",
            truncated,
        )
        self.assertIn("Unreadable so far: 1 files, 1 of 3 reads", truncated)
        self.assertIn(f"{self.deleted['file_name']} (image_id {self.deleted['image_id']})", deleted)
        self.assertIn("No such file or directory", deleted)
        self.assertIn("Unreadable so far: 2 files", deleted)
        # The account is in the checkpoint: a resumed run goes on counting from it.
        state = torch.load(
            os.path.join(trainer.cfg.OUTPUT_DIR, "model_final.pth"), weights_only=False
        )["trainer"]["data_loader"]["bad_images"]
        self.assertEqual(state["reads"], 2 * MAX_ITER + state["failed_reads"])
        files = [self.truncated["file_name"], self.deleted["file_name"]]
        self.assertEqual([f[0] for f in state["files"]], files)

    def test_past_the_threshold_training_stops_listing_them_and_resumes(self):
        stop_at_first = {
            "DATALOADER.BAD_IMAGES.TOLERATED_FILES": 0,
            "DATALOADER.BAD_IMAGES.MAX_FRACTION": 0.0,
        }
        cfg = self._cfg("stops", *cfg_opts(stop_at_first))
        trainer = self._trainer(cfg)
        with self.assertRaises(BadImagesError) as raised:
            trainer.train()
        message = str(raised.exception)
        self.assertIn(f"{self.deleted['file_name']} (image_id {self.deleted['image_id']})", message)
        self.assertIn("MAX_FRACTION 0.0, TOLERATED_FILES 0", message)
        (note,) = raised.exception.__notes__
        saved = os.path.join(cfg.OUTPUT_DIR, "model_0000002.pth")
        stopped = "Training stopped at iteration 3 (BadImagesError). The state after iteration 2"
        self.assertIn(f"{stopped} (the last finished one) is saved in {saved}", note)
        self.assertIn("--resume", note)

        # The file is back (the share remounted): --resume continues from iteration 3.
        shutil.move(self.deleted["file_name"] + ".away", self.deleted["file_name"])
        resumed = self._trainer(cfg, resume=True)
        self.assertEqual(resumed.start_iter, 3)
        with self.assertNoLogs(BAD_IMAGES_LOGGER, "WARNING"):
            resumed.train()
        self.assertTrue(os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "model_final.pth")))


class _GroundTruthModel(nn.Module):
    """Predicts the ground-truth boxes of each image of ``dataset`` with score 1."""

    def __init__(self, dataset):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.truth = {d["image_id"]: d["annotations"] for d in DatasetCatalog.get(dataset)}

    def forward(self, batched_inputs):
        outputs = []
        for x in batched_inputs:
            annotations = self.truth[x["image_id"]]
            boxes = [
                BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations
            ]
            instances = Instances((x["height"], x["width"]))
            instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).view(-1, 4))
            instances.scores = torch.ones(len(boxes))
            instances.pred_classes = torch.tensor([a["category_id"] for a in annotations])
            outputs.append({"instances": instances})
        return outputs


class TestUnreadableTestImages(unittest.TestCase):
    def test_evaluation_leaves_them_out_and_lists_them(self):
        tmp = tempfile.mkdtemp(prefix="test_unreadable_test_images_")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        split = TinySplit("_test_unreadable_val3", 3, 12, os.path.join(tmp, "datasets"))
        register_in_process(split)
        self.addCleanup(unregister_in_process, split)
        dicts = DatasetCatalog.get(split.name)
        bad = next(d for d in dicts if d["annotations"])
        _truncate(bad["file_name"])
        opts = {"DATASETS.TEST": f"('{split.name}',)", "OUTPUT_DIR": tmp}
        cfg = workflow_cfg(TENSORMASK_CONFIG, *cfg_opts(opts))
        with self.assertLogs("tensormask_proj", "WARNING") as logs:
            results = train_net.Trainer.test(cfg, _GroundTruthModel(split.name))
        log = "\n".join(logs.output)
        named = f"{bad['file_name']} (image_id {bad['image_id']})"
        self.assertIn(f"leaves out an unreadable image: {named}: OSError: image file is", log)
        self.assertIn(f"left out 1 unreadable images (of 3 in this process):\n  {named}", log)
        summary = "COCO metrics over 2 of 3 images: 1 left out (unreadable), image ids"
        self.assertIn(f"{summary} [{bad['image_id']}]", log)
        # Exact boxes on every image read: AP 100 (the unread image's objects are not misses).
        self.assertAlmostEqual(results["bbox"]["AP"], 100.0, places=4)


if __name__ == "__main__":
    unittest.main()
