"""
Where a model's class-aware AP goes: found objects given the wrong class, or objects not found.

For every ground-truth instance (crowd regions excepted), the *covering detection* is the
highest-scoring detection of the image whose mask overlaps it with IoU >= ``iou_threshold``,
whatever its class. Its class fills one cell of a confusion matrix (rows: ground-truth class,
columns: the covering detection's class, last column: no covering detection). Next to it:

* the same counts by COCO size (small < 32^2 <= medium < 96^2 <= large px^2 of mask area);
* the best score of each image, and of each covering detection (what a ``demo.py``
  ``--confidence-threshold`` keeps);
* COCO mask and box AP twice on the same detections: with their classes, and class-agnostic
  (every ground truth and detection put in one category). The gap between the two is what
  classification costs; AP that neither reaches is lost to localisation and masks;
* the same APs by size, with AP50 and AP75: a low AP50 means objects not found (or, with
  classes, misclassified), a low AP75 beside a good AP50 means outlines that are not tight;
* how tight the covering detections are, by ground-truth class and size: their mean mask IoU,
  mean box IoU and the share with mask IoU >= 0.75. A mask IoU below the box IoU means masks
  that lose inside good boxes; both low, boxes that cut the object short or overshoot it.

Shape shorthand: G ground-truth instances of an image, D detections of an image, K classes.
Masks are COCO RLEs (``pycocotools.mask.encode`` of an (H, W) uint8 Fortran array).
"""

import contextlib
import io
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = ["ClassConfusion", "covering_detections"]

# COCO's area ranges (px^2), as COCOeval's "small", "medium" and "large".
SIZE_RANGES = (("small", 0.0, 32.0**2), ("medium", 32.0**2, 96.0**2), ("large", 96.0**2, 1e10))
IOU_TYPES = ("segm", "bbox")


def _mean_precision(precision: np.ndarray) -> float:
    """COCOeval.summarize's mean over the defined (> -1) entries, 0-100; NaN if none."""
    defined = precision[precision > -1]
    return 100.0 * float(defined.mean()) if defined.size else float("nan")


def _overall_ap(by_size: Dict[str, Dict[str, Tuple[float, ...]]]) -> Dict[str, float]:
    """The "all" AP of :meth:`ClassConfusion.precision_by_size`'s table, 0 rather than NaN
    without ground truth (COCOEvaluator's -1, clipped at 0)."""
    return {t: float(np.nan_to_num(by_size[t]["all"][0])) for t in IOU_TYPES}


