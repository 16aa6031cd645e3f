"""
Keys of ``train_net.py``'s training loop (checkpoints, unreadable images), shared by all models.

The keys are added under detectron2's existing nodes of the cfg passed in (detectron2's global
defaults are never modified), next to the keys they go with: SOLVER.CHECKPOINT_PERIOD,
DATALOADER.* and MODEL.*.
"""

from detectron2.config import CfgNode as CN

__all__ = ["add_training_config"]


def add_training_config(cfg):
    """Add the training-loop keys with their defaults to ``cfg`` in place, and return it."""
    # Periodic checkpoints (model_XXXXXXX.pth, every SOLVER.CHECKPOINT_PERIOD iterations) kept on
    # disk: older ones are deleted once this many newer ones exist. 0 keeps all (detectron2's
    # behaviour). model_final.pth and the checkpoint saved when training stops on an error are
    # never deleted; neither are the files of an earlier run in the same OUTPUT_DIR.
    cfg.SOLVER.CHECKPOINT_MAX_TO_KEEP = 0

    # Training images that cannot be read (truncated, not an image, missing, I/O errors) are
    # skipped: another image is taken, and each file is logged once with its image id and a
    # running count. Training stops, listing the files, when both more than TOLERATED_FILES
    # distinct files are bad and more than MAX_FRACTION of the image reads failed (0 and 0: stop
    # at the first one). See docs/datasets.md.
    cfg.DATALOADER.BAD_IMAGES = CN()
    cfg.DATALOADER.BAD_IMAGES.MAX_FRACTION = 0.01
    cfg.DATALOADER.BAD_IMAGES.TOLERATED_FILES = 10

    # Before the model is built, set the object sizes of each pyramid level from the boxes of
    # DATASETS.TRAIN at the training resize: TensorMask's MODEL.ANCHOR_GENERATOR.SIZES (scaled
    # until every object gets a positive window), BlendMask's MODEL.FCOS.SIZES_OF_INTEREST (one
    # quantile of the object sizes per level). The values used are logged and saved in
    # OUTPUT_DIR/config.yaml. tools/fit_sizes.py prints them without training.
    cfg.MODEL.FIT_SIZES_TO_DATA = False
    return cfg
