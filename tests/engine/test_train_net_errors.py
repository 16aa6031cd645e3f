"""
train_net.py's error paths and robustness, in process (fast): every bad input fails with an error
naming the key or file; a dataset whose images are all unreadable stops training with the files
listed, and evaluation leaves them out, listed; a non-finite loss stops training, leaves the last
good checkpoint as ``last_checkpoint``, and training resumes from it; the command line reaches
detectron2's ``launch`` (the DDP path) with the GPU/machine arguments.
"""

import glob
import importlib
import os
import runpy
import shutil
import sys
import tempfile
import unittest
from unittest import mock

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from project_testing import CONFIG_DIR

from tensormask_proj.data.bad_images import BadImagesError
from tensormask_proj.data.datasets import get_shapes_metadata
from tensormask_proj.engine import CPUAutocastTrainer, check_config
from tensormask_proj.engine.trainer import check_sync_batchnorm

from .workflow_helpers import (
    BLENDMASK_CONFIG,
    TENSORMASK_CONFIG,
    TRAIN_NET,
    TinySplit,
    cfg_opts,
    last_checkpoint,
    load_checkpoint,
    load_script,
    register_in_process,
    unregister_in_process,
    workflow_cfg,
)

# The module (the package exports a function of the same name).
cpu_autocast_module = importlib.import_module("tensormask_proj.engine.cpu_autocast")

train_net = load_script(TRAIN_NET, "train_net")


def _args(config, *opts, eval_only=False, resume=False):
    argv = ["--config-file", config]
    argv += ["--eval-only"] if eval_only else []
    argv += ["--resume"] if resume else []
    return train_net.default_argument_parser().parse_args(argv + list(opts))


