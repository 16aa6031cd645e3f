"""SOLVER.AMP on a CPU: bfloat16 autocast for the forward pass, float32 everywhere else."""

import importlib
import unittest
from unittest import mock

import torch
from detectron2.config import get_cfg
from torch import nn

from tensormask_proj.engine import CPUAutocastTrainer, cpu_autocast, uses_cpu_autocast

# The module (the package exports a function of the same name).
cpu_autocast_module = importlib.import_module("tensormask_proj.engine.cpu_autocast")


def _cfg(amp, device="cpu"):
    cfg = get_cfg()
    cfg.SOLVER.AMP.ENABLED = amp
    cfg.MODEL.DEVICE = device
    return cfg


class _Regression(nn.Module):
    """Fits y = 3x - 1 with a linear layer; returns its loss dict, like a detectron2 model."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)
        self.forward_dtypes = []

    def forward(self, batch):
        x = torch.stack(batch)
        y = self.linear(x)
        self.forward_dtypes.append(y.dtype)
        return {"loss_l2": ((y.float() - (3 * x - 1)) ** 2).mean()}


def _native_bfloat16(available: bool):
    """Pretend this CPU has (or lacks) native bfloat16."""
    return mock.patch.object(cpu_autocast_module, "has_native_bfloat16", return_value=available)


class TestCPUAutocast(unittest.TestCase):
    def setUp(self):
        patcher = _native_bfloat16(True)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_enabled_only_for_amp_on_cpu(self):
        self.assertTrue(uses_cpu_autocast(_cfg(True, "cpu")))
        self.assertFalse(uses_cpu_autocast(_cfg(False, "cpu")))
        # On CUDA, detectron2's own AMPTrainer (float16 + GradScaler) applies.
        self.assertFalse(uses_cpu_autocast(_cfg(True, "cuda")))
        self.assertFalse(uses_cpu_autocast(_cfg(True, "cuda:1")))

    def test_float32_fallback_without_native_bfloat16(self):
        x = torch.randn(2, 3, 9, 7)
        conv = nn.Conv2d(3, 4, 3)
        with _native_bfloat16(False):
            cpu_autocast_module._warned_float32_fallback = False
            with self.assertLogs(cpu_autocast_module.logger, "WARNING") as logs:
                self.assertFalse(uses_cpu_autocast(_cfg(True, "cpu")))
            self.assertIn("no native bfloat16", logs.output[0])
            self.assertIn("running in float32", logs.output[0])
            # Warned once per process.
            with self.assertNoLogs(cpu_autocast_module.logger, "WARNING"):
                self.assertFalse(uses_cpu_autocast(_cfg(True, "cpu")))
            with cpu_autocast(_cfg(True)):
                self.assertEqual(conv(x).dtype, torch.float32)

    def test_context(self):
        x = torch.randn(2, 3, 9, 7)
        conv = nn.Conv2d(3, 4, 3)
        with cpu_autocast(_cfg(True)):
            self.assertEqual(conv(x).dtype, torch.bfloat16)
        with cpu_autocast(_cfg(False)):
            self.assertEqual(conv(x).dtype, torch.float32)

    def test_trainer_steps_under_autocast_and_keeps_float32_state(self):
        torch.manual_seed(0)
        model = _Regression()
        data = [[torch.randn(1) for _ in range(8)] for _ in range(300)]
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        trainer = CPUAutocastTrainer(model, data, optimizer)
        trainer.train(0, len(data))
        self.assertEqual(set(model.forward_dtypes), {torch.bfloat16})
        for p in model.parameters():
            self.assertEqual(p.dtype, torch.float32)
            self.assertEqual(p.grad.dtype, torch.float32)
        # Learned y = 3x - 1 to bfloat16 precision (8 bits of mantissa in the matmul).
        self.assertAlmostEqual(model.linear.weight.item(), 3.0, delta=0.05)
        self.assertAlmostEqual(model.linear.bias.item(), -1.0, delta=0.05)
        # The loss reaches detectron2's metrics (metrics.json, tensorboard) like SimpleTrainer's.
        self.assertEqual(len(trainer.storage.history("total_loss").values()), len(data))


if __name__ == "__main__":
    unittest.main()
