"""
The exported forms of ``tensormask_proj::swap_align2nat`` and ``swap_align2nat_at``: the ONNX
decompositions into standard operators against the compiled ops, and the TorchScript
serialisation as the dispatcher ops, loaded in a fresh process with ``torch.ops.load_library``
only.
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
from tensormask_proj.export.onnx_ops import (
    swap_align2nat_at_onnx_matrix,
    swap_align2nat_onnx_weights,
)
from tensormask_proj.layers import swap_align2nat, swap_align2nat_at

# The decomposition computes the window weights in float64 and rounds them to float32, the
# kernels compute them in float32: values of |x - pad| ~ 10 then differ by a few 1e-6.
ATOL = 1e-5


class SwapAlign2Nat(nn.Module):
    def __init__(self, lambda_val: int, pad_val: float):
        super().__init__()
        self.lambda_val, self.pad_val = lambda_val, pad_val

    def forward(self, x):
        return swap_align2nat(x, self.lambda_val, self.pad_val)


class SwapAlign2NatAt(SwapAlign2Nat):
    def forward(self, x, image_ids, rows, cols):
        return swap_align2nat_at(x, image_ids, rows, cols, self.lambda_val, self.pad_val)


class BothOps(nn.Module):
    def forward(self, x, image_ids, rows, cols):
        return swap_align2nat(x, 4), swap_align2nat_at(x, image_ids, rows, cols, 2)


def _onnx_session(module: nn.Module, examples):
    register_onnx_ops()
    f = io.BytesIO()
    names = ["x", "image_ids", "rows", "cols"][: len(examples)]
    dynamic_axes = {"x": {0: "n", 2: "h", 3: "w"}}
    dynamic_axes.update({name: {0: "requests"} for name in names[1:]})
    torch.onnx.export(
        module,
        examples,
        f,
        dynamo=False,
        opset_version=ONNX_OPSET,
        input_names=names,
        dynamic_axes=dynamic_axes,
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
        # swap_align2nat_at, V = 1, lambda = 2 (Vo = 2, even: each output cell is the mean of
        # crop cells v and v + 1): the window weight 0.75 of the only window cell (its 0.25
        # neighbour is outside the window, i.e. pad), times 0.5 per crop cell.
        expected = torch.tensor([[0.375, 0.375, 0.0], [0.0, 0.375, 0.375]], dtype=torch.float64)
        self.assertTrue(torch.equal(swap_align2nat_at_onnx_matrix(1, 2), expected))

    def test_equals_the_op(self):
        # Window sides V (odd and even lambda*V: the one-row and two-row spatial cases), lambdas
        # of the bipyramid (1..8) and 3, pad values; one export per (V, lambda), then inputs of
        # other sizes: H, W not multiples of lambda, 1x1 maps, batches of 1 and 3.
        torch.manual_seed(0)
        for v, lam in itertools.product((1, 2, 3, 4), (1, 2, 3, 4, 8)):
            pad = (-6.0, 0.0, 2.5)[(v + lam) % 3]
            model, session = _onnx_session(SwapAlign2Nat(lam, pad), (torch.randn(2, v * v, 9, 7),))
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

    def test_at_equals_the_op(self):
        # As above; requests anywhere on the map, including centres outside it (windows reading
        # pad only), and no request at all.
        torch.manual_seed(0)
        for v, lam in itertools.product((1, 2, 3, 4), (1, 2, 3, 4, 8)):
            pad = (-6.0, 0.0, 2.5)[(v + lam) % 3]
            example = (torch.randn(2, v * v, 9, 7), *torch.tensor([[0, 1], [0, 4], [6, 3]]))
            model, session = _onnx_session(SwapAlign2NatAt(lam, pad), example)
            self.assertEqual({node.domain for node in model.graph.node}, {""})
            for n, h, w, k in ((2, 9, 7, 5), (1, 1, 1, 1), (3, 13, 20, 7), (1, 5, 5, 0)):
                with self.subTest(v=v, lambda_val=lam, pad=pad, shape=(n, h, w), requests=k):
                    x = torch.randn(n, v * v, h, w) * 4
                    requests = (
                        torch.randint(0, n, (k,)),
                        torch.randint(-2, h + 2, (k,)),
                        torch.randint(-2, w + 2, (k,)),
                    )
                    expected = swap_align2nat_at(x, *requests, lam, pad)
                    feed = dict(zip(("x", "image_ids", "rows", "cols"), (x, *requests)))
                    (got,) = session.run(None, {k: t.numpy() for k, t in feed.items()})
                    self.assertEqual(got.shape, tuple(expected.shape))
                    torch.testing.assert_close(torch.from_numpy(got), expected, atol=ATOL, rtol=0)


class TorchScriptOpTest(unittest.TestCase):
    def test_load_library_in_a_fresh_process(self):
        requests = tuple(torch.tensor(r) for r in ([0, 0, 1], [3, 0, 6], [2, 9, 4]))
        traced = torch.jit.trace(BothOps(), (torch.randn(2, 9, 10, 12), *requests))
        graph = str(traced.graph)
        self.assertIn("tensormask_proj::swap_align2nat(", graph)
        self.assertIn("tensormask_proj::swap_align2nat_at(", graph)
        x = torch.randn(2, 9, 7, 5, generator=torch.Generator().manual_seed(1))
        expected = BothOps()(x, *requests)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "op.ts")
            traced.save(path)
            # Without tensormask_proj: only torch and the built library.
            script = textwrap.dedent("""
                import sys, torch
                torch.ops.load_library(sys.argv[1])
                model = torch.jit.load(sys.argv[2])
                x = torch.randn(2, 9, 7, 5, generator=torch.Generator().manual_seed(1))
                requests = [torch.tensor(r) for r in ([0, 0, 1], [3, 0, 6], [2, 9, 4])]
                torch.save(model(x, *requests), sys.argv[3])
                assert "tensormask_proj" not in sys.modules, "tensormask_proj was imported"
                """)
            out = os.path.join(tmp, "out.pt")
            subprocess.run(
                [sys.executable, "-c", script, op_library_path(), path, out],
                check=True,
                cwd=tmp,
                capture_output=True,
            )
            for got, want in zip(torch.load(out), expected):
                self.assertTrue(torch.equal(got, want))


if __name__ == "__main__":
    unittest.main()
