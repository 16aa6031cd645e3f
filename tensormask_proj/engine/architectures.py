"""
What the engine, the scripts and the benchmarks need to know about each meta-architecture
(MODEL.META_ARCHITECTURE), in one table: the config keys that hold its class count, its
test-time score and NMS thresholds, the sizes per pyramid level that can be fitted to a dataset,
and its training mapper.

The table holds this project's models (TensorMask, BlendMask) and the detectron2 models the
project trains next to them (the Mask R-CNN baselines, RetinaNet). :func:`architecture_of` looks
a config's architecture up; an architecture the table does not hold is an error naming
MODEL.META_ARCHITECTURE, unless the caller accepts detectron2's generic facts for it
(``unknown_ok``: detectron2's DatasetMapper, no class-count key to check).
"""

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, List, Mapping, Optional, Tuple, Type, Union

from detectron2.config import CfgNode
from detectron2.data import DatasetMapper

from ..data.dataset_mapper import BlendMaskDatasetMapper

__all__ = [
    "Architecture",
    "ARCHITECTURES",
    "UnknownArchitectureError",
    "architecture_of",
    "build_train_mapper",
    "config_value",
]


def config_value(cfg: CfgNode, key: str) -> Any:
    """The value of the dotted ``key`` ("MODEL.FCOS.NUM_CLASSES") in ``cfg``."""
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


@dataclass(frozen=True)
class Architecture:
    """The facts of one MODEL.META_ARCHITECTURE; keys are dotted config keys."""

    name: str
    # Keys that hold the number of (thing) classes: every one must equal the dataset's count.
    num_classes_keys: Tuple[str, ...] = ()
    # (key, switch): keys that hold the class count only when the boolean key ``switch`` is on.
    switched_num_classes_keys: Tuple[Tuple[str, str], ...] = ()
    # Test-time score threshold (instances below it are dropped) and NMS IoU threshold.
    score_threshold_key: Optional[str] = None
    nms_threshold_key: Optional[str] = None
    # The object sizes per pyramid level that tools/fit_sizes.py and MODEL.FIT_SIZES_TO_DATA fit
    # to a dataset (None: the architecture has none to fit).
    fitted_sizes_key: Optional[str] = None
    # The training mapper: a DatasetMapper (sub)class, built as ``train_mapper(cfg, True)``.
    train_mapper: Type[DatasetMapper] = DatasetMapper

    def class_count_keys(self, cfg: CfgNode) -> List[str]:
        """The keys of ``cfg`` that hold the class count, switched keys included when on."""
        switched = [k for k, switch in self.switched_num_classes_keys if config_value(cfg, switch)]
        return list(self.num_classes_keys) + switched


_TABLE = (
    Architecture(
        "TensorMask",
        num_classes_keys=("MODEL.TENSOR_MASK.NUM_CLASSES",),
        score_threshold_key="MODEL.TENSOR_MASK.SCORE_THRESH_TEST",
        nms_threshold_key="MODEL.TENSOR_MASK.NMS_THRESH_TEST",
        fitted_sizes_key="MODEL.ANCHOR_GENERATOR.SIZES",
    ),
    Architecture(
        "BlendMask",
        num_classes_keys=("MODEL.FCOS.NUM_CLASSES",),
        # The basis module's auxiliary semantic head has a class per thing (+ background).
        switched_num_classes_keys=(
            ("MODEL.BASIS_MODULE.NUM_CLASSES", "MODEL.BASIS_MODULE.LOSS_ON"),
        ),
        score_threshold_key="MODEL.FCOS.INFERENCE_TH_TEST",
        nms_threshold_key="MODEL.FCOS.NMS_TH",
        fitted_sizes_key="MODEL.FCOS.SIZES_OF_INTEREST",
        # (It adds the "basis_sem" target of the basis module's semantic loss.)
        train_mapper=BlendMaskDatasetMapper,
    ),
    Architecture(  # the Mask R-CNN baselines
        "GeneralizedRCNN",
        num_classes_keys=("MODEL.ROI_HEADS.NUM_CLASSES",),
        score_threshold_key="MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        nms_threshold_key="MODEL.ROI_HEADS.NMS_THRESH_TEST",
    ),
    Architecture(
        "RetinaNet",
        num_classes_keys=("MODEL.RETINANET.NUM_CLASSES",),
        score_threshold_key="MODEL.RETINANET.SCORE_THRESH_TEST",
        nms_threshold_key="MODEL.RETINANET.NMS_THRESH_TEST",
    ),
)
# MODEL.META_ARCHITECTURE -> its facts (read-only: a lookup never changes the table).
ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType({a.name: a for a in _TABLE})


class UnknownArchitectureError(ValueError):
    """A MODEL.META_ARCHITECTURE that :data:`ARCHITECTURES` does not hold."""


def architecture_of(cfg: Union[CfgNode, str], unknown_ok: bool = False) -> Architecture:
    """
    The facts of ``cfg``'s MODEL.META_ARCHITECTURE (or of the architecture named ``cfg``).

    Args:
        unknown_ok: for an architecture outside the table (another of detectron2's, or one a
            user registered), return its generic facts (detectron2's DatasetMapper, no
            class-count or threshold key) instead of raising.
    Raises:
        UnknownArchitectureError: the architecture is not in the table (and not ``unknown_ok``).
    """
    name = cfg if isinstance(cfg, str) else cfg.MODEL.META_ARCHITECTURE
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    if unknown_ok:
        return Architecture(name)
    raise UnknownArchitectureError(
        f"MODEL.META_ARCHITECTURE is '{name}', which this project does not know: it knows "
        f"{', '.join(sorted(ARCHITECTURES))}"
    )


def build_train_mapper(cfg: CfgNode) -> DatasetMapper:
    """
    The training mapper of cfg's architecture (BlendMask's adds the "basis_sem" target;
    detectron2's DatasetMapper for the others). Shared by the trainer and
    ``tools/visualize_data.py`` so that the pictures show what trains.
    """
    return architecture_of(cfg, unknown_ok=True).train_mapper(cfg, is_train=True)
