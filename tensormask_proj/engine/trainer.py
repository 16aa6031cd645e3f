"""
The trainer of ``train_net.py``: detectron2's :class:`DefaultTrainer` with the hooks this project
changes.

* **Loaders**: the training mapper (BlendMask's adds the "basis_sem" target; errors name the
  image file), a training loader that ``--resume`` continues exactly (same weights as an
  uninterrupted run with the same SEED) and that skips unreadable images
  (DATALOADER.BAD_IMAGES), and a test loader and COCOEvaluator that leave unreadable images out.
* **Checkpoints**: never half-written, never overwriting the last good one once training has
  diverged (a non-finite loss stops training with a message naming it), holding the optimizer,
  the data loader's position and the run's seed; training that stops on an error saves its last
  finished iteration first and logs the ``--resume`` command.
* **Devices**: SOLVER.AMP.ENABLED trains in bfloat16 on a CPU with native bfloat16 (float16
  with detectron2's AMPTrainer on CUDA), and several processes (:mod:`.launch`) wrap the model
  in DistributedDataParallel on the CPU (gloo) as on GPUs.
"""

import inspect
import logging
import os
import weakref

import torch
from detectron2.data import DatasetMapper
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, hooks
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from ..data.mapper_errors import NamedErrorMapper
from ..data.resumable_train_loader import build_resumable_train_loader
from .architectures import build_train_mapper
from .checkpoint import AtomicDetectionCheckpointer
from .cpu_autocast import CPUAutocastTrainer, cpu_autocast, requests_cpu_amp, uses_cpu_autocast
from .iteration_seed import ReseedEachIteration
from .plot_metrics import plot_metrics
from .size_fitting import warn_unassigned_objects
from .stop_checkpoint import CheckpointOnStop
from .unreadable_test_images import ReadableImagesCOCOEvaluator, build_readable_test_loader

__all__ = [
    "Trainer",
    "run_training",
    "run_evaluation",
    "inner_trainer_class",
    "wrap_for_processes",
    "check_sync_batchnorm",
]

logger = logging.getLogger(__name__)
# (train_net.py's messages keep the name of its logger.)
train_net_logger = logging.getLogger("tensormask_proj.train_net")


# Buffers (BatchNorm statistics of the COCO configs) stay per process, as in detectron2. Recent
# torch names this forward_sync_buffers and deprecates broadcast_buffers; both sync at start,
# when the buffers are equal anyway.
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


def wrap_for_processes(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """
    ``model`` in DistributedDataParallel when several processes train, else ``model``.

    As detectron2's ``create_ddp_model`` (buffers not synchronised), with ``device_ids`` only
    for a CUDA model (DDP refuses them for a CPU one). Every parameter of every shipped config
    takes part in the loss (the config tests train each one a step and check it), so
    ``find_unused_parameters`` stays off: it would cost a graph traversal per iteration and hide
    a model that silently stops training part of itself.
    """
    if comm.get_world_size() == 1:
        return model
    check_sync_batchnorm(model, device)
    device_ids = [comm.get_local_rank()] if torch.device(device).type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, **_NO_BUFFER_SYNC)


