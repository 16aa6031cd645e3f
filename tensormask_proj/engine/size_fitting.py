"""
Object sizes per pyramid level fitted to a dataset: TensorMask's window sizes
(``MODEL.ANCHOR_GENERATOR.SIZES``) and FCOS/BlendMask's ``MODEL.FCOS.SIZES_OF_INTEREST``.

Both models put an object on the pyramid levels whose scale suits it, with sizes written for
COCO at 800 px. On other data (small objects, small images) the finest windows can be far
larger than the objects, or some objects get no positive window at all and are learnt as
background. As YOLO's automatic anchor check, this module measures the training set's boxes
after the training resize and:

* counts TensorMask's positive windows per level and per object with the model's own label
  assignment (:func:`count_positive_windows`);
* chooses the window sizes (:func:`fit_window_sizes`): the config's sizes scaled together (the
  ratios between the windows of a level and x2 per level are kept) to the scale at which every
  object gets a positive window (or the fewest go without), the finest level gets positives,
  and the positive windows are the most. Smaller windows stop containing the larger objects;
  larger ones fail the scale condition for more of them, and a small object's mask then covers
  a few cells of a coarse window;
* chooses FCOS's level ranges (:func:`fit_sizes_of_interest`): AdelaiDet's ratio of the level
  boundaries to the strides, raised where the finest level would get less than its share of
  the objects (the distance from an object's centre to its farthest side is what FCOS compares
  with SIZES_OF_INTEREST).

``tools/fit_sizes.py`` prints the choice; ``MODEL.FIT_SIZES_TO_DATA True`` makes ``train_net.py``
apply it before the model is built (written to OUTPUT_DIR/config.yaml, which demo and export
then use). Training warns when objects get no positive window (:func:`warn_unassigned_objects`).
Large datasets are measured on a fixed random sample of their images; with several training
scales (MIN_SIZE_TRAIN), an object counts once per scale.
"""

import logging
import math
import random
from dataclasses import dataclass
from typing import Callable, Dict, List, NamedTuple, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode

from ..modeling.tensormask.anchor_generator import TensorMaskAnchorGenerator
from ..modeling.tensormask.assignment import assign_windows
from .architectures import architecture_of

__all__ = [
    "ScaledImage",
    "scaled_images",
    "count_positive_windows",
    "WindowFit",
    "evaluate_window_sizes",
    "fit_window_sizes",
    "SizesOfInterestFit",
    "evaluate_sizes_of_interest",
    "fit_sizes_of_interest",
    "SizeFitter",
    "SIZE_FITTERS",
    "fit_sizes_to_data",
    "warn_unassigned_objects",
]

logger = logging.getLogger(__name__)

# Images measured at most (a fixed random sample of larger datasets): a few seconds per fit.
MAX_IMAGES = 300
# The finest window tried goes up to this many finest strides (128 px on P2); the search stops
# after PATIENCE sizes in a row that are no better.
MAX_MULTIPLE = 32
PATIENCE = 6
# AdelaiDet's SIZES_OF_INTEREST [64, 128, 256, 512] for strides [8, 16, 32, 64, 128]: a level
# takes objects whose half-size is at most 8 of its strides.
FCOS_STRIDES_PER_LEVEL = 8.0
# TensorMask's window sizes: the fitted sizes whose positives are windows (the others are FCOS's
# level ranges), where objects can get no positive window at all.
WINDOW_SIZES_KEY = "MODEL.ANCHOR_GENERATOR.SIZES"


@dataclass
class ScaledImage:
    """One training image at one training scale: its padded size and its non-crowd boxes."""

    padded_size: Tuple[int, int]  # (H, W) after the resize, padded to the size divisibility
    boxes: torch.Tensor  # (G, 4) XYXY, float32, in resized pixels


def _resize_scales(cfg: CfgNode, height: int, width: int) -> List[float]:
    """The factors of detectron2's ResizeShortestEdge for training: one per MIN_SIZE_TRAIN
    ("choice" sampling) or the two ends of the range ("range")."""
    shorts = list(cfg.INPUT.MIN_SIZE_TRAIN)
    if cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING == "range":
        shorts = [min(shorts), max(shorts)]
    scales = []
    for short in shorts:
        scale = short / min(height, width)
        if max(height, width) * scale > cfg.INPUT.MAX_SIZE_TRAIN:
            scale = cfg.INPUT.MAX_SIZE_TRAIN / max(height, width)
        scales.append(scale)
    return sorted(set(scales))


def _size_divisibility(cfg: CfgNode) -> int:
    """detectron2's FPN pads to the stride of its last input ("res5": 32)."""
    return 2 ** int(cfg.MODEL.FPN.IN_FEATURES[-1][-1])


