"""
BlendMask config keys (Chen et al., "BlendMask: Top-Down Meets Bottom-Up for Instance
Segmentation", CVPR 2020), with the defaults of the reference implementation (AdelaiDet).

Three subtrees are added:

* ``MODEL.FCOS``: the FCOS detector, BlendMask's dense head (AdelaiDet's "proposal generator");
* ``MODEL.BASIS_MODULE``: the bottom module predicting the K bases (paper symbol K);
* ``MODEL.BLENDMASK``: the top-layer attentions (M) and the blender (R).

Unlike AdelaiDet, which edits detectron2's global ``_C``, the keys are added to the cfg passed in.
"""

from detectron2.config import CfgNode as CN

__all__ = ["add_blendmask_config"]


def add_blendmask_config(cfg):
    """
    Add the BlendMask keys (``MODEL.FCOS``, ``MODEL.BASIS_MODULE``, ``MODEL.BLENDMASK``) with their
    defaults to ``cfg`` in place, and return it.
    """
    # ---------------------------------------------------------------------------------------- #
    # FCOS detector. BlendMask builds it directly: MODEL.PROPOSAL_GENERATOR.NAME ("FCOS" in
    # AdelaiDet's configs, which registered FCOS as a proposal generator) is not read.
    # ---------------------------------------------------------------------------------------- #
    cfg.MODEL.FCOS = CN()
    # Number of foreground classes C; the background label is C.
    cfg.MODEL.FCOS.NUM_CLASSES = 80
    # FPN levels fed to the head, from the finest to the coarsest.
    cfg.MODEL.FCOS.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    # Stride s_l of each level in IN_FEATURES (locations, target normalisation, box decoding,
    # centre-sampling radius). Must match the backbone's strides.
    cfg.MODEL.FCOS.FPN_STRIDES = [8, 16, 32, 64, 128]
    # Prior probability pi of the classification init: cls bias = -log((1 - pi) / pi).
    cfg.MODEL.FCOS.PRIOR_PROB = 0.01
    # Pre-NMS score threshold. The *_TRAIN values here and below apply to detections made in
    # training mode, which BlendMask never makes (AdelaiDet's YIELD_PROPOSAL did).
    cfg.MODEL.FCOS.INFERENCE_TH_TRAIN = 0.05
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.05
    # Class-aware NMS IoU threshold.
    cfg.MODEL.FCOS.NMS_TH = 0.6
    # Candidates kept per level and per image after the score threshold, before NMS.
    cfg.MODEL.FCOS.PRE_NMS_TOPK_TRAIN = 1000
    cfg.MODEL.FCOS.PRE_NMS_TOPK_TEST = 1000
    # Detections kept per image after NMS.
    cfg.MODEL.FCOS.POST_NMS_TOPK_TRAIN = 100
    cfg.MODEL.FCOS.POST_NMS_TOPK_TEST = 100
    # Read by the backbone builder: 2 -> P6 and P7 from P5; 1 -> P6 only; 0 -> no extra level.
    cfg.MODEL.FCOS.TOP_LEVELS = 2
    # Norm in the head towers: "GN" (GroupNorm, 32 groups), "NaiveGN" (the same computed with
    # plain tensor ops, for export), "BN" / "SyncBN" (one BatchNorm per FPN level), "none".
    cfg.MODEL.FCOS.NORM = "GN"
    # Learnable per-level scalar on the box regression (every BlendMask config sets False).
    cfg.MODEL.FCOS.USE_SCALE = True
    # What the box quality branch learns, which multiplies the class scores at inference:
    # "ctrness" (FCOS centerness, loss "loss_fcos_ctr", IoU loss weighted by the centerness
    # targets) or "iou" (the IoU of the location's predicted box with its object's box, loss
    # "loss_fcos_iou", IoU loss unweighted; AdelaiDet's option). With "iou" the blender still
    # weights its mask loss by the centerness targets (AdelaiDet's BlendMask cannot train with
    # "iou"). The branch keeps its parameter names ("ctrness"), so checkpoints load either way.
    # From scratch on the BlendMask quick config (shapes, SEED 0) "iou" gave mask AP 47.8
    # against 62.5, box AP 41.7 against 60.3 (docs/tuning.md).
    cfg.MODEL.FCOS.BOX_QUALITY = "ctrness"
    # True: multiply class probabilities by centerness *before* the score threshold.
    cfg.MODEL.FCOS.THRESH_WITH_CTR = False
    # True: at inference a location yields only its highest-scoring class (this project's key;
    # AdelaiDet, False: every class above the score threshold, so a location can give an object
    # two labels, and class-aware NMS keeps both).
    cfg.MODEL.FCOS.ONE_CLASS_PER_LOCATION = False
    # Sigmoid focal loss alpha and gamma.
    cfg.MODEL.FCOS.LOSS_ALPHA = 0.25
    cfg.MODEL.FCOS.LOSS_GAMMA = 2.0
    # Classification loss normaliser: "fg" (number of positives), "moving_fg" (EMA of it,
    # momentum 0.9, initial value 100) or "all" (number of locations).
    cfg.MODEL.FCOS.LOSS_NORMALIZER_CLS = "fg"
    cfg.MODEL.FCOS.LOSS_WEIGHT_CLS = 1.0
    # Object-size boundaries between levels: level l is responsible for gt boxes whose largest
    # location-to-side distance lies in [SIZES[l-1], SIZES[l]] (both ends inclusive; -1 and 1e8
    # close the first and last ranges). One entry fewer than IN_FEATURES.
    cfg.MODEL.FCOS.SIZES_OF_INTEREST = [64, 128, 256, 512]
    # Kept for AdelaiDet config compatibility; the regression output always goes through a ReLU.
    cfg.MODEL.FCOS.USE_RELU = True
    # Deformable last tower conv in AdelaiDet; not supported here (refused when building).
    cfg.MODEL.FCOS.USE_DEFORMABLE = False
    # Tower depths. The shared tower runs first; the cls and box towers follow it.
    cfg.MODEL.FCOS.NUM_CLS_CONVS = 4
    cfg.MODEL.FCOS.NUM_BOX_CONVS = 4
    cfg.MODEL.FCOS.NUM_SHARE_CONVS = 0
    # Centre sampling: a location is positive only within POS_RADIUS strides of the box centre.
    cfg.MODEL.FCOS.CENTER_SAMPLE = True
    cfg.MODEL.FCOS.POS_RADIUS = 1.5
    # Box loss: "iou" (-log IoU), "linear_iou" (1 - IoU) or "giou" (1 - GIoU).
    cfg.MODEL.FCOS.LOC_LOSS_TYPE = "giou"
    # Kept for AdelaiDet config compatibility: AdelaiDet's FCOS then also returned detections
    # in training, which its BlendMask did not use; BlendMask does not make them.
    cfg.MODEL.FCOS.YIELD_PROPOSAL = False
    # Kept for AdelaiDet config compatibility: the box-tower features are always returned
    # (BlendMask's top layer reads them).
    cfg.MODEL.FCOS.YIELD_BOX_FEATURES = False

    # ---------------------------------------------------------------------------------------- #
    # Basis ("bottom") module
    # ---------------------------------------------------------------------------------------- #
    cfg.MODEL.BASIS_MODULE = CN()
    # Name in BASIS_MODULE_REGISTRY.
    cfg.MODEL.BASIS_MODULE.NAME = "ProtoNet"
    # K, the number of bases.
    cfg.MODEL.BASIS_MODULE.NUM_BASES = 4
    # Auxiliary thing-semantic loss on the first input feature. When True, training inputs
    # must carry "basis_sem" (the project's BlendMaskDatasetMapper computes it).
    cfg.MODEL.BASIS_MODULE.LOSS_ON = False
    # AdelaiDet located pre-computed semantic .npz files with it. Unused here: the semantic
    # target is rasterised from the instance annotations on the fly. Kept for compatibility.
    cfg.MODEL.BASIS_MODULE.ANN_SET = "coco"
    # Channel width of the refine convs, the tower and the semantic head.
    cfg.MODEL.BASIS_MODULE.CONVS_DIM = 128
    # FPN inputs; the first one sets the working resolution, the bases are at half its stride.
    cfg.MODEL.BASIS_MODULE.IN_FEATURES = ["p3", "p4", "p5"]
    # Norm of the refine and tower convs (detectron2 get_norm name, "" for none).
    cfg.MODEL.BASIS_MODULE.NORM = "SyncBN"
    # Tower convs before the x2 upsampling.
    cfg.MODEL.BASIS_MODULE.NUM_CONVS = 3
    # Stride of IN_FEATURES[0] (checked against the backbone).
    cfg.MODEL.BASIS_MODULE.COMMON_STRIDE = 8
    # Backbone feature the auxiliary semantic head reads; "" means IN_FEATURES[0] (AdelaiDet).
    # Not in AdelaiDet: with the bases built from p2, the head on "p3" keeps its class supervision
    # on the level where FCOS classifies the small objects.
    cfg.MODEL.BASIS_MODULE.SEMANTIC_IN_FEATURE = ""
    # Thing classes of the semantic head (it predicts NUM_CLASSES + 1, 0 = background).
    cfg.MODEL.BASIS_MODULE.NUM_CLASSES = 80
    # Weight of the auxiliary semantic loss.
    cfg.MODEL.BASIS_MODULE.LOSS_WEIGHT = 0.3

    # ---------------------------------------------------------------------------------------- #
    # Top layer and blender
    # ---------------------------------------------------------------------------------------- #
    cfg.MODEL.BLENDMASK = CN()
    # M: side of each basis' attention map; the top layer predicts K*M*M channels per location.
    cfg.MODEL.BLENDMASK.ATTN_SIZE = 14
    # F.interpolate mode used to upsample the attentions from M x M to R x R.
    cfg.MODEL.BLENDMASK.TOP_INTERP = "bilinear"
    # R: side of the RoI cropped from the bases (= mask target and predicted mask size).
    cfg.MODEL.BLENDMASK.BOTTOM_RESOLUTION = 56
    # detectron2 ROIPooler type used to crop the bases.
    cfg.MODEL.BLENDMASK.POOLER_TYPE = "ROIAlignV2"
    cfg.MODEL.BLENDMASK.POOLER_SAMPLING_RATIO = 1
    # 1 / stride of the bases (a single level).
    cfg.MODEL.BLENDMASK.POOLER_SCALES = (0.25,)
    # Multiplies the blender's mask loss only.
    cfg.MODEL.BLENDMASK.INSTANCE_LOSS_WEIGHT = 1.0
    # The boxes that crop the bases and the mask targets in training: "gt" (AdelaiDet: every
    # positive location of an object uses the object's box) or "predicted" (each location's own
    # predicted box, detached, where it overlaps the object's box by IoU >= 0.5; the object's box
    # elsewhere), so that the blender trains on boxes like those it is given at inference.
    cfg.MODEL.BLENDMASK.TRAIN_BOXES = "gt"
    # At inference, multiply each detection's score by its mask's "maskness" (SOLOv2): the mean
    # probability over the mask's pixels above 0.5, so that among detections of equal FCOS score
    # the one with the surer mask ranks first. False keeps AdelaiDet's scores (FCOS's alone).
    cfg.MODEL.BLENDMASK.RESCORE_BY_MASKNESS = False
    # The blender crops the bases (and, in training, the mask targets) with each box scaled by
    # this factor about its centre and clipped to the image, and pastes the mask into that crop,
    # so that a mask can reach beyond a box that cut its object short. 1 (AdelaiDet): the crop is
    # the box. Must be >= 1. 1.2 on the BlendMask quick config (shapes, SEED 0, bfloat16): mask
    # AP 58.4 against 60.2 at 1.0, box AP 52.7 against 57.1 (docs/tuning.md).
    cfg.MODEL.BLENDMASK.CROP_SCALE = 1.0
    # Eval outputs also carry the raw "bases" (and "sem_thing_seg" when LOSS_ON).
    cfg.MODEL.BLENDMASK.VISUALIZE = False
    return cfg
