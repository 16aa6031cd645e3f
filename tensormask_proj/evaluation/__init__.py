"""Evaluation beyond detectron2's COCOEvaluator: where a model's class-aware AP goes."""

from .class_confusion import ClassConfusion, covering_detections

__all__ = ["ClassConfusion", "covering_detections"]