class TestSetupErrorsNameTheProblem(unittest.TestCase):
    """Each error comes from ``setup`` (before anything is built or written)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="test_setup_errors_")
        cls.out = ["OUTPUT_DIR", os.path.join(cls.tmp, "out")]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_unknown_key_on_command_line(self):
        # yacs checks command-line overrides with an assert (files raise KeyError).
        key = r"Non-existent key: MODEL\.TENSOR_MASK\.NUM_CLASES"
        with self.assertRaisesRegex(AssertionError, key):
            train_net.setup(_args(TENSORMASK_CONFIG, "MODEL.TENSOR_MASK.NUM_CLASES", "3"))

    def test_unknown_key_in_config_file(self):
        path = os.path.join(self.tmp, "typo.yaml")
        with open(path, "w") as f:
            f.write(f'_BASE_: "{BLENDMASK_CONFIG}"\nSOLVER:\n  MAX_ITERS: 10\n')
        with self.assertRaisesRegex(KeyError, r"SOLVER\.MAX_ITERS"):
            train_net.setup(_args(path, *self.out))

    def test_missing_config_file(self):
        path = os.path.join(self.tmp, "no_such_config.yaml")
        with self.assertRaisesRegex(Exception, "no_such_config.yaml"):
            train_net.setup(_args(path))

    def test_unregistered_dataset(self):
        with self.assertRaisesRegex(KeyError, "DATASETS.TRAIN: dataset 'shapes_trian' is not"):
            train_net.setup(_args(BLENDMASK_CONFIG, "DATASETS.TRAIN", "('shapes_trian',)"))

    def test_dataset_whose_annotations_are_missing(self):
        json_file = os.path.join(self.tmp, "coco", "annotations", "instances_train2017.json")
        register_coco_instances("_test_missing_coco", {}, json_file, os.path.dirname(json_file))
        self.addCleanup(DatasetCatalog.remove, "_test_missing_coco")
        self.addCleanup(MetadataCatalog.remove, "_test_missing_coco")
        opts = ["DATASETS.TRAIN", "('_test_missing_coco',)", "DATASETS.TEST", "()"]
        with self.assertRaises(FileNotFoundError) as raised:
            train_net.setup(_args(TENSORMASK_CONFIG, *opts, *self.out))
        message = str(raised.exception)
        self.assertIn("DATASETS.TRAIN: annotations of dataset '_test_missing_coco'", message)
        self.assertIn(json_file, message)
        self.assertIn("DETECTRON2_DATASETS", message)
        # Evaluation alone does not need the training set.
        cfg = train_net.get_project_cfg()
        cfg.merge_from_file(TENSORMASK_CONFIG)
        cfg.merge_from_list(opts)
        check_config(cfg, eval_only=True)
        with self.assertRaises(FileNotFoundError):
            check_config(cfg, eval_only=False)

    def test_missing_weights_file(self):
        weights = os.path.join(self.tmp, "model_final.pth")
        with self.assertRaisesRegex(FileNotFoundError, f"weights file not found: {weights}"):
            train_net.setup(_args(TENSORMASK_CONFIG, "MODEL.WEIGHTS", weights, *self.out))

    def test_eval_only_without_weights(self):
        with self.assertRaisesRegex(ValueError, "--eval-only needs a trained model"):
            train_net.setup(_args(TENSORMASK_CONFIG, *self.out, eval_only=True))

    @unittest.skipIf(torch.cuda.is_available(), "a GPU is present")
    def test_cuda_device_without_gpu(self):
        with self.assertRaisesRegex(RuntimeError, "MODEL.DEVICE cpu"):
            train_net.setup(_args(BLENDMASK_CONFIG, "MODEL.DEVICE", "cuda", *self.out))


class TestCorruptImages(unittest.TestCase):
    """The train and test loaders of ``Trainer`` (the ones training and evaluation use), on a
    dataset of two images, both unreadable (tests/engine/test_unreadable_images.py: some)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="test_corrupt_images_")
        split = TinySplit("_test_corrupt_src", 2, 12, os.path.join(cls.tmp, "datasets"))
        paths = register_in_process(split)
        unregister_in_process(split)
        # Damaged differently, each named with its own reason: a JPEG cut short (PIL: "image
        # file is truncated", no file name) and a file that is no image at all.
        names = sorted(os.listdir(paths.image_root))
        cls.truncated, cls.garbage = (os.path.join(paths.image_root, n) for n in names)
        with open(cls.truncated, "rb") as f:
            head = f.read(3000)
        with open(cls.truncated, "wb") as f:
            f.write(head)
        with open(cls.garbage, "w") as f:
            f.write("not an image")
        cls.name = "_test_corrupt"
        register_coco_instances(cls.name, get_shapes_metadata(), paths.json_file, paths.image_root)

    @classmethod
    def tearDownClass(cls):
        DatasetCatalog.remove(cls.name)
        MetadataCatalog.remove(cls.name)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def _cfg(self, config, *opts):
        return workflow_cfg(config, "DATASETS.TRAIN", f"('{self.name}',)", *opts)

    def assertNamesBothFiles(self, message):
        self.assertIn(f"{self.truncated} (image_id ", message)
        self.assertIn("image file is truncated", message)
        self.assertIn(f"{self.garbage} (image_id ", message)
        self.assertIn("cannot identify image file", message)

    def assertNamesTheTrainingImage(self, message):
        # (Training keeps only the images with annotations: the truncated one.)
        self.assertIn(f"{self.truncated} (image_id 1): OSError: image file is truncated", message)

    def test_train_loader_tensormask(self):
        # Unreadable images are skipped and replaced; when nothing can be read, training stops
        # with the files and their errors.
        loader = train_net.Trainer.build_train_loader(self._cfg(TENSORMASK_CONFIG))
        with self.assertRaises(BadImagesError) as raised:
            next(iter(loader))
        self.assertIn("none of 20 images drawn in a row", str(raised.exception))
        self.assertNamesTheTrainingImage(str(raised.exception))

    def test_train_loader_blendmask_in_a_worker_process(self):
        # The error crosses the DataLoader's process boundary as text: the names must survive.
        loader = train_net.Trainer.build_train_loader(
            self._cfg(BLENDMASK_CONFIG, "DATALOADER.NUM_WORKERS", "1")
        )
        with self.assertRaises(BadImagesError) as raised:
            next(iter(loader))
        self.assertNamesTheTrainingImage(str(raised.exception))

    def test_test_loader_leaves_them_out_and_lists_them(self):
        loader = train_net.Trainer.build_test_loader(self._cfg(TENSORMASK_CONFIG), self.name)
        with self.assertLogs("tensormask_proj.engine.unreadable_test_images", "WARNING") as logs:
            self.assertEqual(list(loader), [])
        self.assertEqual(len(logs.output), 3)  # one per image, then the summary
        self.assertIn("left out 2 unreadable images", logs.output[-1])
        self.assertNamesBothFiles("\n".join(logs.output))


