"""
``--dataset``: the one command-line form, shared by ``train_net.py``, ``demo.py``, ``tools/*.py``
and ``benchmarks/*.py``, that chooses or registers a dataset:

* ``--dataset NAME JSON IMAGE_DIR`` registers a COCO-format instances dataset under NAME, after
  the project's checks (:func:`~tensormask_proj.data.coco_datasets.register_coco_dataset`);
* ``--dataset NAME`` names a dataset that is already registered (detectron2's built-in ones such
  as ``coco_2017_val`` and this project's ``shapes_train``, ``microcontroller_val``, ...).

Repeatable. A script that works on one dataset uses the last ``--dataset`` given
(:func:`chosen_dataset`), else the dataset its config names. In a script whose config overrides
(``KEY VALUE ...``) follow the options, the overrides may come right after a ``--dataset``: the
first word that is a config key (``DATASETS.TRAIN``, ``SEED``, ...) ends its values.

Why a flag and not config keys: in detectron2 a config names datasets (DATASETS.TRAIN) and code
registers them (``register_coco_instances`` in ``builtin.py`` or a user's script); the flag is the
command-line form of that call. Paths stay out of the config, so a config (and the config.yaml
that training saves) stays portable between machines and loads in plain detectron2, which would
reject keys it does not know.
"""

import argparse
import difflib
import logging
import os
import re
from typing import List, NamedTuple, Optional, Sequence, Tuple

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog

from ..config import get_project_cfg
from ..data.coco_checks import CocoCheck
from ..data.coco_datasets import describe_registration, register_coco_dataset
from ..data.datasets import MICROCONTROLLER_SPLITS, SHAPES_SPLITS, prepare_dataset

__all__ = [
    "DatasetSpec",
    "ConfigKeyEndsList",
    "add_dataset_argument",
    "config_opts_may_follow_lists",
    "register_command_line_datasets",
    "log_registrations",
    "chosen_dataset",
    "dataset_files",
]

logger = logging.getLogger(__name__)

DATASET_HELP = (
    "NAME JSON IMAGE_DIR: register a COCO-format instances dataset (checked first) under NAME; "
    "NAME alone: a dataset already registered (built-in, e.g. shapes_val or coco_2017_val)"
)
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*$")
_PENDING_OPTS = "_config_opts_after_a_list"  # (namespace attribute)
_OPTS_DEST = "_config_opts_dest"  # (parser attribute)


class DatasetSpec(NamedTuple):
    """One ``--dataset``: ``name`` with ``json_file`` and ``image_root`` (it registers), or
    ``name`` alone (json_file and image_root None: a registered dataset)."""

    name: str
    json_file: Optional[str] = None
    image_root: Optional[str] = None

    @property
    def registers(self) -> bool:
        return self.json_file is not None

    def __str__(self) -> str:
        return " ".join(v for v in self if v is not None)


def _is_config_key(word: str) -> bool:
    """Whether ``word`` is a config key of the project's cfg (``MODEL.WEIGHTS``, ``SEED`` ...),
    i.e. the start of the ``KEY VALUE`` overrides rather than a --dataset value."""
    if not _KEY.match(word):
        return False
    return word.split(".")[0] in _top_level_keys()


def _top_level_keys():
    if not hasattr(_top_level_keys, "keys"):
        _top_level_keys.keys = frozenset(get_project_cfg().keys())
    return _top_level_keys.keys