def _xywh(boxes) -> List[List[float]]:
    """(n, 4) XYXY boxes as COCO's [x, y, width, height] lists."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in boxes.tolist()]


def covering_detections(
    gt_masks: Sequence[dict],
    det_masks: Sequence[dict],
    det_scores: np.ndarray,
    iou_threshold: float,
) -> np.ndarray:
    """
    Args:
        gt_masks: G RLEs; det_masks: D RLEs of the same image size.
        det_scores (ndarray[D]): detection scores.
        iou_threshold (float): least mask IoU for a detection to cover an instance.

    Returns:
        ndarray[G] of int: index of each instance's covering detection, -1 where none covers it.
    """
    covering = np.full(len(gt_masks), -1, dtype=np.int64)
    if len(gt_masks) == 0 or len(det_masks) == 0:
        return covering
    ious = np.asarray(mask_util.iou(list(det_masks), list(gt_masks), [0] * len(gt_masks)))
    ious = ious.reshape(len(det_masks), len(gt_masks))  # (D, G)
    scores = np.asarray(det_scores, dtype=np.float64)
    for g in range(len(gt_masks)):
        candidates = np.nonzero(ious[:, g] >= iou_threshold)[0]
        if candidates.size:
            covering[g] = candidates[np.argmax(scores[candidates])]
    return covering


class ClassConfusion:
    """
    Accumulates images (:meth:`add_image`), then reports (:meth:`summary`, :meth:`format`).
    """

    def __init__(self, class_names: Sequence[str], iou_threshold: float = 0.5):
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.class_names = list(class_names)
        self.iou_threshold = iou_threshold
        num_classes = len(self.class_names)
        self.matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
        self.by_size = {name: np.zeros(3, dtype=np.int64) for name, _, _ in SIZE_RANGES}
        self.image_best_scores: List[float] = []
        self.covering_scores: List[float] = []
        # Per covering detection: (ground-truth class, size range name, mask IoU, box IoU).
        self.covering_fits: List[Tuple[int, str, float, float]] = []
        # COCO-format copies for the AP with and without classes.
        self._images: List[dict] = []
        self._gt: List[dict] = []
        self._dets: List[dict] = []

    def add_image(
        self,
        height: int,
        width: int,
        gt_masks: Sequence[dict],
        gt_boxes: np.ndarray,
        gt_classes: Sequence[int],
        gt_crowd: Sequence[bool],
        det_masks: Sequence[dict],
        det_boxes: np.ndarray,
        det_scores: Sequence[float],
        det_classes: Sequence[int],
    ) -> None:
        """
        One image of size (height, width): G ground-truth instances (RLE, XYXY box, class in
        [0, K), crowd flag) and D detections (RLE, XYXY box, score, class in [0, K)).
        """
        num_classes = len(self.class_names)
        for name, values in (("ground-truth", gt_classes), ("detection", det_classes)):
            bad = [int(c) for c in values if not 0 <= int(c) < num_classes]
            if bad:
                raise ValueError(
                    f"{name} class {bad[0]} is outside the {num_classes} classes "
                    f"{self.class_names}"
                )
        image_id = len(self._images) + 1
        self._images.append({"id": image_id, "height": int(height), "width": int(width)})
        det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
        self.image_best_scores.append(float(det_scores.max()) if det_scores.size else 0.0)
        gt_areas = [float(mask_util.area(mask)) for mask in gt_masks]
        for mask, area, box, cls, crowd in zip(
            gt_masks, gt_areas, _xywh(gt_boxes), gt_classes, gt_crowd
        ):
            self._gt.append(
                {
                    "id": len(self._gt) + 1,
                    "image_id": image_id,
                    "category_id": int(cls) + 1,
                    "segmentation": mask,
                    "area": area,
                    "bbox": box,
                    "iscrowd": int(bool(crowd)),
                }
            )
        for mask, box, score, cls in zip(det_masks, _xywh(det_boxes), det_scores, det_classes):
            self._dets.append(
                {
                    "image_id": image_id,
                    "category_id": int(cls) + 1,
                    "segmentation": mask,
                    "bbox": box,
                    "score": float(score),
                }
            )

        counted = [i for i, crowd in enumerate(gt_crowd) if not crowd]
        covering = covering_detections(
            [gt_masks[i] for i in counted], det_masks, det_scores, self.iou_threshold
        )
        gt_xywh, det_xywh = _xywh(gt_boxes), _xywh(det_boxes)
        for i, d in zip(counted, covering):
            gt_class = int(gt_classes[i])
            found = d >= 0
            correct = found and int(det_classes[d]) == gt_class
            self.matrix[gt_class, int(det_classes[d]) if found else num_classes] += 1
            size = next(name for name, lo, hi in SIZE_RANGES if lo <= gt_areas[i] < hi)
            self.by_size[size] += np.array([1, int(found), int(correct)])
            if found:
                self.covering_scores.append(float(det_scores[d]))
                mask_iou = mask_util.iou([det_masks[d]], [gt_masks[i]], [0])
                box_iou = mask_util.iou([det_xywh[d]], [gt_xywh[i]], [0])
                self.covering_fits.append(
                    (gt_class, size, float(mask_iou[0][0]), float(box_iou[0][0]))
                )

    # ------------------------------------------------------------------------------------ #
    def average_precision(self, class_agnostic: bool) -> Dict[str, float]:
        """COCO AP (0-100) of the masks ("segm") and the boxes ("bbox")."""
        return _overall_ap(self.precision_by_size(class_agnostic))

    def precision_by_size(self, class_agnostic: bool) -> Dict[str, Dict[str, Tuple[float, ...]]]:
        """
        COCO (AP, AP50, AP75), 0-100, per size range ("all", then SIZE_RANGES' names) of the
        masks ("segm") and the boxes ("bbox"); NaN where a range holds no ground truth. Where a
        model's AP50 is high but its AP75 low, detections are found and poorly outlined.
        """
        ranges = ("all",) + tuple(name for name, _, _ in SIZE_RANGES)
        # Shallow copies: COCO's loadRes adds fields to the detections it is given.
        one_category = {"category_id": 1} if class_agnostic else {}
        gt = [{**item, **one_category} for item in self._gt]
        dets = [{**item, **one_category} for item in self._dets]
        num_categories = 1 if class_agnostic else len(self.class_names)
        if not dets:
            return {iou_type: {r: (0.0, 0.0, 0.0) for r in ranges} for iou_type in IOU_TYPES}
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": self._images,
            "annotations": gt,
            "categories": [{"id": c + 1, "name": str(c)} for c in range(num_categories)],
        }
        result = {}
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt.createIndex()
            for iou_type in IOU_TYPES:
                # Without "bbox", loadRes takes each detection's area from its mask, as
                # COCOEvaluator does for "segm"; the size ranges then match its APs/APm/APl.
                drop = "bbox" if iou_type == "segm" else "segmentation"
                results = coco_gt.loadRes(
                    [{k: v for k, v in item.items() if k != drop} for item in dets]
                )
                evaluator = COCOeval(coco_gt, results, iou_type)
                evaluator.evaluate()
                evaluator.accumulate()
                # (T IoU thresholds 0.5:0.95, R recalls, K classes, A size ranges, M max dets)
                precision = evaluator.eval["precision"][..., -1]
                result[iou_type] = {
                    r: tuple(
                        _mean_precision(p)
                        # AP over all thresholds, at IoU 0.5 (index 0) and at 0.75 (index 5)
                        for p in (precision[..., a], precision[0, ..., a], precision[5, ..., a])
                    )
                    for a, r in enumerate(ranges)
                }
        return result

    def outline_fit(self) -> Dict[str, Dict[str, Tuple[int, float, float, float]]]:
        """
        The covering detections' fit, by ground-truth class name (and "all") and size range:
        (count, mean mask IoU, mean box IoU, share with mask IoU >= 0.75); NaN means without
        any covering detection.
        """
        table = {}
        for class_index, name in list(enumerate(self.class_names)) + [(None, "all")]:
            table[name] = {}
            for size, _, _ in SIZE_RANGES:
                fits = np.array(
                    [
                        (mask_iou, box_iou)
                        for gt_class, fit_size, mask_iou, box_iou in self.covering_fits
                        if fit_size == size and class_index in (None, gt_class)
                    ]
                ).reshape(-1, 2)
                if len(fits) == 0:
                    table[name][size] = (0, float("nan"), float("nan"), float("nan"))
                    continue
                table[name][size] = (
                    len(fits),
                    float(fits[:, 0].mean()),
                    float(fits[:, 1].mean()),
                    float((fits[:, 0] >= 0.75).mean()),
                )
        return table

    def summary(self) -> Dict[str, object]:
        """Every figure of :meth:`format`, as plain values."""
        total = int(self.matrix.sum())
        found = total - int(self.matrix[:, -1].sum())
        correct = int(np.trace(self.matrix[:, :-1]))
        by_size = self.precision_by_size(class_agnostic=False)
        by_size_agnostic = self.precision_by_size(class_agnostic=True)
        return {
            "instances": total,
            "found": found,
            "correct": correct,
            "by_size": {k: v.tolist() for k, v in self.by_size.items()},
            "mean_image_best_score": (
                float(np.mean(self.image_best_scores)) if self.image_best_scores else 0.0
            ),
            "mean_covering_score": (
                float(np.mean(self.covering_scores)) if self.covering_scores else 0.0
            ),
            # One COCO evaluation per mode; the overall AP is its "all" row.
            "ap": _overall_ap(by_size),
            "ap_class_agnostic": _overall_ap(by_size_agnostic),
            "ap_by_size": by_size,
            "ap_by_size_class_agnostic": by_size_agnostic,
            "outline_fit": self.outline_fit(),
        }

    def format(self) -> str:
        """The confusion matrix and the figures above as a printable table."""
        s = self.summary()
        names = self.class_names
        width = max(8, max((len(n) for n in names), default=0) + 1)
        lines = [
            f"covering detection: the best-scoring detection with mask IoU >= "
            f"{self.iou_threshold:g} (any class); rows: ground-truth class, columns: its class",
            " " * width + "".join(f"{n:>{width}}" for n in names) + f"{'missed':>{width}}",
        ]
        for name, row in zip(names, self.matrix):
            lines.append(f"{name:>{width}}" + "".join(f"{v:>{width}d}" for v in row))
        total = max(1, s["instances"])
        lines.append(
            f"instances {s['instances']}: found {s['found']} ({100 * s['found'] / total:.0f}%), "
            f"right class {s['correct']} ({100 * s['correct'] / total:.0f}%)"
        )
        for name, (n, found, correct) in s["by_size"].items():
            lines.append(f"  {name:<6} {n:5d} instances, found {found}, right class {correct}")
        lines.append(
            f"mean best score per image {s['mean_image_best_score']:.3f}; "
            f"mean score of covering detections {s['mean_covering_score']:.3f}"
        )
        ap, agnostic = s["ap"], s["ap_class_agnostic"]
        lines.append(
            f"mask AP {ap['segm']:.1f} with classes, {agnostic['segm']:.1f} class-agnostic; "
            f"box AP {ap['bbox']:.1f}, {agnostic['bbox']:.1f}"
        )
        lines.append("AP / AP50 / AP75 by size (COCO's ranges of the ground truth's mask area)")
        columns = [
            ("mask", s["ap_by_size"]["segm"]),
            ("mask, no class", s["ap_by_size_class_agnostic"]["segm"]),
            ("box", s["ap_by_size"]["bbox"]),
            ("box, no class", s["ap_by_size_class_agnostic"]["bbox"]),
        ]
        lines.append(f"{'':8}" + "".join(f"{title:>19}" for title, _ in columns))
        for size in columns[0][1]:
            cells = ["{:5.1f} {:5.1f} {:5.1f}".format(*table[size]) for _, table in columns]
            lines.append(f"{size:8}" + "".join(f"{cell:>19}" for cell in cells))
        lines.append(
            "covering detections' fit by size: mean mask IoU, mean box IoU, share with mask "
            "IoU >= 0.75 (count)"
        )
        sizes = [name for name, _, _ in SIZE_RANGES]
        lines.append(" " * width + "".join(f"{size:>24}" for size in sizes))
        for name, row in s["outline_fit"].items():
            cells = [
                "{1:.3f} {2:.3f} {3:4.0%} ({0})".format(*row[size]) if row[size][0] else "-"
                for size in sizes
            ]
            lines.append(f"{name:>{width}}" + "".join(f"{cell:>24}" for cell in cells))
        return "\n".join(lines)
