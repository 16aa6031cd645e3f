"""
Pre-generate the embedded "shapes" datasets:

    python -m tensormask_proj.data.datasets                      # every split, $DETECTRON2_DATASETS
    python -m tensormask_proj.data.datasets --root /data --force shapes_val
"""

import argparse
import os
import sys
import time

from .builtin import SHAPES_SPLITS, default_datasets_root
from .shapes import prepare_split


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tensormask_proj.data.datasets",
        description="Generate the embedded shapes datasets (COCO format) if they are missing.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        default=list(SHAPES_SPLITS),
        help=f"datasets to prepare (default: all of {', '.join(SHAPES_SPLITS)})",
    )
    parser.add_argument(
        "--root",
        default=default_datasets_root(),
        help="datasets root directory (default: $DETECTRON2_DATASETS or ./datasets)",
    )
    parser.add_argument("--force", action="store_true", help="regenerate even if complete")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    unknown = [n for n in args.names if n not in SHAPES_SPLITS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {list(SHAPES_SPLITS)}")
    root = os.path.abspath(os.path.expanduser(args.root))
    for name in args.names:
        start = time.perf_counter()
        paths = prepare_split(SHAPES_SPLITS[name], root, progress=not args.quiet, force=args.force)
        print(
            f"{name}: {paths.json_file} (images in {paths.image_root}) "
            f"ready in {time.perf_counter() - start:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
