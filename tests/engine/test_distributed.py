"""
Several training processes on the CPU (gloo), for both quick configs, on a tiny shapes split
(64 px images, SEED 0, total batch 4, 3 iterations, float32):

* through ``tensormask_proj.engine.launch`` in 2 processes: after every step both ranks hold
  bitwise equal weights, and the losses (rank 0's, the mean over the ranks) agree with those of
  1 process with the same total batch and seed (see ``LOSS_TOLERANCE``);
* through ``train_net.py --num-gpus 2`` (TensorMask) and ``torchrun --nproc-per-node 2
  train_net.py`` (BlendMask), with a final evaluation: it runs once, on rank 0's results
  gathered with rank 1's (its predictions cover every evaluation image, of which each rank
  read a part);
* two "machines" of 2 processes on this host, through the machine flags: the global and local
  ranks and sizes detectron2's comm reports, and collectives over all;
* the launcher's refusals: torchrun with --num-gpus, CUDA processes without GPUs,
  ``--dist-url auto`` across machines.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

import torch

from tensormask_proj.engine import launch

from .distributed_worker import train_and_record
from .workflow_helpers import (
    BLENDMASK_CONFIG,
    REPO_ROOT,
    TENSORMASK_CONFIG,
    TRAIN_NET,
    TinySplit,
    cfg_opts,
    create_tiny_splits,
    evaluation_records,
    load_predictions,
    read_metrics,
    register_in_process,
    remove_tiny_splits,
    run_command,
    subprocess_env,
    tail,
    workflow_cfg,
    workflow_opts,
)

MAX_ITER = 3
# |loss of 2 processes - loss of 1 process| / loss of 1 process, at every iteration. The
# processes see the same images with the same augmentations and start from the same weights, so
# the first iteration's losses agree (to 1e-7 for TensorMask and 1e-4 for BlendMask, whose mask
# and basis losses are means over each process's instances). The gradients then differ a
# little: TensorMask divides each process's sums by its own number of positive windows (as the
# official code: no average over the processes), so the mean of the processes' gradients is not
# the gradient of their union. Measured with these settings: at most 1.2e-2 (TensorMask) and
# 3e-4 (BlendMask).
LOSS_TOLERANCE = {TENSORMASK_CONFIG: 0.03, BLENDMASK_CONFIG: 2e-3}

_TMP = None
_SPLITS = None


def setUpModule():
    global _TMP, _SPLITS
    _TMP, _SPLITS = create_tiny_splits("test_distributed_")


def tearDownModule():
    remove_tiny_splits(_TMP, _SPLITS)


def _tiny_cfg(config: str, output_dir: str):
    opts = {
        "DATASETS.TRAIN": f"('{_SPLITS['train'].name}',)",
        "DATASETS.TEST": "()",
        "INPUT.MIN_SIZE_TRAIN": "(64,)",
        "INPUT.MAX_SIZE_TRAIN": 96,
        "SOLVER.IMS_PER_BATCH": 4,
        "SOLVER.MAX_ITER": MAX_ITER,
        "SOLVER.CHECKPOINT_PERIOD": 1000,
        "SOLVER.AMP.ENABLED": False,  # the same arithmetic on every CPU
        "SEED": 0,
        "OUTPUT_DIR": output_dir,
    }
    cfg = workflow_cfg(config, *cfg_opts(opts))
    cfg.freeze()
    return cfg


def _run(config: str, processes: int, name: str):
    """Train in ``processes`` processes; returns the records of every rank."""
    out = os.path.join(_TMP, name)
    os.makedirs(out)
    cfg = _tiny_cfg(config, out)
    splits = [_SPLITS["train"]]
    with mock.patch.dict(os.environ, {"OMP_NUM_THREADS": "1"}):
        launch(train_and_record, processes, dist_url="auto", args=(cfg, splits, out), device="cpu")
    records = []
    for rank in range(processes):
        with open(os.path.join(out, f"rank{rank}.json")) as f:
            records.append(json.load(f))
    return records


class _TwoProcessesMixin:
    CONFIG = None

    @classmethod
    def setUpClass(cls):
        name = os.path.basename(cls.CONFIG)[:-5]
        cls.two = _run(cls.CONFIG, 2, f"{name}_2")
        cls.one = _run(cls.CONFIG, 1, f"{name}_1")

    def test_ranks_hold_equal_weights_after_every_step(self):
        rank0, rank1 = self.two
        self.assertEqual((rank0["world_size"], rank1["world_size"]), (2, 2))
        self.assertEqual(sorted(rank0["digests"]), [str(i) for i in range(MAX_ITER)])
        self.assertEqual(rank0["digests"], rank1["digests"])
        # (The weights change at every step: equal digests are not those of untouched models.)
        self.assertEqual(len(set(rank0["digests"].values())), MAX_ITER)

    def test_losses_match_one_process_with_the_same_total_batch(self):
        one, two = self.one[0]["losses"], self.two[0]["losses"]
        self.assertEqual(self.one[0]["world_size"], 1)
        self.assertEqual(sorted(one), sorted(two))
        self.assertEqual(len(one), MAX_ITER)
        for iteration in one:
            difference = abs(two[iteration] - one[iteration]) / one[iteration]
            print(
                f"{os.path.basename(self.CONFIG)} iteration {iteration}: 1 process "
                f"{one[iteration]:.6f}, 2 processes {two[iteration]:.6f} ({difference:.2e})"
            )
            self.assertLess(difference, LOSS_TOLERANCE[self.CONFIG], f"iteration {iteration}")


class TestTensorMaskTwoProcesses(_TwoProcessesMixin, unittest.TestCase):
    CONFIG = TENSORMASK_CONFIG


class TestBlendMaskTwoProcesses(_TwoProcessesMixin, unittest.TestCase):
    CONFIG = BLENDMASK_CONFIG


def _dataset_args(split: TinySplit):
    paths = register_in_process(split)
    return ["--dataset", split.name, paths.json_file, paths.image_root]


def _command_line_run(launcher, config: str, name: str):
    """train_net.py in 2 CPU processes, started by ``launcher`` (the command up to the script's
    arguments), training MAX_ITER iterations and evaluating on the tiny validation split."""
    out = os.path.join(_TMP, name)
    train, val = _SPLITS["train"], _SPLITS["val"]
    opts = {
        "DATASETS.TRAIN": f"('{train.name}',)",
        "DATASETS.TEST": f"('{val.name}',)",
        "SOLVER.IMS_PER_BATCH": 4,
        "SOLVER.MAX_ITER": MAX_ITER,
        "SEED": 0,
        "MODEL.DEVICE": "cpu",
        "OUTPUT_DIR": out,
    }
    # (The datasets are registered in every process by --dataset, as a user's own would be.)
    args = ["--config-file", config] + _dataset_args(train) + _dataset_args(val)
    args += workflow_opts(config) + cfg_opts(opts)
    return out, run_command(launcher + args, timeout=600)


class _CommandLineMixin:
    def _check_trained_and_evaluated_once(self, out, run, val: TinySplit):
        self.assertEqual(run.returncode, 0, tail(run.stdout))
        self.assertIn("Starting training from iteration 0", run.stdout)
        self.assertTrue(os.path.isfile(os.path.join(out, "model_final.pth")))
        # One evaluation, on rank 0: one COCO table, one record in metrics.json.
        self.assertEqual(run.stdout.count("Evaluation results for segm"), 1)
        self.assertEqual(len(evaluation_records(read_metrics(out))), 1)
        # Each rank read part of the 3 evaluation images; the predictions cover all of them.
        with open(register_in_process(val).json_file) as f:
            image_ids = {image["id"] for image in json.load(f)["images"]}
        self.assertEqual(len(image_ids), 3)
        self.assertEqual({p["image_id"] for p in load_predictions(out)}, image_ids)


class TestTrainNetNumGpus(_CommandLineMixin, unittest.TestCase):
    def test_tensormask_trains_in_two_cpu_processes(self):
        launcher = [sys.executable, TRAIN_NET, "--num-gpus", "2"]
        out, run = _command_line_run(launcher, TENSORMASK_CONFIG, "num_gpus")
        self._check_trained_and_evaluated_once(out, run, _SPLITS["val"])


class TestTorchrun(_CommandLineMixin, unittest.TestCase):
    def test_blendmask_trains_in_two_torchrun_processes(self):
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
        out, run = _command_line_run(launcher + [TRAIN_NET], BLENDMASK_CONFIG, "torchrun")
        self._check_trained_and_evaluated_once(out, run, _SPLITS["val"])


def _ranks_command(result_dir: str, launch_args: str) -> list:
    """A process that calls launch(record_ranks, ...) with ``launch_args`` (Python keywords)."""
    code = (
        "from tensormask_proj.engine import launch\n"
        "from engine.distributed_worker import record_ranks\n"
        f"launch(record_ranks, args=({result_dir!r},), device='cpu', {launch_args})\n"
    )
    return [sys.executable, "-c", code]


class TestMachines(unittest.TestCase):
    """Two "machines" of 2 processes each, on this host, through the machine flags (two
    launches): the global and local ranks and sizes that detectron2's comm reports, and
    collectives over all 4 processes."""

    def _check(self, result_dir):
        ranks = []
        for rank in range(4):
            with open(os.path.join(result_dir, f"ranks{rank}.json")) as f:
                ranks.append(json.load(f))
        for rank, r in enumerate(ranks):
            self.assertEqual(r["rank"], rank)
            self.assertEqual((r["world_size"], r["local_size"]), (4, 2))
            self.assertEqual(r["local_rank"], rank % 2)
            self.assertEqual(r["backend"], "gloo")
            self.assertEqual(r["sum"], 1 + 2 + 3 + 4)
            self.assertEqual(r["gathered"], [0, 1, 2, 3])

    def _run_all(self, commands, envs):
        procs = [
            subprocess.Popen(c, cwd=REPO_ROOT, env=e, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
            for c, e in zip(commands, envs)
        ]  # fmt: skip
        for proc in procs:
            out, _ = proc.communicate(timeout=300)
            self.assertEqual(proc.returncode, 0, tail(out))

    def test_two_machines_through_the_flags(self):
        out = tempfile.mkdtemp(dir=_TMP)
        url = f"tcp://127.0.0.1:{_free_port()}"
        commands = [
            _ranks_command(out, f"num_processes_per_machine=2, num_machines=2, "
                                f"machine_rank={machine}, dist_url={url!r}")
            for machine in (0, 1)
        ]  # fmt: skip
        self._run_all(commands, [_env()] * 2)
        self._check(out)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env():
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(REPO_ROOT, "tests"), env["PYTHONPATH"]])
    return env


def _never_called():
    raise AssertionError("main_func ran")


class TestLaunchRefusals(unittest.TestCase):
    def test_torchrun_with_num_gpus(self):
        env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}
        with mock.patch.dict(os.environ, env):
            with self.assertRaisesRegex(ValueError, "torchrun.*--num-gpus.*--nproc-per-node"):
                launch(_never_called, 2, device="cpu")

    def test_cuda_processes_need_gpus(self):
        with (
            mock.patch.object(torch.cuda, "device_count", return_value=1),
            mock.patch.object(torch.cuda, "is_available", return_value=True),
        ):
            with self.assertRaisesRegex(RuntimeError, "2 processes .* need 2 GPUs; .* has 1"):
                launch(_never_called, 2, dist_url="auto", device="cuda")

    def test_auto_dist_url_on_several_machines(self):
        with self.assertRaisesRegex(ValueError, "--dist-url auto .* address of machine 0"):
            launch(_never_called, 1, num_machines=2, dist_url="auto", device="cpu")

    def test_one_process_runs_in_place(self):
        ran = []
        launch(ran.append, 1, args=("here",), device="cpu")
        self.assertEqual(ran, ["here"])
