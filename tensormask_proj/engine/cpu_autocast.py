"""
Mixed precision on the CPU: ``SOLVER.AMP.ENABLED`` with ``MODEL.DEVICE: cpu`` trains and evaluates
under ``torch.autocast("cpu", dtype=torch.bfloat16)`` where the CPU computes bfloat16 natively.

detectron2's AMPTrainer is CUDA-only (float16 autocast and a GradScaler). On a CPU, bfloat16 is
the autocast type: convolutions and matrix products run in bfloat16 (natively on CPUs with
AVX512-BF16/AMX; 1.3-1.6x faster than float32 for the quick configs, measured with
benchmarks/train_step.py), everything else in float32, and bfloat16 has float32's exponent
range, so no loss scaling is needed. Parameters, gradients, optimizer state and checkpoints stay
float32, so a model trained this way loads and runs in float32 anywhere.

On a CPU without native bfloat16 (e.g. AVX2 only), oneDNN emulates it and autocast is an order
of magnitude slower than float32: BlendMask's quick config took 16.0 s per iteration against
1.15 s in float32 on a 2-core AVX2 AMD EPYC (``benchmarks/train_step.py`` with and without
``--amp``). There ``SOLVER.AMP.ENABLED`` falls back to float32, with a warning in the log.
"""

import contextlib
import logging
import time

import torch
from detectron2.config import CfgNode
from detectron2.engine import SimpleTrainer

__all__ = [
    "requests_cpu_amp",
    "uses_cpu_autocast",
    "has_native_bfloat16",
    "cpu_autocast",
    "CPUAutocastTrainer",
]

logger = logging.getLogger(__name__)
_warned_float32_fallback = False


def requests_cpu_amp(cfg: CfgNode) -> bool:
    """Whether ``cfg`` asks for mixed precision (SOLVER.AMP.ENABLED) on a CPU device."""
    return bool(cfg.SOLVER.AMP.ENABLED) and torch.device(cfg.MODEL.DEVICE).type == "cpu"


def uses_cpu_autocast(cfg: CfgNode) -> bool:
    """
    Whether ``cfg`` trains and evaluates under bfloat16 CPU autocast: SOLVER.AMP.ENABLED on a CPU
    device whose CPU has native bfloat16. Without it (see the module docstring) the answer is
    False, so the run is in float32, and the log says so once.
    """
    if not requests_cpu_amp(cfg):
        return False
    if has_native_bfloat16():
        return True
    global _warned_float32_fallback
    if not _warned_float32_fallback:
        _warned_float32_fallback = True
        logger.warning(
            "SOLVER.AMP.ENABLED is True but this CPU has no native bfloat16 (AVX512-BF16 or "
            "AMX): running in float32, since emulated bfloat16 autocast is about 14x slower "
            "here. Results differ slightly from a bfloat16 run with the same SEED."
        )
    return False


def has_native_bfloat16() -> bool:
    """Whether oneDNN computes bfloat16 natively on this CPU (AVX512-BF16 or AMX)."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def cpu_autocast(cfg: CfgNode):
    """A bfloat16 CPU autocast context if ``uses_cpu_autocast(cfg)``, else a no-op context."""
    if not uses_cpu_autocast(cfg):
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


class CPUAutocastTrainer(SimpleTrainer):
    """
    :class:`SimpleTrainer` whose forward pass (model and losses) runs under bfloat16 CPU
    autocast; the backward pass and the optimizer step run outside it, as autocast recommends.
    """

    def run_step(self):
        assert self.model.training, "[CPUAutocastTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss_dict = self.model(data)
            if isinstance(loss_dict, torch.Tensor):
                losses = loss_dict
                loss_dict = {"total_loss": loss_dict}
            else:
                losses = sum(loss_dict.values())

        self.optimizer.zero_grad()
        losses.backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()