class ConfigKeyEndsList(argparse.Action):
    """
    The action of a list-valued option (``nargs="+"``) of a parser whose config overrides
    (``KEY VALUE ...``, a positional ``opts``) end the command line: the option's values end at
    the first config key, which starts the overrides, so that ``--seeds 0 1 SEED_KEY VALUE``
    reads as the shell user means. argparse checks types and choices before an action sees the
    values, so this action does it: ``item_type`` (callable), ``item_choices``. ``append``:
    each use of the option adds its list to a list of lists.
    """

    def __init__(
        self, option_strings, dest, nargs="+", item_type=None, item_choices=None,
        append=False, **kwargs,
    ):  # fmt: skip
        super().__init__(option_strings, dest, nargs="+", **kwargs)
        self.item_type, self.item_choices, self.append = item_type, item_choices, append

    def split_values(self, parser, namespace, values, option_string) -> List[str]:
        """``values`` up to the first config key; the rest is kept for the overrides."""
        values = list(values)
        cut = next((i for i, v in enumerate(values) if i > 0 and _is_config_key(v)), len(values))
        values, overrides = values[:cut], values[cut:]
        if overrides:
            if not getattr(parser, _OPTS_DEST, None):
                parser.error(f"argument {option_string}: unexpected {' '.join(overrides)}")
            pending = getattr(namespace, _PENDING_OPTS, [])
            setattr(namespace, _PENDING_OPTS, pending + overrides)
        return values

    def __call__(self, parser, namespace, values, option_string=None):
        values = self.split_values(parser, namespace, values, option_string)
        if self.item_choices is not None:
            for value in values:
                if value not in self.item_choices:
                    parser.error(
                        f"argument {option_string}: invalid choice: {value!r} (choose from "
                        f"{', '.join(map(str, self.item_choices))})"
                    )
        if self.item_type is not None:
            try:
                values = [self.item_type(v) for v in values]
            except ValueError:
                name = getattr(self.item_type, "__name__", "")
                parser.error(f"argument {option_string}: invalid {name} value in {values}")
        if self.append:
            values = list(getattr(namespace, self.dest, None) or []) + [values]
        setattr(namespace, self.dest, values)


class _DatasetAction(ConfigKeyEndsList):
    """Appends a DatasetSpec of one or three values."""

    def __call__(self, parser, namespace, values, option_string=None):
        values = self.split_values(parser, namespace, values, option_string)
        if len(values) not in (1, 3):
            parser.error(
                f"argument {option_string}: expected NAME (a registered dataset) or NAME JSON "
                f"IMAGE_DIR (a COCO dataset to register), got {len(values)} values: "
                f"{' '.join(values)}"
            )
        specs = list(getattr(namespace, self.dest, None) or [])
        specs.append(DatasetSpec(*values))
        setattr(namespace, self.dest, specs)


class _ConfigOptsAction(argparse._StoreAction):
    """The positional ``opts`` (KEY VALUE ...), preceded by the overrides that followed a
    list-valued option (argparse gives them to that option)."""

    def __call__(self, parser, namespace, values, option_string=None):
        pending = getattr(namespace, _PENDING_OPTS, [])
        if hasattr(namespace, _PENDING_OPTS):
            delattr(namespace, _PENDING_OPTS)
        super().__call__(parser, namespace, pending + list(values or []), option_string)


