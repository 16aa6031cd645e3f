"""
Shared helpers of the workflow tests (train_net.py, demo.py): tiny shapes splits, running
``train_net.py`` in a fresh process with those splits registered, and reading its outputs.

The tiny splits come from the embedded dataset's own generator (``register_shapes``: same
scenes, classes, metadata and COCO json as ``shapes_train``/``shapes_val``), with a few images
each so that a whole train + evaluate cycle takes seconds.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, NamedTuple

from project_testing import CONFIG_DIR, REPO_ROOT

TRAIN_NET = os.path.join(REPO_ROOT, "train_net.py")
DEMO = os.path.join(REPO_ROOT, "demo.py")
# The quick shapes configs of the two models (what a user trains on the embedded dataset).
TENSORMASK_CONFIG = os.path.join(
    CONFIG_DIR, "quick_schedules", "tensormask_R_18_GN_FPN_shapes.yaml"
)
# (bfloat16 CPU autocast: the BlendMask runs also test train_net.py's SOLVER.AMP on a CPU.)
BLENDMASK_CONFIG = os.path.join(CONFIG_DIR, "quick_schedules", "blendmask_R_18_GN_FPN_shapes.yaml")

# Everything the workflow tests rely on, given explicitly on top of those configs so that the
# tests do not change meaning when the configs are tuned: small images and batches (seconds
# per run), a warmup longer than any test run (every iteration has its own lr), and a score
# threshold of 0 (a model trained for a few iterations scores everything near the prior, 0.01:
# evaluation and pictures still get detections to work on), at most 20 per image.
_COMMON_OPTS = {
    "INPUT.MIN_SIZE_TRAIN": "(160,)",
    "INPUT.MAX_SIZE_TRAIN": 200,
    "INPUT.MIN_SIZE_TEST": 160,
    "INPUT.MAX_SIZE_TEST": 200,
    "DATALOADER.NUM_WORKERS": 0,
    "SOLVER.IMS_PER_BATCH": 2,
    "SOLVER.BASE_LR": 0.005,
    "SOLVER.WARMUP_ITERS": 10,
    "SOLVER.STEPS": "()",
    "TEST.EVAL_PERIOD": 0,
    "TEST.DETECTIONS_PER_IMAGE": 20,
}
_MODEL_OPTS = {
    TENSORMASK_CONFIG: {"MODEL.TENSOR_MASK.SCORE_THRESH_TEST": 0.0},
    BLENDMASK_CONFIG: {"MODEL.FCOS.INFERENCE_TH_TEST": 0.0, "MODEL.FCOS.POST_NMS_TOPK_TEST": 20},
}


class TinySplit(NamedTuple):
    """A shapes split registered as ``name`` with ``num_images`` images of ``seed`` under
    ``root``."""

    name: str
    num_images: int
    seed: int
    root: str


def tiny_splits(root: str) -> Dict[str, TinySplit]:
    # Seeds chosen so that every image is landscape (one aspect-ratio group: batches form
    # at once) and holds at least one instance (none is filtered out of training).
    return {
        "train": TinySplit("_wf_shapes_train8", 8, 11, root),
        "val": TinySplit("_wf_shapes_val3", 3, 12, root),
    }


def register_in_process(split: TinySplit):
    """Register (and generate) ``split`` in this process; returns its ShapesPaths."""
    from detectron2.data import DatasetCatalog

    from tensormask_proj.data.datasets import ShapesSplit, prepare_dataset, register_shapes

    if split.name not in DatasetCatalog.list():
        shapes_split = ShapesSplit(split.name, split.num_images, split.seed)
        register_shapes(split.name, shapes_split, split.root)
    return prepare_dataset(split.name, progress=False)


def unregister_in_process(split: TinySplit) -> None:
    from detectron2.data import DatasetCatalog

    from tensormask_proj.data.datasets import unregister_shapes

    if split.name in DatasetCatalog.list():
        unregister_shapes(split.name)


def cfg_opts(pairs: Dict) -> List[str]:
    """{"SOLVER.MAX_ITER": 3, ...} -> ["SOLVER.MAX_ITER", "3", ...] (command-line overrides)."""
    return [str(item) for pair in pairs.items() for item in pair]


def workflow_opts(config: str) -> List[str]:
    """Command-line overrides of the workflow tests for ``config`` (see _COMMON_OPTS)."""
    return cfg_opts({**_COMMON_OPTS, **_MODEL_OPTS[config]})


def workflow_cfg(config: str, *opts: str):
    """The (unfrozen) cfg of ``config`` with the workflow overrides, then ``opts``."""
    from tensormask_proj import get_project_cfg

    cfg = get_project_cfg()
    cfg.merge_from_file(config)
    cfg.merge_from_list(workflow_opts(config) + list(opts))
    return cfg


def tiny_training_cfg(
    split: TinySplit, output_dir: str, max_iter: int, checkpoint_period: int, *opts: str
):
    """A frozen TensorMask quick-config cfg that trains ``max_iter`` iterations at `SEED 0` on
    ``split`` with 64 px images and no evaluation, for tests of the training loop itself."""
    small = {
        "DATASETS.TRAIN": f"('{split.name}',)",
        "DATASETS.TEST": "()",
        "INPUT.MIN_SIZE_TRAIN": "(64,)",
        "INPUT.MAX_SIZE_TRAIN": 96,
        "SOLVER.MAX_ITER": max_iter,
        "SOLVER.CHECKPOINT_PERIOD": checkpoint_period,
        "SEED": 0,
        "OUTPUT_DIR": output_dir,
    }
    cfg = workflow_cfg(TENSORMASK_CONFIG, *cfg_opts(small), *opts)
    cfg.freeze()
    return cfg


def subprocess_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",  # the machine's 2 cores are shared with other tests
        MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        PYTHONWARNINGS="ignore::FutureWarning",
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    return env


def train_net_command(args: List[str], splits: List[TinySplit]) -> List[str]:
    """
    The command running train_net.py's ``__main__`` (argument parsing, ``launch``, main) with
    ``args``, in a process that first registers ``splits``, as a user's own dataset would be.
    """
    code = "\n".join(
        [
            "import runpy, sys",
            "from tensormask_proj.data.datasets import ShapesSplit, register_shapes",
            f"for name, n, seed, root in {[tuple(s) for s in splits]!r}:",
            "    register_shapes(name, ShapesSplit(name, n, seed), root)",
            f"sys.argv = [{TRAIN_NET!r}] + sys.argv[1:]",
            f"runpy.run_path({TRAIN_NET!r}, run_name='__main__')",
        ]
    )
    return [sys.executable, "-c", code] + list(args)


def run_command(command: List[str], timeout: float = 300):
    """Run ``command`` in the repository root with :func:`subprocess_env`, to completion;
    returns the CompletedProcess (stdout and stderr merged, as text)."""
    return subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def run_train_net(args: List[str], splits: List[TinySplit], timeout: float = 300):
    """Run train_net.py to completion; returns the CompletedProcess (stdout+stderr merged)."""
    return run_command(train_net_command(args, splits), timeout)


def create_tiny_splits(prefix: str):
    """A new temporary folder and the :func:`tiny_splits` under it, generated and registered
    in this process (before any subprocess reads them); undo with :func:`remove_tiny_splits`."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    splits = tiny_splits(os.path.join(tmp, "datasets"))
    for split in splits.values():
        register_in_process(split)
    return tmp, splits


def remove_tiny_splits(tmp: str, splits: Dict[str, TinySplit]) -> None:
    for split in splits.values():
        unregister_in_process(split)
    shutil.rmtree(tmp, ignore_errors=True)


def load_script(path: str, module_name: str):
    """Import a script of the repository root (train_net.py, demo.py) as a module."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def read_metrics(output_dir: str) -> List[Dict]:
    """The records of OUTPUT_DIR/metrics.json, in order."""
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def training_records(records: List[Dict]) -> List[Dict]:
    return [r for r in records if "total_loss" in r]


def evaluation_records(records: List[Dict]) -> List[Dict]:
    return [r for r in records if "segm/AP" in r]


def load_checkpoint(path: str) -> Dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def last_checkpoint(output_dir: str) -> str:
    with open(os.path.join(output_dir, "last_checkpoint")) as f:
        return os.path.join(output_dir, f.read().strip())


def load_predictions(output_dir: str) -> List[Dict]:
    """COCOEvaluator's instance predictions written to OUTPUT_DIR/inference."""
    path = os.path.join(output_dir, "inference", "coco_instances_results.json")
    with open(path) as f:
        return json.load(f)


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])