def check_sync_batchnorm(model: torch.nn.Module, device: str) -> None:
    """torch's SyncBatchNorm (detectron2's NORM "SyncBN") synchronises GPU tensors only: refuse
    it in a CPU model trained by several processes, naming the layers, before the first step."""
    if torch.device(device).type == "cuda":
        return
    layers = [n for n, m in model.named_modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    if layers:
        shown = ", ".join(layers[:3]) + (f" and {len(layers) - 3} more" if len(layers) > 3 else "")
        raise ValueError(
            f"The model has SyncBatchNorm layers ({shown}): a config NORM key is 'SyncBN', "
            "which trains on GPUs only, and this run has several processes on the CPU. Set "
            "that key to 'naiveSyncBN' (detectron2's synchronised BatchNorm for any device) "
            "or 'GN'."
        )


def inner_trainer_class(cfg):
    """The loop of one iteration: float16 AMP on CUDA, bfloat16 autocast on a CPU that has it
    (elsewhere SOLVER.AMP falls back to float32, with a warning), else float32."""
    if not cfg.SOLVER.AMP.ENABLED:
        return SimpleTrainer
    if not requests_cpu_amp(cfg):
        return AMPTrainer
    return CPUAutocastTrainer if uses_cpu_autocast(cfg) else SimpleTrainer


def has_fast_coco_eval() -> bool:
    """Whether detectron2 was built with its C++ COCOeval (the pb1 fallback install is not)."""
    from detectron2 import _C

    return hasattr(_C, "COCOevalAccumulate")


class Trainer(DefaultTrainer):
    """
    detectron2's :class:`DefaultTrainer` with the hooks this project changes (see the module
    docstring). Builds the model, optimizer and loader as DefaultTrainer does; the inner trainer
    is chosen by device and SOLVER.AMP.ENABLED, and the model is wrapped in
    DistributedDataParallel for its device (see :func:`wrap_for_processes`).
    """

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        # (DefaultTrainer's order: model, optimizer, loader; then the DDP wrapper.)
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = wrap_for_processes(model, cfg.MODEL.DEVICE)
        self._trainer = inner_trainer_class(cfg)(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicDetectionCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        with cpu_autocast(cfg):
            return super().test(cfg, model, evaluators)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        # (COCO metrics over the images read: unreadable ones are left out, and listed.)
        return ReadableImagesCOCOEvaluator(
            dataset_name, output_dir=output_folder, use_fast_impl=has_fast_coco_eval()
        )

    @classmethod
    def build_train_loader(cls, cfg):
        # (BlendMask's mapper adds the "basis_sem" target.) Errors (a bad annotation, say) name
        # the image file; an unreadable image is skipped and replaced (DATALOADER.BAD_IMAGES).
        # The loader's position and seed go into the checkpoints: --resume continues exactly.
        mapper = NamedErrorMapper(build_train_mapper(cfg))
        loader = build_resumable_train_loader(cfg, mapper)
        if comm.is_main_process():  # (TensorMask: objects that no window would learn)
            warn_unassigned_objects(cfg, loader.dataset)
        return loader

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        mapper = NamedErrorMapper(DatasetMapper(cfg, is_train=False))
        return build_readable_test_loader(cfg, dataset_name, mapper)

    def build_hooks(self):
        ret = super().build_hooks()
        max_to_keep = self.cfg.SOLVER.CHECKPOINT_MAX_TO_KEEP
        for hook in ret:
            if isinstance(hook, hooks.PeriodicCheckpointer) and max_to_keep > 0:
                hook.max_to_keep = max_to_keep
        loader = self._trainer.data_loader
        # First: the seeds before anything of the iteration runs; the save of the last finished
        # iteration before the other hooks' after_train (a final evaluation) when training fails.
        return [
            ReseedEachIteration(lambda: loader.seed),
            CheckpointOnStop(self.checkpointer, self._trainer.optimizer),
            *ret,
        ]

    # detectron2 0.6 checkpoints only the outer trainer's state (iteration, hooks), not the
    # optimizer of the inner SimpleTrainer: --resume would restart SGD momentum from zero.
    # Later detectron2 versions save it under "_trainer" the same way. The data loader's state
    # (seed, batches consumed: self.iter + 1, unreadable images) makes --resume exact.
    def state_dict(self):
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        ret["data_loader"] = self._trainer.data_loader.state_dict(self.iter + 1)
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logger.warning("The checkpoint holds no optimizer state: SGD momentum restarts at 0")
        loader = self._trainer.data_loader
        if "data_loader" in state_dict:
            loader.load_state_dict(state_dict["data_loader"])
        else:
            # (Batch k of a new stream: the loader's batches stay the iterations' numbers.)
            loader.skip_to(self.iter + 1)
            logger.warning(
                "The checkpoint records no data loader state (it predates exact resume): the "
                "data order and augmentations restart, as a new shuffled stream (data seed "
                f"{loader.seed}) from batch {loader.start_batch}; the weights, optimizer and LR "
                "schedule are restored. This run does not continue the interrupted one exactly."
            )

    def run_step(self):
        try:
            super().run_step()
        except FloatingPointError as e:
            # detectron2 raises this before the optimizer step that would have used the bad
            # loss. Freeze the checkpointer now, before the hooks' after_train runs, so that
            # nothing replaces the last good checkpoint.
            self.checkpointer.frozen = True
            last = self.checkpointer.get_checkpoint_file() or "none saved yet"
            raise FloatingPointError(
                f"{e}\nTraining stopped: the loss is not finite. The last checkpoint ({last}) "
                "is intact; lower SOLVER.BASE_LR or raise SOLVER.WARMUP_ITERS and resume with "
                "--resume."
            ) from e


def run_evaluation(cfg, resume: bool = False):
    """
    ``train_net.py --eval-only``: the model of MODEL.WEIGHTS (``resume``: of OUTPUT_DIR's last
    checkpoint, when MODEL.WEIGHTS is empty) evaluated on DATASETS.TEST as :meth:`Trainer.test`
    does; checked against TEST.EXPECTED_RESULTS when set. Returns the results (a dict).
    """
    model = Trainer.build_model(cfg)
    checkpointer = AtomicDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
    if resume and not cfg.MODEL.WEIGHTS and not checkpointer.has_checkpoint():
        raise FileNotFoundError(
            f"--eval-only --resume: no last_checkpoint in OUTPUT_DIR {cfg.OUTPUT_DIR}"
        )
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
    res = Trainer.test(cfg, model)
    if comm.is_main_process():
        verify_results(cfg, res)
    return res


def run_training(cfg, resume: bool = False):
    """
    ``train_net.py`` without ``--eval-only``: :class:`Trainer` from MODEL.WEIGHTS (``resume``:
    from OUTPUT_DIR's last checkpoint) to SOLVER.MAX_ITER; then, even when training failed,
    OUTPUT_DIR/metrics.png plots metrics.json. Returns the last evaluation's results (a dict).
    """
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=resume)
    try:
        # (DefaultTrainer.train runs verify_results itself when TEST.EXPECTED_RESULTS is set.)
        return trainer.train()
    finally:
        metrics = os.path.join(cfg.OUTPUT_DIR, "metrics.json")
        if comm.is_main_process() and os.path.isfile(metrics):
            try:
                png = plot_metrics(metrics, metrics[:-5] + ".png")
                train_net_logger.info(f"Loss/AP plot: {png}")
            except ValueError as e:  # an empty metrics.json: nothing to plot
                train_net_logger.warning(f"No plot: {e}")
