#!/usr/bin/env python
"""
Side-by-side learning benchmark: TensorMask, BlendMask and detectron2's Mask R-CNN trained from
scratch on the same registered datasets with the same schedule, each evaluated with
COCOEvaluator, in one table with the ratios to Mask R-CNN. It prints figures; it is not a test.

Each model is trained by this repository's ``train_net.py`` (the product's own path: its
trainer, data loaders, CPU autocast and evaluator) in a subprocess of its own, one after the
other (never two at a time: they would share the cores and the timings would mean nothing).
The results are read back from each run's ``metrics.json``.

    python benchmarks/learning.py                          # the main job's schedule
    python benchmarks/learning.py --iters 1200 --models tensormask mask_rcnn
    python benchmarks/learning.py --train-dataset shapes_stress_train \\
        --test-dataset shapes_stress_val
    python benchmarks/learning.py --dataset mine_train train.json images/ \\
        --dataset mine_val val.json images/ --train-dataset mine_train --test-dataset mine_val
    python benchmarks/learning.py --equal-time 300         # each model trains for ~300 s
    python benchmarks/learning.py --models blendmask --baseline-run output/learning/mask_rcnn
    python benchmarks/learning.py --models mask_rcnn --reuse-run blendmask output/learning/blendmask
    python benchmarks/learning.py --seeds 0 1 2             # each model once per seed, and means
    python benchmarks/learning.py --fit-sizes --train-dataset shapes_small_train \
        --test-dataset shapes_small_val                     # sizes per level fitted to the data

Your own COCO data: each ``--dataset NAME JSON IMAGE_DIR`` is checked here, before anything is
trained, and registered in every run (``train_net.py --dataset``); ``--train-dataset`` and
``--test-dataset`` choose among them and the registered datasets (every ``--dataset`` must be
chosen by one of them). Each model's class count (``MODEL.TENSOR_MASK.NUM_CLASSES``,
``MODEL.FCOS.NUM_CLASSES`` ..., the keys ``train_net.py`` checks) is set to the datasets'.

Equal schedule (the default) compares what each model learns from the same images; equal time
(``--equal-time SECONDS``) compares what each learns in the same CPU minutes: the iteration
count of every model is set from its own seconds per iteration, measured first by a short
timing run, and its LR steps are scaled with it.

One run per model can mislead: from scratch on these few epochs, a model's mask AP moves by
several points with ``SEED`` (BlendMask's quick config: 52.0 to 62.5 over SEED 0-3, docs/tuning.md).
``--seeds`` trains every model at each seed, gives each run's ratio to Mask R-CNN's run of the
same seed, and adds one row per model with the means over the seeds, the ratio of the means and
the spread (highest minus lowest mask AP).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, REPO_ROOT)

# First: importing tensormask_proj silences the FutureWarning that importing detectron2 prints.
from tensormask_proj.engine import (  # noqa: E402
    ConfigKeyEndsList,
    add_dataset_argument,
    architecture_of,
    setup_cfg,
)

# The config of each model: the quick configs and the Mask R-CNN baseline with the same
# backbone (ResNet-18-GN-FPN), image size, batch, learning rate and schedule.
MODEL_CONFIGS = {
    "mask_rcnn": "configs/Baselines/mask_rcnn_R_18_GN_FPN_shapes.yaml",
    "tensormask": "configs/quick_schedules/tensormask_R_18_GN_FPN_shapes.yaml",
    "blendmask": "configs/quick_schedules/blendmask_R_18_GN_FPN_shapes.yaml",
}
# Unless told otherwise every model gets the schedule of the main job (the TensorMask quick
# config's SOLVER.MAX_ITER) and its batch.
DEFAULT_BATCH = 4
TIMING_ITERS = 30
METRICS = ("AP", "AP50", "APs", "APm", "APl")


def load_config(config_file: str, opts: List[str]):
    """The (unfrozen) config that train_net.py builds from ``config_file`` (relative to the
    repository) and ``opts``."""
    return setup_cfg(os.path.join(REPO_ROOT, config_file), opts, freeze=False)


def schedule_opts(config_file: str, iters: int, batch: int) -> List[str]:
    """Opts that give ``config_file`` ``iters`` iterations of ``batch`` images, with its LR steps
    at the same fractions of the schedule as in the config, its own warm-up (at most half the
    schedule) and the LR scaled linearly with the batch, as in detectron2's reference
    schedules."""
    cfg = load_config(config_file, [])
    solver = cfg.SOLVER
    scale = iters / solver.MAX_ITER
    steps = tuple(max(1, min(iters - 1, round(s * scale))) for s in solver.STEPS)
    warmup = max(1, min(solver.WARMUP_ITERS, iters // 2))
    lr = solver.BASE_LR * batch / solver.IMS_PER_BATCH
    return [
        "SOLVER.MAX_ITER", str(iters),
        "SOLVER.STEPS", str(steps),
        "SOLVER.WARMUP_ITERS", str(warmup),
        "SOLVER.IMS_PER_BATCH", str(batch),
        "SOLVER.BASE_LR", repr(lr),
    ]  # fmt: skip


def read_metrics(output_dir: str) -> Dict:
    """The final COCO results and the median seconds per iteration of a train_net.py run."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        raise RuntimeError(f"no {path}: the run failed (see {output_dir}/log.txt)")
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    times = sorted(r["time"] for r in rows if "time" in r)
    final = {}
    for r in rows:
        final.update({k: v for k, v in r.items() if k.startswith(("segm/", "bbox/"))})
    return {"s_per_iter": times[len(times) // 2] if times else float("nan"), "results": final}


def train_net_command(
    config_file: str, opts: List[str], output_dir: str, datasets: Sequence = ()
) -> List[str]:
    """The train_net.py command line of one run; ``datasets``: the DatasetSpecs to register."""
    dataset_args = [word for spec in datasets for word in ("--dataset", *spec)]
    return [
        sys.executable, os.path.join(REPO_ROOT, "train_net.py"),
        "--config-file", os.path.join(REPO_ROOT, config_file),
        *dataset_args, *opts, "OUTPUT_DIR", output_dir,
    ]  # fmt: skip


def run_train_net(
    config_file: str,
    opts: List[str],
    output_dir: str,
    log_file: str,
    threads: Optional[int],
    datasets: Sequence = (),
) -> float:
    """Run train_net.py; returns its wall time (s). Raises with the log's tail if it fails."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = train_net_command(config_file, opts, output_dir, datasets)
    start = time.perf_counter()
    with open(log_file, "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        with open(log_file) as f:
            tail = "".join(f.readlines()[-30:])
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); log {log_file}:\n{tail}")
    return wall


def measure_seconds_per_iteration(model: str, common: List[str], out: str, args) -> float:
    """Seconds per iteration of ``model`` from a short run into ``out`` (no evaluation)."""
    opts = common + args.class_opts[model]
    opts += schedule_opts(MODEL_CONFIGS[model], TIMING_ITERS, args.batch)
    opts += ["DATASETS.TEST", "()"]
    run_train_net(MODEL_CONFIGS[model], opts, out, out + ".log", args.threads, args.datasets)
    return read_metrics(out)["s_per_iter"]


def config_differences(expected, found, prefix: str = "") -> List[str]:
    """
    Keys (dotted) whose values differ between the config expected and a run's saved one,
    OUTPUT_DIR aside. Keys that the run's config lacks are not differences: the run predates
    them (this project added them since), so it ran as their defaults do.
    """
    diffs = []
    for key in sorted(set(expected) | set(found)):
        name = prefix + key
        if name == "OUTPUT_DIR" or key not in found:
            continue
        a, b = expected.get(key, "<missing>"), found[key]
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_differences(a, b, name + ".")
        elif a != b:
            diffs.append(f"{name}: expected {a!r}, the run has {b!r}")
    return diffs


def reuse_run(run_dir: str, config_file: str, opts: List[str]) -> Dict:
    """
    The results of a finished ``train_net.py`` run (e.g. the ``mask_rcnn`` folder of an earlier
    ``learning.py --output``), after checking that its saved config.yaml is the config this
    invocation would train, so that a stale or differently seeded run cannot stand in for it.
    """
    saved = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(saved):
        raise RuntimeError(f"reused run {run_dir}: no config.yaml (not a train_net.py run)")
    import yaml

    expected = yaml.safe_load(load_config(config_file, opts).dump())
    with open(saved) as f:
        found = yaml.safe_load(f)
    architecture = found.get("MODEL", {}).get("META_ARCHITECTURE")
    if architecture != expected["MODEL"]["META_ARCHITECTURE"]:
        raise RuntimeError(
            f"reused run {run_dir} is a {architecture} run, not "
            f"{expected['MODEL']['META_ARCHITECTURE']} ({config_file})"
        )
    diffs = config_differences(expected, found)
    if diffs:
        raise RuntimeError(
            f"reused run {run_dir} was not trained with the config of this comparison "
            f"({config_file} and the opts given): " + "; ".join(diffs[:5])
        )
    return read_metrics(run_dir)


def mean_rows(rows: List[Dict]) -> List[Dict]:
    """
    One row per model with several runs (seeds): the mean of each COCO metric, seconds per
    iteration and wall time over its runs, ``seed`` "mean" and ``spread``, its highest minus
    lowest mask AP.
    """
    by_model: Dict[str, List[Dict]] = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r)
    means = []
    for model, runs in by_model.items():
        if len(runs) < 2:
            continue
        keys = set().union(*(r["results"] for r in runs))
        results = {k: _mean([r["results"].get(k, float("nan")) for r in runs]) for k in keys}
        mask_aps = [r["results"].get("segm/AP", float("nan")) for r in runs]
        means.append({
            "model": model, "seed": "mean", "iters": runs[0]["iters"], "results": results,
            "s_per_iter": _mean([r["s_per_iter"] for r in runs]),
            "wall": _mean([r["wall"] for r in runs]),
            "spread": max(mask_aps) - min(mask_aps),
        })  # fmt: skip
    return means


def _mean(values: List[float]) -> float:
    return sum(values) / len(values)


def format_table(rows: List[Dict], baselines: Dict, gpu: bool) -> str:
    """
    The table of ``rows`` (one per run, with "model", "seed", "iters", "results", "s_per_iter",
    "wall"; mean rows also "spread"); each row's ratios are to ``baselines[row["seed"]]`` (Mask
    R-CNN's row of the same seed, or of the means), nan where there is none.
    """

    # On a GPU an iteration takes milliseconds: 3 significant digits of ms instead of s.
    def speed(seconds):
        return f"{seconds * 1000:#5.3g}" if gpu else f"{seconds:5.2f}"

    head = (
        f"{'model':<11} {'seed':>4} {'iters':>5} | {'mask AP':>7} {'AP50':>5} {'APs':>5} "
        f"{'APm':>5} {'APl':>5} | {'box AP':>6} {'AP50':>5} {'APs':>5} {'APm':>5} {'APl':>5} | "
        f"{'ms/it' if gpu else 's/it':>5} {'wall s':>6} | {'mask x':>6} {'box x':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        res = r["results"]

        def get(task, metric):
            return res.get(f"{task}/{metric}", float("nan"))

        baseline = baselines.get(r["seed"])
        ratio = {}
        for task in ("segm", "bbox"):
            base = baseline["results"].get(f"{task}/AP") if baseline else None
            ratio[task] = get(task, "AP") / base if base else float("nan")
        mask = " ".join(f"{get('segm', m):5.1f}" for m in METRICS[1:])
        box = " ".join(f"{get('bbox', m):5.1f}" for m in METRICS[1:])
        lines.append(
            f"{r['model']:<11} {r['seed']:>4} {r['iters']:>5} | {get('segm', 'AP'):7.1f} {mask} | "
            f"{get('bbox', 'AP'):6.1f} {box} | {speed(r['s_per_iter'])} {r['wall']:6.0f} | "
            f"{ratio['segm']:6.2f} {ratio['bbox']:5.2f}"
            + (f" | {r['spread']:6.1f}" if "spread" in r else "")
        )
    return "\n".join(lines)


def reused_row(model: str, run_dir: str, seed: int, seeded_opts: List[str], args) -> Dict:
    """``model``'s row of ``seed`` from a finished run (checked by :func:`reuse_run`)."""
    config = MODEL_CONFIGS[model]
    opts = seeded_opts + args.class_opts[model] + schedule_opts(config, args.iters, args.batch)
    reused = reuse_run(run_dir, config, opts)
    print(f"{model}, SEED {seed}: reused from {run_dir} (same config)", flush=True)
    # Its wall time was not recorded by this invocation.
    return {"model": model, "seed": seed, "iters": args.iters, "wall": float("nan"), **reused}


def train_model(model: str, seed: int, seeded_opts: List[str], out: str, args) -> Dict:
    """Train and evaluate ``model`` into ``out``; its table row."""
    iters = args.iters
    if args.equal_time:
        s_per_iter = measure_seconds_per_iteration(model, seeded_opts, out + "_timing", args)
        iters = max(10, int(args.equal_time / s_per_iter))
        print(f"{model}: {s_per_iter:.3f} s/it -> {iters} iterations in {args.equal_time} s")
    opts = seeded_opts + args.class_opts[model]
    opts += schedule_opts(MODEL_CONFIGS[model], iters, args.batch)
    print(f"training {model}: {MODEL_CONFIGS[model]} {' '.join(opts)}", flush=True)
    wall = run_train_net(MODEL_CONFIGS[model], opts, out, out + ".log", args.threads, args.datasets)
    print(f"  done in {wall:.0f} s", flush=True)
    return {"model": model, "seed": seed, "iters": iters, "wall": wall, **read_metrics(out)}


def parse_reused_runs(parser: argparse.ArgumentParser, args) -> Dict[str, List[str]]:
    """{model: its finished runs, one per seed} from --reuse-run and --baseline-run; a usage
    error (exit 2) names the option at fault."""
    given = [(f"--reuse-run {runs[0]}", runs[0], runs[1:]) for runs in args.reuse_run]
    if args.baseline_run:
        given.append(("--baseline-run", "mask_rcnn", args.baseline_run))
    reused: Dict[str, List[str]] = {}
    for option, model, runs in given:
        if model not in MODEL_CONFIGS:
            parser.error(f"{option}: unknown model (choose from {', '.join(MODEL_CONFIGS)})")
        if model in reused:
            parser.error(f"{option}: {model}'s runs are given twice")
        if len(runs) != len(args.seeds):
            parser.error(
                f"{option}: {len(runs)} runs for {len(args.seeds)} seeds {args.seeds}; give one "
                f"run per seed, in the same order"
            )
        if args.equal_time:
            parser.error(f"{option} needs an equal schedule (no --equal-time)")
        reused[model] = runs
    return reused


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    # The values of a list-valued option end at the first config key (the opts): see
    # ConfigKeyEndsList.
    parser.add_argument(
        "--models",
        action=ConfigKeyEndsList,
        item_choices=list(MODEL_CONFIGS),
        default=list(MODEL_CONFIGS),
        metavar="MODEL",
        help=f"the models to train: {', '.join(MODEL_CONFIGS)} (default: all)",
    )
    parser.add_argument(
        "--train-dataset",
        action=ConfigKeyEndsList,
        default=None,
        metavar="NAME",
        help="DATASETS.TRAIN of every model: registered datasets or --dataset "
        "NAMEs (default: the configs', shapes_train)",
    )
    parser.add_argument(
        "--test-dataset",
        default=None,
        metavar="NAME",
        help="DATASETS.TEST of every model: a registered dataset or a --dataset "
        "NAME (default: the configs', shapes_val)",
    )
    parser.add_argument(
        "--iters",
        type=int,
        default=None,
        help="iterations of every model (default: the main job's, "
        "SOLVER.MAX_ITER of the TensorMask quick config)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        help=f"images per batch of every model, the LR scaled with it (default: "
        f"{DEFAULT_BATCH})",
    )
    parser.add_argument(
        "--equal-time",
        type=float,
        default=None,
        metavar="SECONDS",
        help="train each model for about SECONDS instead of --iters iterations",
    )
    parser.add_argument(
        "--fit-sizes",
        action="store_true",
        help="TensorMask and BlendMask fit their sizes per level to the training "
        "set (MODEL.FIT_SIZES_TO_DATA True); Mask R-CNN keeps its anchors",
    )
    parser.add_argument("--device", default="cpu", help="MODEL.DEVICE (cpu, cuda)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS of the runs (default: torch's own choice)",
    )
    parser.add_argument(
        "--output",
        default=None,
        metavar="DIR",
        help="folder for the runs, one subfolder per model (default: a new " "temporary folder)",
    )
    parser.add_argument(
        "--seeds",
        action=ConfigKeyEndsList,
        item_type=int,
        default=None,
        metavar="SEED",
        help="train every model once per SEED (default: 0, or the SEED of opts)",
    )
    parser.add_argument(
        "--reuse-run",
        action=ConfigKeyEndsList,
        append=True,
        default=[],
        metavar=("MODEL", "DIR"),
        help="take MODEL's rows from these finished train_net.py runs, one per "
        "seed in --seeds' order (e.g. the MODEL folder of an earlier --output) "
        "instead of training it again; each one's config.yaml must equal the "
        "config this comparison would train at its seed. Repeat it for several "
        "models; a reused model joins the table even if --models omits it",
    )
    parser.add_argument(
        "--baseline-run",
        action=ConfigKeyEndsList,
        default=None,
        metavar="DIR",
        help="the same as --reuse-run mask_rcnn DIR ...",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        help="config overrides given to every model as KEY VALUE pairs, e.g. "
        "MODEL.FCOS.NMS_TH 0.6; last on the command line (they take the rest "
        "of it)",
    )
    return add_dataset_argument(
        parser, help="Registered in every run; --train-dataset and --test-dataset choose them"
    )


def choose_datasets(parser: argparse.ArgumentParser, args, opts: List[str], work: str):
    """
    Check and register the --dataset datasets here (errors before anything trains) and set
    ``args.datasets`` (the DatasetSpecs that every run registers) and ``args.class_opts``
    ({model: its class-count keys set to the chosen datasets' class count}, empty when the
    configs' datasets are used). Usage errors (exit 2) name the option at fault.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from tensormask_proj.engine import register_command_line_datasets

    chosen = list(args.train_dataset or []) + ([args.test_dataset] if args.test_dataset else [])
    for spec in args.dataset:
        if spec.name not in chosen:
            parser.error(
                f"--dataset {spec.name}: neither --train-dataset nor --test-dataset names it"
            )
    args.datasets = [spec for spec in args.dataset if spec.registers]
    args.class_opts = {model: [] for model in MODEL_CONFIGS}
    if not chosen:
        return
    cfg = load_config(MODEL_CONFIGS["tensormask"], opts)  # (INPUT.MASK_FORMAT of every model)
    try:
        register_command_line_datasets(args.dataset, cfg, os.path.join(work, "checked_datasets"))
    except (ValueError, FileNotFoundError) as e:  # (CocoDatasetError is a ValueError)
        parser.error(str(e))
    classes = {}
    for name in chosen:
        if name not in DatasetCatalog.list():
            parser.error(
                f"--train-dataset/--test-dataset {name}: not a registered dataset; register "
                f"your own with --dataset {name} JSON IMAGE_DIR"
            )
        classes[name] = MetadataCatalog.get(name).get("thing_classes")
    counts = {name: len(names) for name, names in classes.items() if names}
    if len(set(counts.values())) > 1:
        parser.error(
            "the datasets chosen have different class counts: "
            + ", ".join(f"{name} {count}" for name, count in counts.items())
        )
    if not counts:
        return
    num_classes = next(iter(counts.values()))
    for model, config in MODEL_CONFIGS.items():
        cfg = load_config(config, opts)
        keys = architecture_of(cfg).class_count_keys(cfg)
        args.class_opts[model] = [word for key in keys for word in (key, str(num_classes))]


def main(argv=None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    opts = list(args.opts)
    if "SEED" in opts[::2]:
        # `learning.py SEED 1` (before --seeds) still means --seeds 1.
        if args.seeds:
            parser.error("give the seeds with --seeds only, not also as SEED in the opts")
        at = opts[::2].index("SEED") * 2
        args.seeds = [int(opts[at + 1])]
        del opts[at : at + 2]
    args.seeds = args.seeds or [0]
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds {args.seeds}: each seed once")
    reused = parse_reused_runs(parser, args)
    if args.iters is None:
        args.iters = load_config(MODEL_CONFIGS["tensormask"], []).SOLVER.MAX_ITER

    work = args.output or tempfile.mkdtemp(prefix="learning_")
    os.makedirs(work, exist_ok=True)
    choose_datasets(parser, args, opts, work)
    if args.fit_sizes:
        for model in ("tensormask", "blendmask"):
            args.class_opts[model] += ["MODEL.FIT_SIZES_TO_DATA", "True"]
    common = ["MODEL.DEVICE", args.device]
    if args.train_dataset:
        common += ["DATASETS.TRAIN", str(tuple(args.train_dataset))]
    if args.test_dataset:
        common += ["DATASETS.TEST", str((args.test_dataset,))]
    common += opts
    # Mask R-CNN first: the others' ratios refer to it.
    models = sorted(dict.fromkeys([*args.models, *reused]), key=lambda m: m != "mask_rcnn")

    rows = []
    for seed_index, seed in enumerate(args.seeds):
        seeded = common + ["SEED", str(seed)]
        # One seed keeps the folder names of a single run (work/MODEL).
        suffix = f"_seed{seed}" if len(args.seeds) > 1 else ""
        for model in models:
            if model in reused:
                rows.append(reused_row(model, reused[model][seed_index], seed, seeded, args))
            else:
                out = os.path.join(work, model + suffix)
                rows.append(train_model(model, seed, seeded, out, args))
    rows += mean_rows(rows)
    baselines = {r["seed"]: r for r in rows if r["model"] == "mask_rcnn"}

    print()
    import torch

    print(
        f"torch {torch.__version__}, device {args.device}, "
        f"{args.threads or torch.get_num_threads()} threads, batch {args.batch}, "
        + (f"equal time {args.equal_time:.0f} s" if args.equal_time else f"{args.iters} iterations")
        + f", seeds {' '.join(map(str, args.seeds))}"
        + (", sizes fitted to the data" if args.fit_sizes else "")
        + f", runs in {work}"
    )
    print(
        "COCO AP (0-100); s/it: median seconds per training iteration; wall: whole train_net.py "
        "run incl. evaluation; x: ratio of AP to Mask R-CNN's at the same seed (mean rows: "
        "ratio of the means); spread: highest minus lowest mask AP over the seeds"
    )
    print(format_table(rows, baselines, gpu=args.device.startswith("cuda")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