def scaled_images(cfg: CfgNode, dataset_dicts: Sequence[Dict], max_images: int = MAX_IMAGES):
    """
    The images of ``dataset_dicts`` holding non-crowd objects (a fixed sample of ``max_images``
    when there are more) at every training scale of ``cfg``, as :class:`ScaledImage`.
    """
    dicts = [
        d for d in dataset_dicts if any(not a.get("iscrowd", 0) for a in d.get("annotations", []))
    ]
    if len(dicts) > max_images:
        dicts = random.Random(0).sample(dicts, max_images)
    divisibility = _size_divisibility(cfg)
    images = []
    for d in dicts:
        boxes = torch.tensor(
            [
                [
                    a["bbox"][0],
                    a["bbox"][1],
                    a["bbox"][0] + a["bbox"][2],
                    a["bbox"][1] + a["bbox"][3],
                ]
                for a in d["annotations"]
                if not a.get("iscrowd", 0)
            ],
            dtype=torch.float32,
        )
        for scale in _resize_scales(cfg, d["height"], d["width"]):
            padded = tuple(
                math.ceil(round(v * scale) / divisibility) * divisibility
                for v in (d["height"], d["width"])
            )
            images.append(ScaledImage(padded, boxes * scale))
    return images


def _tensormask_strides(cfg: CfgNode) -> List[int]:
    return [2 ** int(name[1:]) for name in cfg.MODEL.TENSOR_MASK.IN_FEATURES]


def count_positive_windows(
    cfg: CfgNode, images: Sequence[ScaledImage], sizes: Sequence[Sequence[float]]
) -> Tuple[np.ndarray, np.ndarray]:
    """
    TensorMask's label assignment (the model's own, ``assign_windows``) over ``images`` with the
    window sizes ``sizes`` (one list per level of MODEL.TENSOR_MASK.IN_FEATURES).

    Returns:
        by_level (ndarray[L, A]): positive windows per level and window,
        per_object (ndarray[G]): positive windows of every object.
    """
    # The model's own window geometry (level offsets, the assignment's scale floor).
    windows = TensorMaskAnchorGenerator(sizes=sizes, strides=_tensormask_strides(cfg))
    strides = windows.strides
    by_level = np.zeros((windows.num_levels, windows.num_anchors), dtype=np.int64)
    per_object = []
    for image in images:
        grid = [
            (math.ceil(image.padded_size[0] / s), math.ceil(image.padded_size[1] / s))
            for s in strides
        ]
        targets = assign_windows(
            image.boxes, torch.zeros(len(image.boxes), dtype=torch.int64), grid, strides, sizes,
            cfg.MODEL.TENSOR_MASK.NUM_CLASSES, windows.min_anchor_size,
        )  # fmt: skip
        levels, _, _, anchor_ids = windows.locate(targets.pos_indices, grid)
        np.add.at(by_level, (levels.numpy(), anchor_ids.numpy()), 1)
        per_object += torch.bincount(targets.pos_gt, minlength=len(image.boxes)).tolist()
    return by_level, np.asarray(per_object, dtype=np.int64)


@dataclass
class WindowFit:
    """The chosen TensorMask window sizes and what the assignment gives with them."""

    sizes: List[List[int]]
    by_level: np.ndarray  # (L, A) positive windows
    per_object: np.ndarray  # (G,) positive windows of every object (at every scale)

    @property
    def unassigned(self) -> int:
        return int((self.per_object == 0).sum())

    def describe(self, cfg: CfgNode) -> str:
        """What a user reads: the sizes, the positives per level and the objects left out."""
        lines = [
            f"MODEL.ANCHOR_GENERATOR.SIZES {self.sizes}: {len(self.per_object)} objects, "
            f"{int(self.by_level.sum())} positive windows, {self.unassigned} objects without any"
        ]
        for feature, sizes, counts in zip(
            cfg.MODEL.TENSOR_MASK.IN_FEATURES, self.sizes, self.by_level
        ):
            cells = ", ".join(f"{s} px: {c}" for s, c in zip(sizes, counts))
            lines.append(f"  {feature}: {int(counts.sum()):7d} positives ({cells})")
        return "\n".join(lines)


def evaluate_window_sizes(
    cfg: CfgNode, images: Sequence[ScaledImage], sizes: Sequence[Sequence[float]]
) -> WindowFit:
    """What TensorMask's assignment gives on ``images`` with the window sizes ``sizes``."""
    return WindowFit([list(level) for level in sizes], *count_positive_windows(cfg, images, sizes))


def _scaled_sizes(reference: Sequence[Sequence[float]], first: int) -> List[List[int]]:
    """``reference`` scaled so that its first window is ``first`` px (x2 per level and the
    ratios inside a level kept, rounded to whole pixels)."""
    base = float(reference[0][0])
    return [[int(round(first * s / base)) for s in level] for level in reference]