class TestNonFiniteLossStopsTraining(unittest.TestCase):
    """
    BlendMask, 6 iterations with a checkpoint every 2 (after iterations 1, 3, 5); the loss is
    made NaN at iteration 4. Training must stop there, naming model_0000003.pth, which stays
    the last checkpoint, loads, and resumes training at iteration 4 up to the end.
    """

    NAN_AT = 4
    MAX_ITER = 6

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="test_nan_loss_")
        cls.split = TinySplit("_test_nan_train4", 4, 11, os.path.join(cls.tmp, "datasets"))
        register_in_process(cls.split)
        cls.out = os.path.join(cls.tmp, "out")
        opts = {
            "DATASETS.TRAIN": f"('{cls.split.name}',)",
            "DATASETS.TEST": "()",
            "SOLVER.MAX_ITER": cls.MAX_ITER,
            "SOLVER.CHECKPOINT_PERIOD": 2,
            "OUTPUT_DIR": cls.out,
        }
        cfg = workflow_cfg(BLENDMASK_CONFIG, *cfg_opts(opts))
        cfg.freeze()
        cls.cfg = cfg
        os.makedirs(cls.out)

    @classmethod
    def tearDownClass(cls):
        unregister_in_process(cls.split)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def _nan_at(self, trainer, iteration):
        model = trainer._trainer.model
        forward = model.forward

        def forward_with_nan(batched_inputs):
            losses = forward(batched_inputs)
            if trainer.iter == iteration:
                losses = {k: v * float("nan") for k, v in losses.items()}
            return losses

        model.forward = forward_with_nan

    def test_amp_on_cpu_trainer_follows_native_bfloat16(self):
        """SOLVER.AMP on a CPU: bfloat16 autocast steps where the CPU has native bfloat16, the
        plain float32 SimpleTrainer elsewhere (never detectron2's CUDA-only AMPTrainer)."""
        from detectron2.engine import AMPTrainer, SimpleTrainer

        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.SOLVER.AMP.ENABLED = True
        for native, expected in ((True, CPUAutocastTrainer), (False, SimpleTrainer)):
            with mock.patch.object(cpu_autocast_module, "has_native_bfloat16", return_value=native):
                trainer = train_net.Trainer(cfg)
            self.assertIs(type(trainer._trainer), expected)
            self.assertNotIsInstance(trainer._trainer, AMPTrainer)
            self.assertTrue(trainer.cfg.SOLVER.AMP.ENABLED)  # the saved config is the user's

    def test_stops_keeps_last_checkpoint_and_resumes(self):
        torch.manual_seed(0)
        trainer = train_net.Trainer(self.cfg)
        trainer.resume_or_load(resume=False)
        self._nan_at(trainer, self.NAN_AT)
        good = os.path.join(self.out, "model_0000003.pth")
        with self.assertRaises(FloatingPointError) as raised:
            trainer.train()
        message = str(raised.exception)
        self.assertIn(f"iteration={self.NAN_AT}", message)
        self.assertIn("Training stopped: the loss is not finite", message)
        self.assertIn(good, message)
        self.assertTrue(trainer.checkpointer.frozen)
        # As any error that stops training: a note naming the checkpoint and the command.
        (note,) = raised.exception.__notes__
        self.assertIn(f"The last finished iteration, 3, is saved in {good}", note)
        self.assertIn("Resume with: ", note)

        # Nothing was written after the NaN: the last checkpoint is the iteration-3 one.
        self.assertEqual(last_checkpoint(self.out), good)
        self.assertFalse(os.path.exists(os.path.join(self.out, "model_final.pth")))
        self.assertEqual(glob.glob(os.path.join(self.out, ".*.tmp")), [])
        saved = load_checkpoint(good)
        self.assertEqual(saved["iteration"], 3)
        for name, value in saved["model"].items():
            self.assertTrue(torch.isfinite(value).all(), name)

        # A new trainer (as after a restart with --resume) continues from it, with the
        # weights and the SGD momentum of iteration 3, and finishes the schedule.
        resumed = train_net.Trainer(self.cfg)
        resumed.resume_or_load(resume=True)
        self.assertEqual(resumed.start_iter, 4)
        for name, value in resumed.model.state_dict().items():
            torch.testing.assert_close(value, saved["model"][name], rtol=0, atol=0)
        saved_momentum = saved["trainer"]["_trainer"]["optimizer"]["state"]
        restored_momentum = resumed.optimizer.state_dict()["state"]
        self.assertEqual(sorted(restored_momentum), sorted(saved_momentum))
        for key, state in saved_momentum.items():
            torch.testing.assert_close(
                restored_momentum[key]["momentum_buffer"], state["momentum_buffer"]
            )
        resumed.train()
        final = load_checkpoint(os.path.join(self.out, "model_final.pth"))
        self.assertEqual(final["iteration"], self.MAX_ITER - 1)


