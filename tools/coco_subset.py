#!/usr/bin/env python
"""
Make a small COCO-format dataset out of a few images of a bigger one: a json and an image folder
of its own, ready for ``--dataset NAME JSON IMAGE_DIR`` (docs/datasets.md).

    python tools/coco_subset.py --dataset shapes_val --first 0 --num-images 16 \\
        --categories circle ring star --output my_data/train
    python tools/coco_subset.py --dataset big instances.json images/ --num-images 16 \\
        --output my_data/train

writes ``my_data/train/annotations.json`` and copies the images to ``my_data/train/images/``.
The source is the last ``--dataset``: ``NAME JSON IMAGE_DIR`` (its files; NAME is only a label
here) or the NAME of a registered COCO-format dataset (``shapes_val``, generated if needed;
``coco_2017_val`` under DETECTRON2_DATASETS ...). Images are taken in image-id order,
``--num-images`` of them from position ``--first`` (so two calls with different ``--first`` make
disjoint train and val sets). ``--categories`` keeps only those classes and their annotations
(category ids unchanged); images left without annotations stay in the set.
"""

import argparse
import json
import os
import shutil
import sys
from typing import List, Optional, Tuple

from tensormask_proj.engine import add_dataset_argument, dataset_files


def subset(coco: dict, first: int, num_images: int, categories: Optional[List[str]] = None) -> dict:
    """The COCO dict of images [first, first + num_images) in id order (and their annotations)."""
    known = {c["name"]: c for c in coco["categories"]}
    if categories:
        unknown = [name for name in categories if name not in known]
        if unknown:
            raise ValueError(
                f"--categories: {', '.join(unknown)} not in the dataset's categories "
                f"({', '.join(known)})"
            )
        kept_categories = [known[name] for name in categories]
    else:
        kept_categories = list(coco["categories"])
    category_ids = {c["id"] for c in kept_categories}
    images = sorted(coco["images"], key=lambda img: img["id"])[first : first + num_images]
    if not images:
        raise ValueError(f"--first {first}: the dataset has only {len(coco['images'])} images")
    image_ids = {img["id"] for img in images}
    annotations = [
        ann
        for ann in coco["annotations"]
        if ann["image_id"] in image_ids and ann["category_id"] in category_ids
    ]
    return {
        "images": images,
        "annotations": annotations,
        "categories": sorted(kept_categories, key=lambda c: c["id"]),
    }


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="folder that gets annotations.json, images/"
    )
    parser.add_argument("--first", type=int, default=0, help="position of the first image")
    parser.add_argument("--num-images", type=int, required=True, help="how many images")
    parser.add_argument(
        "--categories", nargs="+", metavar="NAME", help="class names to keep (default: all)"
    )
    add_dataset_argument(parser, help="The source is the last --dataset", required=True)
    return parser


def source_files(specs) -> Tuple[str, str]:
    """(json, image folder) of the last --dataset: its files, or a registered dataset's."""
    name, json_file, image_root = specs[-1]
    if json_file is None:
        return dataset_files(name)
    for path, what, exists in (
        (json_file, "annotations", os.path.isfile),
        (image_root, "image folder", os.path.isdir),
    ):
        if not exists(path):
            raise FileNotFoundError(f"--dataset {name}: {what} not found: {path}")
    return json_file, image_root


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    try:
        json_file, image_root = source_files(args.dataset)
        with open(json_file) as f:
            coco = json.load(f)
        small = subset(coco, args.first, args.num_images, args.categories)
    except (ValueError, FileNotFoundError) as e:
        print(f"coco_subset.py: error: {e}", file=sys.stderr)
        return 2
    image_dir = os.path.join(args.output, "images")
    os.makedirs(image_dir, exist_ok=True)
    for img in small["images"]:
        target = os.path.join(image_dir, img["file_name"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(image_root, img["file_name"]), target)
    out_json = os.path.join(args.output, "annotations.json")
    with open(out_json, "w") as f:
        json.dump(small, f)
    names = ", ".join(c["name"] for c in small["categories"])
    print(
        f"{out_json}: {len(small['images'])} images, {len(small['annotations'])} annotations, "
        f"{len(small['categories'])} categories ({names}); images in {image_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
