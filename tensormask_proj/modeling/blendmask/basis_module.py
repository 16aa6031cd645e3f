"""
BlendMask's bottom module: predicts K "bases", dense score maps shared by all instances that the
blender crops and mixes per instance.

Shape shorthand in this module:

    N: number of images in the minibatch
    K: number of bases
    H, W: padded input size; s: stride of IN_FEATURES[0] (8 for p3)
    C: number of thing classes of the auxiliary semantic head
"""

from typing import Dict, List, Optional

import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, get_norm
from detectron2.utils.registry import Registry
from torch import Tensor, nn

from .losses import basis_semantic_loss

__all__ = ["BASIS_MODULE_REGISTRY", "build_basis_module", "ProtoNet"]

BASIS_MODULE_REGISTRY = Registry("BASIS_MODULE")
BASIS_MODULE_REGISTRY.__doc__ = """
Registry for BlendMask basis ("bottom") modules, selected by ``MODEL.BASIS_MODULE.NAME``.

An entry is called as ``obj(cfg, input_shape)`` where ``input_shape`` is the backbone's
``Dict[str, ShapeSpec]``, and must return an ``nn.Module`` whose
``forward(features: Dict[str, Tensor], sem_targets: Optional[Tensor] = None)`` returns
``(outputs, losses)``:

* ``outputs["bases"]``: a list with one tensor (N, K, H/4, W/4), the bases at stride 4 of the
  padded input (BlendMask's pooler reads them with ``MODEL.BLENDMASK.POOLER_SCALES``);
  optionally ``outputs["seg_thing_out"]`` (semantic logits, for visualisation);
* ``losses``: a dict of auxiliary losses (empty in inference).

``sem_targets`` (N, H, W) long (thing class + 1 per pixel, 0 = background) is given in training
when the module needs it.
"""


