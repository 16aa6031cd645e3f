"""
State-dict compatibility with the official TensorMask: names, shapes and order equal the listings
of the official models (fixtures copied from the spec), and detectron2-format checkpoints (.pth
and .pkl) load with DetectionCheckpointer, stale entries included.
"""

import json
import os
import pickle
import tempfile
import unittest

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from .tensormask_testing import FIXTURE_DIR, OFFICIAL_CONFIG, tensormask_cfg

OFFICIAL_6X = os.path.join(os.path.dirname(OFFICIAL_CONFIG), "tensormask_R_50_FPN_6x.yaml")
# Entries that older/official checkpoints may contain but that are not in the state_dict.
STALE = {"pixel_mean": (3, 1, 1), "pixel_std": (3, 1, 1)}
STALE.update({f"anchor_generator.cell_anchors.{i}": (2, 4) for i in range(6)})


def load_listing(name):
    with open(os.path.join(FIXTURE_DIR, f"tensormask_state_dict_{name}.json")) as f:
        return json.load(f)


def build_official(config=OFFICIAL_CONFIG, opts=()):
    torch.manual_seed(0)
    return build_model(tensormask_cfg(config, opts))


class TestStateDictListing(unittest.TestCase):
    CASES = [
        ("R50_FPN_1x", OFFICIAL_CONFIG, []),
        ("R50_FPN_1x", OFFICIAL_6X, []),
        (
            "R50_FPN_1x_aligned_nobipyramid",
            OFFICIAL_CONFIG,
            ["MODEL.TENSOR_MASK.BIPYRAMID_ON", False],
        ),
        (
            "R50_FPN_1x_natural",
            OFFICIAL_CONFIG,
            ["MODEL.TENSOR_MASK.BIPYRAMID_ON", False, "MODEL.TENSOR_MASK.ALIGNED_ON", False],
        ),
    ]

    def test_names_shapes_order_and_counts(self):
        for name, config, opts in self.CASES:
            with self.subTest(listing=name, config=os.path.basename(config)):
                listing = load_listing(name)
                model = build_official(config, opts)
                state = model.state_dict()
                self.assertEqual(
                    [(k, list(v.shape)) for k, v in state.items()],
                    [(e["name"], e["shape"]) for e in listing["state_dict"]],
                )
                self.assertEqual(len(state), listing["num_entries"])
                params = list(model.parameters())
                self.assertEqual(sum(p.numel() for p in params), listing["num_parameters_total"])
                self.assertEqual(
                    sum(p.numel() for p in params if p.requires_grad),
                    listing["num_parameters_requires_grad_at_build"],
                )
                for stale in listing["non_persistent_buffers_not_in_state_dict"]:
                    self.assertNotIn(stale, state)
                for module in listing["head_modules_without_state"]:
                    self.assertTrue(hasattr(model.head, module), module)


class TestCheckpointLoading(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.listing = load_listing("R50_FPN_1x")
        g = np.random.default_rng(0)
        cls.weights = {
            e["name"]: g.standard_normal(e["shape"]).astype(np.float32)
            for e in cls.listing["state_dict"]
        }
        cls.stale = {k: g.standard_normal(s).astype(np.float32) for k, s in STALE.items()}

    def _load(self, path):
        model = build_official()
        checkpointer = DetectionCheckpointer(model)
        incompatible = checkpointer._load_model(checkpointer._load_file(path))
        return model, incompatible

    def _check(self, model, incompatible):
        self.assertEqual(incompatible.missing_keys, [])
        self.assertEqual(incompatible.unexpected_keys, [])
        self.assertEqual(incompatible.incorrect_shapes, [])
        state = model.state_dict()
        for name, value in self.weights.items():
            self.assertTrue(np.array_equal(state[name].numpy(), value), name)
        # The normalisation constants come from the config, not from the stale entries.
        self.assertEqual(model.pixel_std.flatten().tolist(), [1.0, 1.0, 1.0])

    def test_pth_with_stale_entries(self):
        checkpoint = {k: torch.from_numpy(v) for k, v in {**self.weights, **self.stale}.items()}
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "model_final.pth")
            torch.save({"model": checkpoint, "iteration": 90000}, path)
            self._check(*self._load(path))

    def test_detectron2_pkl_with_stale_entries(self):
        # detectron2 model-zoo format: {"model": {name: ndarray}, "__author__": ...}.
        data = {"model": {**self.weights, **self.stale}, "__author__": "Detectron2 Model Zoo"}
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "model_final_8f325c.pkl")
            with open(path, "wb") as f:
                pickle.dump(data, f)
            self._check(*self._load(path))
            # The public API loads it too.
            model = build_official()
            DetectionCheckpointer(model).load(path)
            head = model.state_dict()["head.mask_pred_15.weight"].numpy()
            self.assertTrue(np.array_equal(head, self.weights["head.mask_pred_15.weight"]))

    def test_strict_load_state_dict_ignores_stale_entries(self):
        model = build_official()
        state = {k: torch.from_numpy(v) for k, v in {**self.weights, **self.stale}.items()}
        result = model.load_state_dict(state, strict=True)
        self.assertEqual(result.missing_keys, [])
        self.assertEqual(result.unexpected_keys, [])


if __name__ == "__main__":
    unittest.main()
