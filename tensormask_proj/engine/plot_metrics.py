"""
Plot the loss curves and evaluation results recorded in a detectron2 ``metrics.json``.

detectron2's JSONWriter appends one JSON object per line: training scalars (``total_loss``,
``loss_*``, ``lr``, keyed by ``iteration``) and, after each evaluation, lines with keys such as
``segm/AP`` and ``bbox/AP``. The command-line tool is ``tools/plot_metrics.py``.
"""

import json
import math
import os
import sys
from collections import defaultdict

from ..utils import atomic_write

__all__ = ["load_metrics", "mean_losses", "plot_metrics"]

_AP_KEYS = ("segm/AP", "bbox/AP", "segm/AP50", "bbox/AP50")


def load_metrics(path: str):
    """
    Return {key: [(iteration, value), ...]} (sorted by iteration) for every numeric key of a
    metrics.json file. Non-finite values are dropped. A run resumed with --resume appends again
    the iterations done after its last checkpoint; for a repeated iteration the later record
    wins, i.e. the curve is the one of the run that went on.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"metrics file not found: {path}")
    series = defaultdict(dict)  # key -> {iteration: value}
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                # A run killed while writing leaves a truncated last line: skip it, loudly.
                print(
                    f"[plot_metrics] {path}:{line_no}: skipping unreadable line ({e})",
                    file=sys.stderr,
                )
                continue
            iteration = record.get("iteration")
            if iteration is None:
                continue
            for key, value in record.items():
                if key != "iteration" and isinstance(value, (int, float)) and math.isfinite(value):
                    series[key][iteration] = float(value)
    if not series:
        raise ValueError(f"{path} holds no metrics")
    return {key: sorted(values.items()) for key, values in series.items()}


def _loss_keys(series):
    return sorted(k for k in series if k.startswith("loss_") or k == "total_loss")


def mean_losses(series, first_iteration: int):
    """
    {loss key: mean of its records at iterations >= ``first_iteration``} for the losses of
    ``load_metrics``'s ``series``. Raises ValueError naming the iteration and the last one
    recorded when no loss record is that late.
    """
    means = {}
    for key in _loss_keys(series):
        values = [v for it, v in series[key] if it >= first_iteration]
        if values:
            means[key] = sum(values) / len(values)
    if not means:
        last = max((it for k in _loss_keys(series) for it, _ in series[k]), default=None)
        raise ValueError(
            f"no loss recorded at iteration >= {first_iteration} (last loss record: {last})"
        )
    return means


def plot_metrics(metrics_path: str, output_path: str) -> str:
    """Write a PNG with the loss curves (left) and AP over iterations (right). Returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = load_metrics(metrics_path)
    loss_keys = _loss_keys(series)
    ap_keys = [k for k in _AP_KEYS if k in series]
    fig, (ax_loss, ax_ap) = plt.subplots(1, 2, figsize=(13, 4.5))
    for key in loss_keys:
        its, values = zip(*series[key])
        ax_loss.plot(
            its,
            values,
            label=key,
            linewidth=2.0 if key == "total_loss" else 1.0,
            marker="." if len(its) < 30 else None,  # a short run is a few points, not lines
        )
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("loss")
    if loss_keys and min(v for k in loss_keys for _, v in series[k]) > 0:
        ax_loss.set_yscale("log")
    ax_loss.set_title("training losses")
    ax_loss.grid(alpha=0.3)
    if loss_keys:
        ax_loss.legend(fontsize=8)
    for key in ap_keys:
        its, values = zip(*series[key])
        ax_ap.plot(its, values, marker="o", label=key)
        ax_ap.annotate(f"{values[-1]:.1f}", (its[-1], values[-1]), fontsize=8)
    ax_ap.set_xlabel("iteration")
    ax_ap.set_ylabel("AP")
    ax_ap.set_title("evaluation" if ap_keys else "evaluation (no results recorded)")
    ax_ap.grid(alpha=0.3)
    if ap_keys:
        ax_ap.legend(fontsize=8)
    fig.suptitle(os.path.abspath(metrics_path), fontsize=8)
    fig.tight_layout()
    try:
        with atomic_write(output_path) as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)
    return output_path