class TestLaunchWiring(unittest.TestCase):
    """The command line's process and machine numbers, and the device of the config, reach
    ``tensormask_proj.engine.launch`` with train_net's ``main`` (the launcher itself runs in
    tests/engine/test_distributed.py)."""

    def test_command_line_reaches_launch(self):
        argv = [TRAIN_NET, "--config-file", TENSORMASK_CONFIG, "--num-gpus", "8"]
        argv += ["--num-machines", "2", "--machine-rank", "1", "--dist-url", "tcp://10.0.0.1:23456"]
        argv += ["SOLVER.IMS_PER_BATCH", "64"]
        with (
            mock.patch("tensormask_proj.engine.launch") as launch,
            mock.patch.object(sys, "argv", argv),
        ):
            module_globals = runpy.run_path(TRAIN_NET, run_name="__main__")
        launch.assert_called_once()
        (main, num_gpus), kwargs = launch.call_args
        self.assertIs(main, module_globals["main"])
        self.assertEqual(num_gpus, 8)
        self.assertEqual(kwargs["num_machines"], 2)
        self.assertEqual(kwargs["machine_rank"], 1)
        self.assertEqual(kwargs["dist_url"], "tcp://10.0.0.1:23456")
        self.assertEqual(kwargs["device"], "cpu")  # the quick config's MODEL.DEVICE: gloo
        (args,) = kwargs["args"]
        self.assertEqual(args.config_file, TENSORMASK_CONFIG)
        self.assertEqual(args.opts, ["SOLVER.IMS_PER_BATCH", "64"])

    def test_sync_batchnorm_on_cpu_processes_is_refused(self):
        cfg = train_net.get_project_cfg()
        cfg.merge_from_file(os.path.join(CONFIG_DIR, "BlendMask", "RT_R_50_4x_syncbn_shtw.yaml"))
        cfg.MODEL.DEVICE = "cpu"
        model = train_net.Trainer.build_model(cfg)
        with self.assertRaisesRegex(
            ValueError,
            r"SyncBatchNorm layers \(backbone.*'SyncBN'.*"
            "several processes on the CPU.*'naiveSyncBN'",
        ):
            check_sync_batchnorm(model, "cpu")
        check_sync_batchnorm(model, "cuda")


if __name__ == "__main__":
    unittest.main()
