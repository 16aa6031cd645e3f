"""
Dataset mapper for BlendMask: detectron2's :class:`DatasetMapper` plus the "basis_sem" map that
the basis module's auxiliary semantic loss trains on.

AdelaiDet reads that map from .npz files pre-generated for COCO by a separate script and
transforms it alongside the image. Here it is rasterised on the fly from the instance
annotations, after the geometric transforms, so any COCO-format dataset with instance masks
trains out of the box and the map always agrees with the transformed instances.
"""

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.structures import BitMasks, Instances, PolygonMasks, polygons_to_bitmask

__all__ = ["BlendMaskDatasetMapper", "build_train_mapper", "thing_semantic_from_instances"]


def thing_semantic_from_instances(instances: Instances, image_size) -> torch.Tensor:
    """
    Rasterise instances into a thing-semantic map.

    Args:
        instances: with ``gt_classes`` (0-based) and ``gt_masks`` (PolygonMasks or BitMasks)
            in the coordinates of an image of ``image_size``. May be empty (then
            ``gt_masks`` may be absent).
        image_size: (H, W).

    Returns:
        (H, W) long: ``gt_class + 1`` where an instance covers the pixel, 0 elsewhere. Where
        instances overlap, the later one in ``instances`` wins (AdelaiDet draws in annotation
        order too).
    """
    height, width = int(image_size[0]), int(image_size[1])
    sem = np.zeros((height, width), dtype=np.int64)
    if len(instances) == 0:
        return torch.from_numpy(sem)
    if not instances.has("gt_masks"):
        raise ValueError(
            "basis_sem needs instance masks: the annotations have no 'segmentation' "
            "(or MODEL.MASK_ON is False)"
        )
    masks = instances.gt_masks
    classes = instances.gt_classes.tolist()
    if isinstance(masks, PolygonMasks):
        for polygons, cls in zip(masks.polygons, classes):
            sem[polygons_to_bitmask(polygons, height, width)] = cls + 1
    elif isinstance(masks, BitMasks):
        bitmasks = masks.tensor.numpy().astype(bool)
        for bitmask, cls in zip(bitmasks, classes):
            sem[bitmask] = cls + 1
    else:
        raise TypeError(f"gt_masks must be PolygonMasks or BitMasks, got {type(masks).__name__}")
    return torch.from_numpy(sem)


class BlendMaskDatasetMapper(DatasetMapper):
    """
    :class:`DatasetMapper` that, in training with ``basis_sem_on``, also adds
    ``dataset_dict["basis_sem"]``: (H, W) long tensor, thing class + 1 per pixel (0 = background),
    computed by :func:`thing_semantic_from_instances` from the transformed, crowd-free,
    non-empty instances of the same dict.
    """

    @configurable
    def __init__(self, is_train: bool = True, *, basis_sem_on: bool = False, **kwargs):
        """
        Args:
            is_train, kwargs: as :class:`DatasetMapper`.
            basis_sem_on: add "basis_sem" in training (needs ``use_instance_mask``).
        """
        super().__init__(is_train, **kwargs)
        if basis_sem_on and is_train and not self.use_instance_mask:
            raise ValueError(
                "basis_sem is rasterised from instance masks: MODEL.BASIS_MODULE.LOSS_ON=True "
                "needs MODEL.MASK_ON=True"
            )
        self.basis_sem_on = basis_sem_on

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        ret["basis_sem_on"] = bool(is_train and cfg.MODEL.BASIS_MODULE.LOSS_ON)
        return ret

    def _transform_annotations(self, dataset_dict, transforms, image_shape):
        super()._transform_annotations(dataset_dict, transforms, image_shape)
        if self.basis_sem_on:
            dataset_dict["basis_sem"] = thing_semantic_from_instances(
                dataset_dict["instances"], image_shape
            )


def build_train_mapper(cfg) -> DatasetMapper:
    """
    The training mapper of cfg's architecture, as the engine's table of architectures names it
    (:func:`tensormask_proj.engine.architectures.build_train_mapper`; this name stays for the
    code that imports it from here).
    """
    # Imported on use: the engine's table imports this module for BlendMaskDatasetMapper.
    from ..engine.architectures import build_train_mapper as build

    return build(cfg)
