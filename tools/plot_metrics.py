#!/usr/bin/env python
"""
The loss curves and evaluation results of a training run, as a picture
(``tensormask_proj/engine/plot_metrics.py``; ``train_net.py`` writes the same ``metrics.png`` at
the end of each run):

    python tools/plot_metrics.py OUTPUT_DIR [--output curves.png] [--mean-from ITER]

OUTPUT_DIR may also be the path of its ``metrics.json``. ``--mean-from ITER`` also prints each
loss's mean over the records from iteration ITER on (the values detectron2 logs every 20
iterations, each the median of its last 20), e.g. ``1040`` for the last 260 iterations of the
quick configs, to compare how far runs got.
"""

import argparse
import os
import sys

from tensormask_proj.engine import load_metrics, mean_losses, plot_metrics


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Plot losses and AP from a metrics.json")
    parser.add_argument(
        "metrics",
        metavar="OUTPUT_DIR",
        help="a training run's OUTPUT_DIR (or the path of its metrics.json)",
    )
    parser.add_argument(
        "--output", metavar="FILE", help="PNG to write (default: metrics.png next to metrics.json)"
    )
    parser.add_argument(
        "--mean-from",
        type=int,
        default=None,
        metavar="ITER",
        help="also print each loss's mean over the records from iteration ITER on",
    )
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    path = args.metrics
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.json")
    output = args.output or os.path.join(os.path.dirname(path) or ".", "metrics.png")
    print(plot_metrics(path, output))
    if args.mean_from is not None:
        try:
            means = mean_losses(load_metrics(path), args.mean_from)
        except ValueError as e:
            sys.exit(f"{path}: {e}")
        print(f"mean from iteration {args.mean_from}:")
        for key, mean in means.items():
            print(f"  {key:20s} {mean:.4f}")


if __name__ == "__main__":
    main()
