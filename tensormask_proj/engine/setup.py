"""
The config of every entry point (``train_net.py``, ``demo.py``, ``tools/*.py``,
``benchmarks/*.py``): :func:`setup_cfg` builds it the same way everywhere (detectron2's
defaults with every key of this project, the config file, the KEY VALUE overrides, then what a
script sets itself), and names the key and where it came from when one does not exist.
:func:`setup_training` is ``train_net.py``'s whole set-up around it: checks, ``--dataset``,
sizes fitted to the data, detectron2's ``default_setup`` and the log file.
"""

import difflib
import logging
from typing import Iterator, Mapping, Optional, Sequence

import detectron2.utils.comm as comm
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog
from detectron2.engine import default_setup
from detectron2.utils.logger import setup_logger

from ..config import get_project_cfg
from .architectures import architecture_of, config_value
from .command_line_datasets import log_registrations, register_command_line_datasets
from .config_checks import check_config
from .size_fitting import fit_sizes_to_data

__all__ = ["UnknownConfigKeyError", "setup_cfg", "setup_training"]

# (train_net.py's messages keep the name of its logger: "tensormask_proj.train_net".)
train_net_logger = logging.getLogger("tensormask_proj.train_net")


class UnknownConfigKeyError(KeyError, AssertionError):
    """
    A key that the config does not have, in a config file or in the KEY VALUE overrides.

    Both a KeyError (what yacs raises for a config file's key) and an AssertionError (what it
    raises for an override's), so that code written for either still catches it.
    """

    def __str__(self) -> str:  # (KeyError's own would quote the message)
        return str(self.args[0])


def _keys(node: CfgNode, prefix: str = "") -> Iterator[str]:
    """Every dotted key of ``node``, nodes and leaves."""
    for name, value in node.items():
        yield prefix + name
        if isinstance(value, CfgNode):
            yield from _keys(value, prefix + name + ".")


def _unknown_key(cfg: CfgNode, key: str, message: str) -> UnknownConfigKeyError:
    """The error of the missing ``key``: ``message``, then the closest key of ``cfg``."""
    close = difflib.get_close_matches(key, list(_keys(cfg)), n=1, cutoff=0.8)
    return UnknownConfigKeyError(message + (f"; did you mean {close[0]}?" if close else ""))


def _exists(cfg: CfgNode, key: str) -> bool:
    try:
        config_value(cfg, key)
    except (KeyError, TypeError):  # (TypeError: a part of the key below a value, not a node)
        return False
    return True


def setup_cfg(
    config_file: str,
    opts: Sequence[str] = (),
    *,
    score_threshold: Optional[float] = None,
    datasets: Optional[Mapping[str, Sequence[str]]] = None,
    freeze: bool = True,
) -> CfgNode:
    """
    The config of ``config_file`` with the overrides ``opts``: detectron2's defaults with every
    key of this project (``get_project_cfg``), the file (and the ``_BASE_`` files it names),
    ``opts``, then the settings below.

    Args:
        config_file: a config file path.
        opts: KEY VALUE pairs, as on a command line (["MODEL.DEVICE", "cpu", ...]).
        score_threshold: lower the test-time score threshold of the config's architecture to at
            most this (a demo drawing instances that score this much needs them kept).
        datasets: {"TRAIN" or "TEST": dataset names}: DATASETS.<split> replaced by the names.
        freeze: return the config frozen (False: for a script that still sets keys).
    Returns:
        The config (a CfgNode).
    Raises:
        UnknownConfigKeyError: a key of the file or of ``opts`` does not exist; the message
            names the key, where it came from, and the closest existing key.
        AssertionError: ``config_file`` does not exist, or ``opts`` has an odd length (yacs).
    """
    cfg = get_project_cfg()
    try:
        cfg.merge_from_file(config_file)
    except KeyError as e:
        prefix = "Non-existent config key: "  # (yacs' words)
        message = str(e.args[0]) if e.args else ""
        if not message.startswith(prefix):
            raise
        where = f"{message} (in {config_file} or a _BASE_ file of it)"
        raise _unknown_key(cfg, message[len(prefix) :], where) from e
    opts = list(opts)
    if len(opts) % 2 == 0:  # (an odd length: yacs says so)
        for key in opts[0::2]:
            # (A key yacs knows as deprecated or renamed gets its own yacs message.)
            known = cfg.key_is_deprecated(key) or cfg.key_is_renamed(key)
            if not known and not _exists(cfg, key):
                # The words of yacs' own assertion, then where the key came from.
                message = f"Non-existent key: {key} (in the KEY VALUE overrides)"
                raise _unknown_key(cfg, key, message)
    cfg.merge_from_list(opts)
    for split, names in (datasets or {}).items():
        if split not in ("TRAIN", "TEST"):
            raise ValueError(f"datasets: {split!r} is not a split of DATASETS (TRAIN, TEST)")
        cfg.DATASETS[split] = tuple(names)
    if score_threshold is not None:
        key = architecture_of(cfg, unknown_ok=True).score_threshold_key
        if key is not None:
            *path, last = key.split(".")
            node = config_value(cfg, ".".join(path))
            node[last] = min(node[last], score_threshold)
    if freeze:
        cfg.freeze()
    return cfg


def setup_training(args) -> CfgNode:
    """
    ``train_net.py``'s config: :func:`setup_cfg` of ``--config-file`` and the overrides, then
    checked (:func:`.config_checks.check_config`) with the ``--dataset`` datasets registered in
    this process, its sizes fitted to the training set when MODEL.FIT_SIZES_TO_DATA, and
    detectron2's ``default_setup`` (OUTPUT_DIR/config.yaml, logs, seeds) with this project's
    loggers writing to the console and OUTPUT_DIR/log.txt too.

    Args:
        args: train_net.py's parsed command line (``config_file``, ``opts``, ``eval_only``,
            ``resume``, ``dataset`` and the flags detectron2's ``default_setup`` reads).
    Returns:
        The frozen config.
    """
    cfg = setup_cfg(args.config_file, args.opts)
    if args.eval_only and not cfg.MODEL.WEIGHTS and not args.resume:
        raise ValueError(
            "--eval-only needs a trained model: set MODEL.WEIGHTS (e.g. "
            "`MODEL.WEIGHTS output/model_final.pth`), or pass --resume to evaluate the last "
            "checkpoint of OUTPUT_DIR"
        )
    # --dataset: checked (a bad annotation stops here, named) and registered in every process.
    registrations = register_command_line_datasets(args.dataset, cfg)
    check_config(cfg, eval_only=args.eval_only)
    fitted = None
    if cfg.MODEL.FIT_SIZES_TO_DATA:
        # Before default_setup, which saves the config (with the fitted sizes) to OUTPUT_DIR.
        training_set = [d for name in cfg.DATASETS.TRAIN for d in DatasetCatalog.get(name)]
        cfg, fitted = fit_sizes_to_data(cfg, training_set)
    default_setup(cfg, args)
    # default_setup logs "detectron2" and "fvcore"; this project's loggers too (console, log.txt).
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="tensormask_proj")
    log_registrations(registrations)
    if fitted:
        train_net_logger.info(fitted)
    return cfg