def build_basis_module(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """Build the basis module named by ``cfg.MODEL.BASIS_MODULE.NAME``."""
    return BASIS_MODULE_REGISTRY.get(cfg.MODEL.BASIS_MODULE.NAME)(cfg, input_shape)


def _conv_norm_relu(in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
    """3x3 conv (bias only without a norm) + norm + ReLU, named 0 / 1 / 2 as in AdelaiDet."""
    conv = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1, bias=not norm)
    # kaiming_uniform with a=1 (Caffe2's "XavierFill"), as AdelaiDet initialises these convs.
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.constant_(conv.bias, 0)
    layers = [conv]
    norm_layer = get_norm(norm, out_channels)
    if norm_layer is not None:
        layers.append(norm_layer)
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


@BASIS_MODULE_REGISTRY.register()
class ProtoNet(nn.Module):
    """
    The basis module of AdelaiDet's BlendMask (after YOLACT's "ProtoNet"):

    1. ``refine``: one conv-norm-ReLU per input level, upsampled (bilinear) to the first level's
       size and summed;
    2. ``tower``: NUM_CONVS conv-norm-ReLU, x2 bilinear upsampling, one more conv-norm-ReLU and a
       1x1 conv to K bases -> stride s/2 (4 for p3);
    3. ``seg_head`` (only with the auxiliary loss): conv-BN-ReLU x2 and a 1x1 conv to C + 1
       classes on ``semantic_in_feature`` (the first input level unless set), trained with
       cross-entropy on the thing-semantic map. It only shapes the features during training
       and is not used by the masks.

    The semantic head always uses BatchNorm (as in AdelaiDet, for checkpoint compatibility); the
    refine and tower norms follow ``norm``.
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: Dict[str, ShapeSpec],
        in_features: List[str],
        num_bases: int = 4,
        convs_dim: int = 128,
        norm: str = "SyncBN",
        num_convs: int = 3,
        loss_on: bool = False,
        num_classes: int = 80,
        loss_weight: float = 0.3,
        common_stride: int = 8,
        semantic_in_feature: str = "",
        visualize: bool = False,
    ):
        """
        Args:
            input_shape: backbone output shapes.
            in_features: input feature names; the first sets the working resolution.
            num_bases: K.
            convs_dim: channel width of every conv.
            norm: detectron2 norm name for the refine and tower convs ("" for none).
            num_convs: tower convs before the upsampling.
            loss_on: build the semantic head and compute the auxiliary loss in training.
            num_classes: C (the head predicts C + 1).
            loss_weight: weight of the auxiliary loss.
            common_stride: stride of in_features[0].
            semantic_in_feature: backbone feature of the semantic head; "" for in_features[0].
            visualize: also return the semantic logits in inference.
        """
        super().__init__()
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.BASIS_MODULE.IN_FEATURES {missing} are not backbone outputs "
                f"{sorted(input_shape)}"
            )
        first_stride = input_shape[in_features[0]].stride
        if first_stride is not None and first_stride != common_stride:
            raise ValueError(
                f"MODEL.BASIS_MODULE.COMMON_STRIDE={common_stride} but the first input feature "
                f"'{in_features[0]}' has stride {first_stride}"
            )
        self.in_features = list(in_features)
        self.loss_on = loss_on
        self.loss_weight = loss_weight
        self.semantic_in_feature = semantic_in_feature or in_features[0]
        if self.semantic_in_feature not in input_shape:
            raise ValueError(
                f"MODEL.BASIS_MODULE.SEMANTIC_IN_FEATURE '{semantic_in_feature}' is not a backbone "
                f"output {sorted(input_shape)}"
            )
        # The stride of the semantic logits, at which the loss samples its target.
        self.semantic_stride = (
            common_stride
            if self.semantic_in_feature == in_features[0]
            else input_shape[self.semantic_in_feature].stride
        )
        if self.semantic_stride is None:
            raise ValueError(
                f"MODEL.BASIS_MODULE.SEMANTIC_IN_FEATURE '{semantic_in_feature}' has no stride in "
                "the backbone's output shapes"
            )
        self.visualize = visualize

        self.refine = nn.ModuleList(
            [_conv_norm_relu(input_shape[f].channels, convs_dim, norm) for f in in_features]
        )
        tower = [_conv_norm_relu(convs_dim, convs_dim, norm) for _ in range(num_convs)]
        tower.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
        tower.append(_conv_norm_relu(convs_dim, convs_dim, norm))
        tower.append(nn.Conv2d(convs_dim, num_bases, 1))
        self.tower = nn.Sequential(*tower)

        if loss_on:
            in_channels = input_shape[self.semantic_in_feature].channels
            self.seg_head = nn.Sequential(
                nn.Conv2d(in_channels, convs_dim, 3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(convs_dim),
                nn.ReLU(),
                nn.Conv2d(convs_dim, convs_dim, 3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(convs_dim),
                nn.ReLU(),
                nn.Conv2d(convs_dim, num_classes + 1, 1),
            )

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        basis = cfg.MODEL.BASIS_MODULE
        return {
            "input_shape": input_shape,
            "in_features": basis.IN_FEATURES,
            # Architecture
            "num_bases": basis.NUM_BASES,
            "convs_dim": basis.CONVS_DIM,
            "norm": basis.NORM,
            "num_convs": basis.NUM_CONVS,
            # Auxiliary semantic loss
            "loss_on": basis.LOSS_ON,
            "num_classes": basis.NUM_CLASSES,
            "loss_weight": basis.LOSS_WEIGHT,
            "common_stride": basis.COMMON_STRIDE,
            "semantic_in_feature": basis.SEMANTIC_IN_FEATURE,
            "visualize": cfg.MODEL.BLENDMASK.VISUALIZE,
        }

    def forward(self, features: Dict[str, Tensor], sem_targets: Optional[Tensor] = None):
        """
        Args:
            features: backbone outputs; in_features[i] is (N, Ci, H/si, W/si).
            sem_targets: (N, H, W) long thing-semantic map at the padded input size; required
                in training when ``loss_on``.

        Returns:
            outputs: {"bases": [(N, K, 2H/s, 2W/s)]} plus, in inference with ``visualize`` and
                ``loss_on``, "seg_thing_out" (N, C+1, H/t, W/t), t the stride of the semantic
                head's input feature.
            losses: {"loss_basis_sem": scalar} in training with ``loss_on``, else {}.
        """
        x = self.refine[0](features[self.in_features[0]])
        for refine, name in zip(self.refine[1:], self.in_features[1:]):
            x_level = refine(features[name])
            x = x + F.interpolate(x_level, size=x.shape[-2:], mode="bilinear", align_corners=False)
        outputs = {"bases": [self.tower(x)]}
        losses = {}
        if self.loss_on and self.training:
            if sem_targets is None:
                raise ValueError(
                    "MODEL.BASIS_MODULE.LOSS_ON is True, so every training input needs a "
                    "'basis_sem' map (tensormask_proj.data.dataset_mapper."
                    "BlendMaskDatasetMapper adds it)"
                )
            seg_logits = self.seg_head(features[self.semantic_in_feature])
            losses["loss_basis_sem"] = self.loss_weight * basis_semantic_loss(
                seg_logits, sem_targets, self.semantic_stride
            )
        elif self.loss_on and self.visualize:
            outputs["seg_thing_out"] = self.seg_head(features[self.semantic_in_feature])
        return outputs, losses
