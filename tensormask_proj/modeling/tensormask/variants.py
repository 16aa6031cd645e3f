"""
Config combinations TensorMask refuses, checked when the model is built.

Each constructor validates its own arguments and names the config keys they come from (the
windows' SIZES and ASPECT_RATIOS in ``TensorMaskAnchorGenerator``, UPSCALE_FACTOR and
UPSCALE_MODE in the upscaling mask heads, NMS_BOXES against the head's branches and
TOPK_CANDIDATES_TEST in ``TensorMask``). Here are only the combinations of keys that choose
the head variant, which no constructor sees together: the official code silently mis-builds or
crashes later on them (BIPYRAMID_ON without ALIGNED_ON fails with an AttributeError). Each one
raises a ``ValueError`` naming the keys involved.
"""

__all__ = ["check_tensormask_config"]


def check_tensormask_config(cfg) -> None:
    """
    Raise ``ValueError`` if ``cfg`` combines keys into a TensorMask head that does not exist.

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