def config_opts_may_follow_lists(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Let the config overrides of ``parser`` (its positional ``opts``, added before this call)
    follow the values of a ``--dataset`` or of a :class:`ConfigKeyEndsList` option."""
    for action in parser._actions:
        if action.dest == "opts" and not action.option_strings:
            # Python allows this: the subclass only adds to how the values are stored.
            action.__class__ = _ConfigOptsAction
            setattr(parser, _OPTS_DEST, action.dest)
    return parser


def add_dataset_argument(
    parser: argparse.ArgumentParser, help: Optional[str] = None, required: bool = False
) -> argparse.ArgumentParser:
    """
    Add ``--dataset NAME [JSON IMAGE_DIR]`` (repeatable; ``args.dataset``: a list of
    :class:`DatasetSpec`, empty when not given) to ``parser``. When ``parser`` has a positional
    ``opts`` (config overrides, ``nargs=argparse.REMAINDER``, added before this call), the
    overrides may directly follow a ``--dataset`` (:func:`config_opts_may_follow_lists`).
    ``help`` (optional) is appended to the common help text: what the script does with the
    datasets. ``required``: at least one --dataset must be given.
    """
    config_opts_may_follow_lists(parser)
    if not issubclass(parser.formatter_class, _DatasetUsage):
        parser.formatter_class = type(
            "DatasetUsage" + parser.formatter_class.__name__,
            (_DatasetUsage, parser.formatter_class),
            {},
        )
    parser.add_argument(
        "--dataset",
        nargs="+",
        action=_DatasetAction,
        default=[],
        required=required,
        metavar="NAME",
        help=DATASET_HELP + (f". {help}" if help else "") + "; repeatable",
    )
    return parser


class _DatasetUsage(argparse.HelpFormatter):
    """Shows ``--dataset NAME [JSON IMAGE_DIR]`` (argparse would write ``NAME [NAME ...]``)."""

    def _format_args(self, action, default_metavar):
        if isinstance(action, _DatasetAction):
            return "NAME [JSON IMAGE_DIR]"
        return super()._format_args(action, default_metavar)


def _as_spec(spec) -> DatasetSpec:
    if isinstance(spec, DatasetSpec):
        return spec
    if isinstance(spec, str):
        return DatasetSpec(spec)
    if len(spec) not in (1, 3):
        raise ValueError(f"--dataset {' '.join(spec)}: expected NAME or NAME JSON IMAGE_DIR")
    return DatasetSpec(*spec)


def _unknown_dataset(name: str) -> ValueError:
    registered = DatasetCatalog.list()
    close = difflib.get_close_matches(name, registered, n=3)
    ours = [*SHAPES_SPLITS, *MICROCONTROLLER_SPLITS]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ValueError(
        f"--dataset {name}: no dataset named '{name}' is registered.{hint} Give "
        f"--dataset {name} JSON IMAGE_DIR to register a COCO-format dataset, or a registered "
        f"name: this project's {', '.join(ours)}, or one of the {len(registered) - len(ours)} "
        "others (detectron2's coco_2017_train, coco_2017_val, ...)"
    )


def register_command_line_datasets(
    specs: Sequence, cfg: CfgNode, cache_dir: Optional[str] = None
) -> List[Tuple[str, CocoCheck]]:
    """
    Register each ``--dataset NAME JSON IMAGE_DIR`` of ``specs`` (DatasetSpec or sequences of
    1 or 3 strings) with :func:`register_coco_dataset`; check that each ``--dataset NAME`` is a
    registered dataset.

    Args:
        cfg: the merged config: its INPUT.MASK_FORMAT decides whether RLE masks are an error
            (when MODEL.MASK_ON); checked jsons go to ``cache_dir`` (default
            OUTPUT_DIR/checked_datasets).

    Returns:
        [(name, CocoCheck)] of the datasets registered, in order, for :func:`log_registrations`.

    Raises:
        ValueError: a NAME that is not registered (with the names it may have meant), or a
            NAME JSON IMAGE_DIR whose NAME is already registered.
        FileNotFoundError: JSON or IMAGE_DIR does not exist (the message names the dataset).
        CocoDatasetError: the annotations are wrong (naming the file, image and annotation).
    """
    mask_format = cfg.INPUT.MASK_FORMAT if cfg.MODEL.MASK_ON else None
    cache_dir = cache_dir or os.path.join(cfg.OUTPUT_DIR, "checked_datasets")
    registrations = []
    for spec in map(_as_spec, specs):
        if not spec.registers:
            if spec.name not in DatasetCatalog.list():
                raise _unknown_dataset(spec.name)
            continue
        try:
            check = register_coco_dataset(
                spec.name, spec.json_file, spec.image_root, cache_dir, mask_format
            )
        except FileNotFoundError as e:
            raise FileNotFoundError(f"--dataset {spec}: {e}") from e
        registrations.append((spec.name, check))
    return registrations


def chosen_dataset(specs: Sequence, default: Optional[str]) -> Optional[str]:
    """The dataset a one-dataset script works on: the NAME of the last ``--dataset``, else
    ``default`` (the one its config names)."""
    return _as_spec(specs[-1]).name if specs else default


def dataset_files(name: str) -> Tuple[str, str]:
    """(json file, image folder) of the registered COCO-format dataset ``name``, from its
    metadata (an embedded shapes dataset is generated first if needed)."""
    if name not in DatasetCatalog.list():
        raise _unknown_dataset(name)
    try:
        prepare_dataset(name, progress=False)  # an embedded shapes dataset: generated if needed
    except KeyError:
        pass  # not a shapes dataset
    metadata = MetadataCatalog.get(name)
    json_file, image_root = metadata.get("json_file"), metadata.get("image_root")
    if not json_file or not image_root:
        raise ValueError(
            f"--dataset {name}: not a COCO-format json dataset (its metadata has no json_file "
            "and image_root); give --dataset NAME JSON IMAGE_DIR"
        )
    for path, what in ((json_file, "annotations"), (image_root, "image folder")):
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"--dataset {name}: {what} not found at {path}. Set DETECTRON2_DATASETS to the "
                "folder holding the datasets"
            )
    return json_file, image_root


def log_registrations(registrations: Sequence[Tuple[str, CocoCheck]]) -> None:
    """Log what was registered; skips and fixes as warnings, with their counts."""
    for name, check in registrations:
        log = logger.warning if check.changed else logger.info
        log(describe_registration(name, check))
