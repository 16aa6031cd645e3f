#!/usr/bin/env python
"""
Make a small COCO-format dataset out of a few images of a bigger one: a json and an image folder
of its own, ready for ``--dataset NAME JSON IMAGE_DIR`` (README, "Your own data").

    python tools/coco_subset.py --json datasets/shapes/annotations/instances_val.json \\
        --image-root datasets/shapes/val --first 0 --num-images 16 \\
        --categories circle ring star --output-dir my_data/train

writes ``my_data/train/annotations.json`` and copies the images to ``my_data/train/images/``.
Images are taken in image-id order, ``--num-images`` of them from position ``--first`` (so two
calls with different ``--first`` make disjoint train and val sets). ``--categories`` keeps only
those classes and their annotations (category ids unchanged); images left without annotations
stay in the set.
"""
import argparse
import json
import os
import shutil
import sys
from typing import List, Optional


def subset(
    coco: dict, first: int, num_images: int, categories: Optional[List[str]] = None
) -> dict:
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--json", required=True, help="source COCO instances json")
    parser.add_argument("--image-root", required=True, help="source image folder")
    parser.add_argument("--output-dir", required=True, help="gets annotations.json and images/")
    parser.add_argument("--first", type=int, default=0, help="position of the first image")
    parser.add_argument("--num-images", type=int, required=True, help="how many images")
    parser.add_argument("--categories", nargs="+", help="class names to keep (default: all)")
    args = parser.parse_args(argv)

    with open(args.json) as f:
        coco = json.load(f)
    try:
        small = subset(coco, args.first, args.num_images, args.categories)
    except ValueError as e:
        print(f"coco_subset.py: error: {e}", file=sys.stderr)
        return 2
    image_dir = os.path.join(args.output_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    for img in small["images"]:
        target = os.path.join(image_dir, img["file_name"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(args.image_root, img["file_name"]), target)
    json_file = os.path.join(args.output_dir, "annotations.json")
    with open(json_file, "w") as f:
        json.dump(small, f)
    names = ", ".join(c["name"] for c in small["categories"])
    print(
        f"{json_file}: {len(small['images'])} images, {len(small['annotations'])} annotations, "
        f"{len(small['categories'])} categories ({names}); images in {image_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
