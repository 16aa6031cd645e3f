"""Tests of tensormask_proj.modeling.blendmask (BlendMask on FCOS)."""