def fit_window_sizes(cfg: CfgNode, dataset_dicts: Sequence[Dict]) -> WindowFit:
    """
    TensorMask's window sizes for ``dataset_dicts``: the config's SIZES scaled so that their
    finest window is 2 to MAX_MULTIPLE finest strides, keeping only the scalings where every
    finest-level window is a whole number of strides (the mask heads' window side V), chosen by,
    in order: the fewest objects without a positive window, the finest level used, the most
    positive windows, the smallest windows.

    The number of positives peaks where the windows match the objects: smaller windows stop
    containing the larger objects, larger ones pass the scale condition for fewer of them. On
    the shapes quick config it peaks at the 32/48 px finest windows that training runs had
    chosen (docs/tuning.md: mask AP 57.6 against 56.2 with 24/32 px windows).
    """
    images = scaled_images(cfg, dataset_dicts)
    if not images:
        raise ValueError("no object to fit the window sizes to (every image is empty or crowd)")
    reference = cfg.MODEL.ANCHOR_GENERATOR.SIZES
    if len(reference) != len(cfg.MODEL.TENSOR_MASK.IN_FEATURES):
        raise ValueError(
            f"MODEL.ANCHOR_GENERATOR.SIZES has {len(reference)} levels, "
            f"MODEL.TENSOR_MASK.IN_FEATURES {len(cfg.MODEL.TENSOR_MASK.IN_FEATURES)}"
        )
    strides = _tensormask_strides(cfg)
    best_key, best, worse_in_a_row = None, None, 0
    for multiple in range(2, MAX_MULTIPLE + 1):
        sizes = _scaled_sizes(reference, multiple * strides[0])
        try:  # the sizes the model accepts: per level x stride ratio, whole cells of a stride
            TensorMaskAnchorGenerator(sizes=sizes, strides=strides)
            TensorMaskAnchorGenerator.window_cells(sizes, strides)
        except ValueError:  # e.g. 44/66 px from 32/48 px: 66 px is 16.5 cells of 4 px
            continue
        fit = evaluate_window_sizes(cfg, images, sizes)
        key = (fit.unassigned, int(fit.by_level[0].sum() == 0), -int(fit.by_level.sum()))
        if best_key is None or key < best_key:
            best_key, best, worse_in_a_row = key, fit, 0
        else:
            worse_in_a_row += 1
            if worse_in_a_row == PATIENCE:  # past the peak
                break
    if best is None:
        raise ValueError(
            f"MODEL.ANCHOR_GENERATOR.SIZES {[list(s) for s in reference]}: no scaling of these "
            f"windows (finest 2 to {MAX_MULTIPLE} strides of {strides[0]} px) makes every "
            "finest-level window a whole number of strides with every level x2 the one below; give "
            "sizes whose ratios allow it"
        )
    return best


@dataclass
class SizesOfInterestFit:
    """The chosen FCOS level ranges and the objects each level gets."""

    sizes_of_interest: List[int]
    objects_per_level: List[int]

    def describe(self, cfg: CfgNode) -> str:
        per_level = ", ".join(
            f"{f}: {n}" for f, n in zip(cfg.MODEL.FCOS.IN_FEATURES, self.objects_per_level)
        )
        return (
            f"MODEL.FCOS.SIZES_OF_INTEREST {self.sizes_of_interest}: "
            f"{sum(self.objects_per_level)} objects per level ({per_level})"
        )


def _farthest_side_distances(images: Sequence[ScaledImage]) -> np.ndarray:
    """Per object, the distance from its centre to its farthest side: half its longer side
    (what FCOS compares with SIZES_OF_INTEREST, at the central locations)."""
    boxes = torch.cat([image.boxes for image in images])
    return ((boxes[:, 2:] - boxes[:, :2]).max(dim=1).values / 2).numpy()


def evaluate_sizes_of_interest(
    cfg: CfgNode, images: Sequence[ScaledImage], sizes_of_interest: Sequence[float]
) -> SizesOfInterestFit:
    """The objects of ``images`` that each FCOS level takes with ``sizes_of_interest``."""
    reach = _farthest_side_distances(images)
    edges = [-1.0] + [float(s) for s in sizes_of_interest] + [math.inf]
    counts = [int(((reach > lo) & (reach <= hi)).sum()) for lo, hi in zip(edges[:-1], edges[1:])]
    return SizesOfInterestFit(list(sizes_of_interest), counts)


