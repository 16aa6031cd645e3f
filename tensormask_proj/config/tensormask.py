"""
TensorMask config keys (Chen et al., "TensorMask: A Foundation for Dense Object Segmentation",
ICCV 2019), with the defaults of detectron2's official ``projects/TensorMask``.

One subtree, ``MODEL.TENSOR_MASK``, is added to the cfg passed in (detectron2's global defaults are
never modified). The first block holds the official keys with their official defaults; the second
block holds this project's keys for the paper's variants and for faster inference. With the
defaults of the second block the model is the official one.

Keys read from outside the subtree: ``MODEL.MASK_ON``, ``MODEL.ANCHOR_GENERATOR.SIZES`` (window
sizes: one list per level; ``SIZES[0][a] // stride_0`` is the window side V = U of anchor a, so
one or two sizes per level give the one/two window sizes of paper Tab. 2d),
``MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS`` (must be ``[[1.0]]``), ``MODEL.PIXEL_MEAN/STD`` and
``TEST.DETECTIONS_PER_IMAGE``. ``MODEL.ANCHOR_GENERATOR.OFFSET`` is ignored: windows are centred
on the top-left corner of their feature cell (offset 0), as in the official code.
"""

from detectron2.config import CfgNode as CN

__all__ = ["add_tensormask_config"]


def add_tensormask_config(cfg):
    """
    Add the ``MODEL.TENSOR_MASK`` keys with their defaults to ``cfg`` in place, and return it.
    """
    cfg.MODEL.TENSOR_MASK = CN()

    # ---------------------------------------------------------------------------------------- #
    # Official keys (detectron2 projects/TensorMask/tensormask/config.py)
    # ---------------------------------------------------------------------------------------- #
    # Backbone outputs fed to the head, finest first (FPN levels P2..P7, i.e. k = 0..5).
    cfg.MODEL.TENSOR_MASK.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6", "p7"]
    # Conv layers (3x3 + ReLU) in each of the cls / bbox / mask towers.
    cfg.MODEL.TENSOR_MASK.NUM_CONVS = 4
    # Number of foreground classes K (sigmoid classifier, no background logit).
    cfg.MODEL.TENSOR_MASK.NUM_CLASSES = 80
    # Width of the classification tower (C = 256 in the paper).
    cfg.MODEL.TENSOR_MASK.CLS_CHANNELS = 256
    # Probability threshold applied before the top-k at inference.
    cfg.MODEL.TENSOR_MASK.SCORE_THRESH_TEST = 0.05
    # Candidates kept before NMS, taken jointly over all levels (not per level).
    cfg.MODEL.TENSOR_MASK.TOPK_CANDIDATES_TEST = 6000
    # IoU threshold of the class-wise NMS.
    cfg.MODEL.TENSOR_MASK.NMS_THRESH_TEST = 0.5
    # Width of the box tower (C = 128 in the paper).
    cfg.MODEL.TENSOR_MASK.BBOX_CHANNELS = 128
    # Weights (wx, wy, ww, wh) of the Box2BoxTransform used for the box regression targets.
    cfg.MODEL.TENSOR_MASK.BBOX_REG_WEIGHTS = (1.5, 1.5, 0.75, 0.75)
    # gamma and alpha of the classification loss FL* (RetinaNet paper, appendix).
    cfg.MODEL.TENSOR_MASK.FOCAL_LOSS_GAMMA = 3.0
    cfg.MODEL.TENSOR_MASK.FOCAL_LOSS_ALPHA = 0.3
    # Width of the mask tower and of the bipyramid's fusion conv (C = 128 in the paper).
    cfg.MODEL.TENSOR_MASK.MASK_CHANNELS = 128
    # Weight of the mask loss; each positive window contributes this times its per-pixel mean BCE.
    cfg.MODEL.TENSOR_MASK.MASK_LOSS_WEIGHT = 2.0
    # Weight of the foreground pixels in the mask BCE (pos_weight; 1.5 in the paper).
    cfg.MODEL.TENSOR_MASK.POSITIVE_WEIGHT = 1.5
    # Predict the aligned representation (paper §3.3) and convert it with swap_align2nat.
    cfg.MODEL.TENSOR_MASK.ALIGNED_ON = False
    # Tensor bipyramid head (paper §3.6, Fig. 7b, 8): the level-k windows are (2^k V) x (2^k U)
    # cells of the finest stride, produced by swap_align2nat with lambda = 2^k. Needs ALIGNED_ON.
    cfg.MODEL.TENSOR_MASK.BIPYRAMID_ON = False

    # ---------------------------------------------------------------------------------------- #
    # Variants of the paper and implementation options (this project)
    # ---------------------------------------------------------------------------------------- #
    # Upscaling factor lambda of the feature-pyramid baseline heads (paper §4.1, Fig. 6c/6d,
    # Tab. 2a/2b). 1.0 = simple head (Fig. 6a/6b): the 1x1 conv predicts the VxU window. With
    # lambda > 1 the 1x1 conv predicts a (V/lambda) x (U/lambda) window and the window axes are
    # upsampled by lambda (up_align2nat when ALIGNED_ON). V/lambda must be an integer for every
    # window size (e.g. V = 15: lambda in {1.5, 3, 5}). Not allowed with BIPYRAMID_ON.
    cfg.MODEL.TENSOR_MASK.UPSCALE_FACTOR = 1.0
    # Interpolation of the window axes when UPSCALE_FACTOR > 1: "bilinear" (aligned head, paper's
    # default) or "nearest" (the "unaligned" head of Tab. 2b, akin to InstanceFCN).
    cfg.MODEL.TENSOR_MASK.UPSCALE_MODE = "bilinear"
    # Box head (bbox tower + regression). False = mask-only TensorMask (paper §A.4, Tab. 5 row 3):
    # no box loss, and NMS_BOXES must be "mask".
    cfg.MODEL.TENSOR_MASK.BOX_HEAD_ON = True
    # Boxes used for NMS and reported as pred_boxes: "regressed" (box head, official) or "mask"
    # (bounding box of the window mask thresholded at 0.5; paper §A.4 "mask-bb", Tab. 5 rows 2-3).
    cfg.MODEL.TENSOR_MASK.NMS_BOXES = "regressed"
    # Compute natural mask windows only where they are used (training: positive windows;
    # inference: detections kept by NMS, or the pre-NMS candidates when NMS_BOXES is "mask"),
    # instead of densely at every location and level as the official code does (the aligned
    # heads through the compiled swap_align2nat_at op). Same losses, gradients and outputs; much
    # less memory and time. False = the official dense computation.
    cfg.MODEL.TENSOR_MASK.SPARSE_WINDOWS = True
    # Normalization in the cls / bbox / mask towers: "" (none, official) or a detectron2 norm name
    # such as "GN" (needed to train the head from scratch); the bipyramid's fusion conv and the
    # predictors are never normalised.
    cfg.MODEL.TENSOR_MASK.HEAD_NORM = ""
    return cfg
