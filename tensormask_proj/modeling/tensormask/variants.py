"""
Config combinations TensorMask accepts, checked when the model is built.

The official code silently mis-builds or crashes later on several combinations (BIPYRAMID_ON
without ALIGNED_ON fails with an AttributeError; a second aspect ratio misaligns the window
predictors; window sizes that are not multiples of the stride are floored). Here each refused
combination raises a ``ValueError`` naming the keys involved.
"""

__all__ = ["check_tensormask_config"]


def check_tensormask_config(cfg) -> None:
    """
    Raise ``ValueError`` if ``cfg`` asks for a TensorMask that cannot be built.

    Args:
        cfg: a detectron2 CfgNode with the ``MODEL.TENSOR_MASK`` keys.
    """
    tm = cfg.MODEL.TENSOR_MASK
    if tm.BIPYRAMID_ON and not tm.ALIGNED_ON:
        raise ValueError(
            "MODEL.TENSOR_MASK.BIPYRAMID_ON=True requires MODEL.TENSOR_MASK.ALIGNED_ON=True: the "
            "tensor bipyramid converts aligned windows with swap_align2nat"
        )
    if tm.UPSCALE_FACTOR != 1.0 and tm.BIPYRAMID_ON:
        raise ValueError(
            "MODEL.TENSOR_MASK.UPSCALE_FACTOR (feature-pyramid upscaling heads) cannot be combined "
            "with MODEL.TENSOR_MASK.BIPYRAMID_ON=True"
        )
    if tm.UPSCALE_MODE not in ("bilinear", "nearest"):
        raise ValueError(
            "MODEL.TENSOR_MASK.UPSCALE_MODE must be 'bilinear' or 'nearest', got "
            f"{tm.UPSCALE_MODE!r}"
        )
    if tm.NMS_BOXES not in ("regressed", "mask"):
        raise ValueError(
            f"MODEL.TENSOR_MASK.NMS_BOXES must be 'regressed' or 'mask', got {tm.NMS_BOXES!r}"
        )
    if not tm.BOX_HEAD_ON and not cfg.MODEL.MASK_ON:
        raise ValueError(
            "MODEL.TENSOR_MASK.BOX_HEAD_ON=False and MODEL.MASK_ON=False leave nothing to predict"
        )
    if not tm.BOX_HEAD_ON and tm.NMS_BOXES != "mask":
        raise ValueError(
            "MODEL.TENSOR_MASK.BOX_HEAD_ON=False (mask-only TensorMask) requires "
            "MODEL.TENSOR_MASK.NMS_BOXES='mask': there are no regressed boxes"
        )
    if tm.NMS_BOXES == "mask" and not cfg.MODEL.MASK_ON:
        raise ValueError("MODEL.TENSOR_MASK.NMS_BOXES='mask' requires MODEL.MASK_ON=True")
    if tm.TOPK_CANDIDATES_TEST < 1:
        raise ValueError(
            f"MODEL.TENSOR_MASK.TOPK_CANDIDATES_TEST must be >= 1, got {tm.TOPK_CANDIDATES_TEST}"
        )

    ratios = cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS
    if any(list(r) != [1.0] for r in ratios):
        raise ValueError(
            f"MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS must be [[1.0]] for TensorMask (square windows, "
            f"one per size), got {ratios}"
        )
    sizes = cfg.MODEL.ANCHOR_GENERATOR.SIZES
    num_levels = len(tm.IN_FEATURES)
    if len(sizes) != num_levels:
        raise ValueError(
            f"MODEL.ANCHOR_GENERATOR.SIZES must give one list of window sizes per level of "
            f"MODEL.TENSOR_MASK.IN_FEATURES ({num_levels}), got {len(sizes)}: {sizes}"
        )
    # Every level's windows are the finest level's scaled by the stride ratio (2^l): the window
    # of level l is then S cells of its stride (or 2^l S cells of the finest stride), exactly.
    for level, level_sizes in enumerate(sizes):
        expected = [s * 2**level for s in sizes[0]]
        if [float(s) for s in level_sizes] != [float(s) for s in expected]:
            raise ValueError(
                f"MODEL.ANCHOR_GENERATOR.SIZES[{level}] = {list(level_sizes)} must be "
                f"SIZES[0] * 2^{level} = {expected} (window sizes per level scale with the stride)"
            )