def fit_sizes_of_interest(cfg: CfgNode, dataset_dicts: Sequence[Dict]) -> SizesOfInterestFit:
    """
    FCOS's SIZES_OF_INTEREST for ``dataset_dicts``: level k takes the objects whose centre-to-
    farthest-side distance (half their longer side) is at most f strides of level k, as
    AdelaiDet's [64, 128, 256, 512] for strides 8..64 with f = 8; f is raised where needed so
    that the finest level takes at least its share (1 / levels) of the objects.

    Finer levels are kept busy because that is what measured best: on the shapes quick config,
    [64, 128] (every object on P3) reached mask AP 59.8 against 51.1 with [32, 64]
    (docs/tuning.md); with f = 8 that config's boundaries stay as they are.
    """
    images = scaled_images(cfg, dataset_dicts)
    if not images:
        raise ValueError(
            "no object to fit the sizes of interest to (every image is empty or crowd)"
        )
    reach = _farthest_side_distances(images)
    strides = list(cfg.MODEL.FCOS.FPN_STRIDES)
    share = float(np.quantile(reach, 1.0 / len(strides)))
    factor = max(FCOS_STRIDES_PER_LEVEL, share / strides[0])
    bounds = [int(math.ceil(factor * stride)) for stride in strides[:-1]]
    return evaluate_sizes_of_interest(cfg, images, bounds)


class SizeFitter(NamedTuple):
    """How the sizes of one config key are fitted (:data:`SIZE_FITTERS`)."""

    evaluate: Callable  # (cfg, images, sizes) -> what ``sizes`` give on ``images``
    fit: Callable  # (cfg, dataset_dicts) -> the fitted sizes and what they give
    value: Callable  # the fit -> the key's new value


# The fitting of each key that an architecture's ``fitted_sizes_key`` names (.architectures).
SIZE_FITTERS: Dict[str, SizeFitter] = {
    WINDOW_SIZES_KEY: SizeFitter(evaluate_window_sizes, fit_window_sizes, lambda f: f.sizes),
    "MODEL.FCOS.SIZES_OF_INTEREST": SizeFitter(
        evaluate_sizes_of_interest, fit_sizes_of_interest, lambda f: f.sizes_of_interest
    ),
}


def fit_sizes_to_data(cfg: CfgNode, dataset_dicts: Sequence[Dict]) -> Tuple[CfgNode, str]:
    """
    A copy of ``cfg`` (frozen) whose sizes are fitted to ``dataset_dicts`` (the training set):
    the ``fitted_sizes_key`` of its architecture (ANCHOR_GENERATOR.SIZES for TensorMask,
    FCOS.SIZES_OF_INTEREST for BlendMask); and the text that tells what was chosen (for the log).
    """
    key = architecture_of(cfg, unknown_ok=True).fitted_sizes_key
    if key is None:
        raise ValueError(
            f"MODEL.FIT_SIZES_TO_DATA: no sizes to fit for {cfg.MODEL.META_ARCHITECTURE}"
        )
    fitter = SIZE_FITTERS[key]
    fit = fitter.fit(cfg, dataset_dicts)
    fitted = cfg.clone()
    fitted.defrost()
    *path, last = key.split(".")
    node = fitted
    for part in path:
        node = node[part]
    node[last] = fitter.value(fit)
    fitted.freeze()
    datasets = ", ".join(cfg.DATASETS.TRAIN)
    return fitted, f"MODEL.FIT_SIZES_TO_DATA: fitted to {datasets}:\n{fit.describe(cfg)}"


def warn_unassigned_objects(cfg: CfgNode, dataset_dicts: Sequence[Dict]) -> int:
    """
    For TensorMask: warn, with the counts, when objects of ``dataset_dicts`` get no positive
    window with the config's SIZES (they are learnt as background). Returns how many.
    """
    if architecture_of(cfg, unknown_ok=True).fitted_sizes_key != WINDOW_SIZES_KEY:
        return 0
    images = scaled_images(cfg, dataset_dicts)
    if not images:
        return 0
    fit = evaluate_window_sizes(cfg, images, cfg.MODEL.ANCHOR_GENERATOR.SIZES)
    unassigned, per_object = fit.unassigned, fit.per_object
    if unassigned:
        sample = f" (in a sample of {MAX_IMAGES} images)" if len(dataset_dicts) > MAX_IMAGES else ""
        logger.warning(
            f"{unassigned} of {len(per_object)} objects{sample} of {', '.join(cfg.DATASETS.TRAIN)} "
            f"get no positive window with MODEL.ANCHOR_GENERATOR.SIZES "
            f"{cfg.MODEL.ANCHOR_GENERATOR.SIZES} at the training sizes: they are learnt as "
            "background. `python tools/fit_sizes.py` shows sizes that reach them; "
            "MODEL.FIT_SIZES_TO_DATA True applies them."
        )
    return unassigned
