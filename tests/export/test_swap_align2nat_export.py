"""
The exported forms of ``tensormask_proj::swap_align2nat``: the ONNX decomposition into standard
operators against the compiled op, and the TorchScript serialisation as the dispatcher op,
loaded in a fresh process with ``torch.ops.load_library`` only.
"""
import io
import itertools
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

import onnx
import onnxruntime
import torch
from torch import nn

from tensormask_proj.export import ONNX_OPSET, op_library_path, register_onnx_ops
from tensormask_proj.export.onnx_ops import swap_align2nat_onnx_weights
from tensormask_proj.layers import swap_align2nat

# The decomposition computes the window weights in float64 and rounds them to float32, the
# kernels compute them in float32: values of |x - pad| ~ 10 then differ by a few 1e-6.
ATOL = 1e-5


class SwapAlign2Nat(nn.Module):
    def __init__(self, lambda_val: int, pad_val: float):
        super().__init__()
        self.lambda_val, self.pad_val = lambda_val, pad_val

    def forward(self, x):
        return swap_align2nat(x, self.lambda_val, self.pad_val)


def _onnx_session(module: nn.Module, example: torch.Tensor):
    register_onnx_ops()
    f = io.BytesIO()
    torch.onnx.export(
        module, (example,), f, dynamo=False, opset_version=ONNX_OPSET, input_names=["x"],
        dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}},
    )
    return onnx.load_from_string(f.getvalue()), onnxruntime.InferenceSession(
        f.getvalue(), providers=["CPUExecutionProvider"]
    )


class OnnxDecompositionTest(unittest.TestCase):
    def test_window_weights_by_hand(self):
        # lambda = 2: output cell b = 0 samples the window at (0 + 0.5) / 2 - 0.5 = -0.25,
        # i.e. 0.25 of cell a - 1 and 0.75 of cell a; b = 1 at +0.25: 0.75 of a, 0.25 of a + 1.
        expected = torch.tensor([[0.25, 0.0], [0.75, 0.75], [0.0, 0.25]], dtype=torch.float64)
        self.assertTrue(torch.equal(swap_align2nat_onnx_weights(3, 2), expected))
        # lambda = 1: the identity (only s = 0, weight 1).
        identity = torch.tensor([[0.0], [1.0], [0.0]], dtype=torch.float64)
        self.assertTrue(torch.equal(swap_align2nat_onnx_weights(3, 1), identity))

    def test_equals_the_op(self):
        # Window sides V (odd and even lambda*V: the one-row and two-row spatial cases), lambdas
        # of the bipyramid (1..8) and 3, pad values; one export per (V, lambda), then inputs of
        # other sizes: H, W not multiples of lambda, 1x1 maps, batches of 1 and 3.
        torch.manual_seed(0)
        for v, lam in itertools.product((1, 2, 3, 4), (1, 2, 3, 4, 8)):
            pad = (-6.0, 0.0, 2.5)[(v + lam) % 3]
            model, session = _onnx_session(SwapAlign2Nat(lam, pad), torch.randn(2, v * v, 9, 7))
            # Standard operators only: no custom domain, so no runtime extension is needed.
            self.assertEqual({node.domain for node in model.graph.node}, {""})
            for n, h, w in ((2, 9, 7), (1, 1, 1), (3, 13, 20), (1, 16, 5)):
                shape = (n, v * v, h, w)
                with self.subTest(v=v, lambda_val=lam, pad=pad, shape=shape):
                    x = torch.randn(shape) * 4
                    expected = swap_align2nat(x, lam, pad)
                    (got,) = session.run(None, {"x": x.numpy()})
                    self.assertEqual(got.shape, tuple(expected.shape))
                    torch.testing.assert_close(torch.from_numpy(got), expected, atol=ATOL, rtol=0)


class TorchScriptOpTest(unittest.TestCase):
    def test_load_library_in_a_fresh_process(self):
        x = torch.randn(1, 9, 10, 12)
        traced = torch.jit.trace(SwapAlign2Nat(4, -6.0), (x,))
        self.assertIn("tensormask_proj::swap_align2nat", str(traced.graph))
        x = torch.randn(2, 9, 7, 5, generator=torch.Generator().manual_seed(1))
        expected = swap_align2nat(x, 4)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "op.ts")
            traced.save(path)
            # Without tensormask_proj: only torch and the built library.
            script = textwrap.dedent(
                """
                import sys, torch
                torch.ops.load_library(sys.argv[1])
                model = torch.jit.load(sys.argv[2])
                x = torch.randn(2, 9, 7, 5, generator=torch.Generator().manual_seed(1))
                torch.save(model(x), sys.argv[3])
                assert "tensormask_proj" not in sys.modules, "tensormask_proj was imported"
                """
            )
            out = os.path.join(tmp, "out.pt")
            subprocess.run(
                [sys.executable, "-c", script, op_library_path(), path, out],
                check=True, cwd=tmp, capture_output=True,
            )
            self.assertTrue(torch.equal(torch.load(out), expected))


if __name__ == "__main__":
    unittest.main()
