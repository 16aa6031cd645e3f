"""FCOS head, basis module and backbone: structure, naming and shapes."""

import math
import unittest

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from torch import nn

from tensormask_proj.modeling.blendmask.basis_module import ProtoNet
from tensormask_proj.modeling.blendmask.fcos_head import FCOSHead, NaiveGroupNorm

from .blendmask_testing import blendmask_cfg


def _head(**kwargs):
    args = dict(in_channels=64, num_levels=3, num_classes=5, num_cls_convs=2, num_box_convs=2)
    args.update(kwargs)
    return FCOSHead(**args)


class TestFCOSHead(unittest.TestCase):
    def test_outputs_and_init(self):
        torch.manual_seed(0)
        head = _head()
        feats = [torch.randn(2, 64, 8, 10), torch.randn(2, 64, 4, 5), torch.randn(2, 64, 2, 3)]
        logits, deltas, ctrness, box_feats = head(feats)
        for f, lg, d, c, b in zip(feats, logits, deltas, ctrness, box_feats):
            h, w = f.shape[-2:]
            self.assertEqual(tuple(lg.shape), (2, 5, h, w))
            self.assertEqual(tuple(d.shape), (2, 4, h, w))
            self.assertEqual(tuple(c.shape), (2, 1, h, w))
            self.assertEqual(tuple(b.shape), (2, 64, h, w))
        prior_bias = -math.log((1 - 0.01) / 0.01)
        self.assertTrue(torch.allclose(head.cls_logits.bias, torch.full((5,), prior_bias)))
        self.assertAlmostEqual(head.bbox_pred.weight.std().item(), 0.01, delta=0.002)

    def test_regression_is_scaled_per_level_then_clipped_at_zero(self):
        # bbox_pred reduced to its bias (1, -1, 2, -0.5), level scales 1, 2, 3: every location
        # of level l predicts ReLU(s_l * bias) = s_l * (1, 0, 2, 0).
        head = _head()
        with torch.no_grad():
            head.bbox_pred.weight.zero_()
            head.bbox_pred.bias.copy_(torch.tensor([1.0, -1.0, 2.0, -0.5]))
            for scale, value in zip(head.scales, (1.0, 2.0, 3.0)):
                scale.scale.fill_(value)
        feats = [torch.randn(2, 64, 8, 10), torch.randn(2, 64, 4, 5), torch.randn(2, 64, 2, 3)]
        _, deltas, _, _ = head(feats)
        for d, s in zip(deltas, (1.0, 2.0, 3.0)):
            expected = torch.tensor([s, 0.0, 2 * s, 0.0]).view(1, 4, 1, 1).expand_as(d)
            self.assertTrue(torch.equal(d, expected))

    def test_parameter_names_per_norm(self):
        names = set(_head(norm="GN").state_dict())
        self.assertIn("cls_tower.1.weight", names)  # [conv, GN, ReLU] x 2
        self.assertIn("bbox_tower.3.weight", names)
        self.assertNotIn("scales.0.scale", set(_head(use_scale=False).state_dict()))
        self.assertIn("scales.2.scale", names)
        bn = set(_head(norm="BN").state_dict())
        # One BatchNorm per level in each norm slot.
        self.assertIn("cls_tower.1.2.running_mean", bn)
        none = set(_head(norm="none").state_dict())
        self.assertIn("cls_tower.2.weight", none)  # [conv, ReLU] x 2: second conv at 2
        self.assertEqual(set(_head(norm="NaiveGN").state_dict()), names)
        shared = set(_head(num_cls_convs=0, num_box_convs=0, num_share_convs=3).state_dict())
        self.assertIn("share_tower.6.weight", shared)
        self.assertFalse(any(n.startswith(("cls_tower", "bbox_tower")) for n in shared))

    def test_per_level_bn_uses_each_level_statistics(self):
        head = _head(norm="BN").train()
        feats = [torch.randn(2, 64, 4, 4) * (level + 1) for level in range(3)]
        head(feats)
        bns = head.cls_tower[1]
        self.assertTrue(all(int(bn.num_batches_tracked) == 1 for bn in bns))
        self.assertFalse(torch.allclose(bns[0].running_var, bns[2].running_var))

    def test_naive_group_norm_equals_group_norm(self):
        torch.manual_seed(0)
        gn, naive = nn.GroupNorm(4, 16), NaiveGroupNorm(4, 16)
        nn.init.normal_(gn.weight)
        nn.init.normal_(gn.bias)
        naive.load_state_dict(gn.state_dict())
        x = torch.randn(2, 16, 5, 7)
        self.assertTrue(torch.allclose(gn(x), naive(x), atol=1e-5))


class TestProtoNet(unittest.TestCase):
    def _shapes(self):
        return {f"p{i}": ShapeSpec(channels=32, stride=2**i) for i in (3, 4, 5)}

    def test_bases_at_stride_4_and_semantic_head(self):
        net = ProtoNet(
            input_shape=self._shapes(), in_features=["p3", "p4", "p5"], num_bases=4,
            convs_dim=32, norm="GN", num_convs=2, loss_on=True, num_classes=6,
        )  # fmt: skip
        feats = {"p3": torch.randn(2, 32, 8, 10), "p4": torch.randn(2, 32, 4, 5)}
        feats["p5"] = torch.randn(2, 32, 2, 3)
        net.train()
        sem = torch.zeros(2, 64, 80, dtype=torch.long)
        outputs, losses = net(feats, sem)
        self.assertEqual(tuple(outputs["bases"][0].shape), (2, 4, 16, 20))  # 64x80 / 4
        # Untrained semantic head ~ uniform over 7 classes -> loss ~ 0.3 * log 7.
        self.assertAlmostEqual(losses["loss_basis_sem"].item(), 0.3 * math.log(7), delta=0.3)
        net.eval()
        outputs, losses = net(feats)
        self.assertEqual(losses, {})
        self.assertNotIn("seg_thing_out", outputs)
        without = ProtoNet(input_shape=self._shapes(), in_features=["p3", "p4", "p5"], norm="")
        self.assertFalse(hasattr(without, "seg_head"))
        self.assertIn("refine.0.0.bias", without.state_dict())  # no norm -> conv bias

    def test_semantic_head_on_another_level(self):
        shapes = {f"p{i}": ShapeSpec(channels=32, stride=2**i) for i in (2, 3, 4, 5)}
        net = ProtoNet(
            input_shape=shapes, in_features=["p2", "p3", "p4", "p5"], num_bases=4,
            convs_dim=32, norm="GN", num_convs=1, loss_on=True, num_classes=6, common_stride=4,
            semantic_in_feature="p3",
        )  # fmt: skip
        feats = {f"p{i}": torch.randn(2, 32, 64 // 2**i, 80 // 2**i) for i in (2, 3, 4, 5)}
        # Random classes per pixel: the loss must sample the target at p3's stride, 8 (at p2's
        # stride, 4, the sizes would not match; at another offset the value would differ).
        sem = torch.randint(0, 7, (2, 64, 80), generator=torch.Generator().manual_seed(0))
        outputs, losses = net.train()(feats, sem)
        self.assertEqual(tuple(outputs["bases"][0].shape), (2, 4, 32, 40))  # bases from p2: /2
        logits = net.seg_head(feats["p3"])
        expected = 0.3 * torch.nn.functional.cross_entropy(logits, sem[:, ::8, ::8])
        self.assertAlmostEqual(losses["loss_basis_sem"].item(), expected.item(), places=5)
        net.visualize = True
        outputs, _ = net.eval()(feats)
        self.assertEqual(tuple(outputs["seg_thing_out"].shape), (2, 7, 8, 10))

    def test_bad_in_features(self):
        with self.assertRaisesRegex(ValueError, "IN_FEATURES"):
            ProtoNet(input_shape=self._shapes(), in_features=["p2", "p3"])
        with self.assertRaisesRegex(ValueError, "SEMANTIC_IN_FEATURE 'p2'"):
            ProtoNet(input_shape=self._shapes(), in_features=["p3"], semantic_in_feature="p2")


class TestFCOSBackbone(unittest.TestCase):
    def test_top_levels(self):
        expected = {0: ["p3", "p4", "p5"], 1: ["p3", "p4", "p5", "p6"]}
        expected[2] = expected[1] + ["p7"]
        for top_levels, names in expected.items():
            with self.subTest(top_levels=top_levels):
                cfg = blendmask_cfg(opts=["MODEL.FCOS.TOP_LEVELS", top_levels])
                backbone = build_backbone(cfg)
                shapes = backbone.output_shape()
                self.assertEqual(sorted(shapes), names)
                self.assertEqual(
                    [shapes[n].stride for n in names], [8, 16, 32, 64, 128][: len(names)]
                )
                self.assertEqual(backbone.size_divisibility, 32)
                out = backbone(torch.randn(1, 3, 64, 96))
                self.assertEqual(sorted(out), names)
                if top_levels:
                    # P6 is computed from P5 (FPN channels), not from C5 (512 for ResNet-18).
                    self.assertEqual(backbone.top_block.in_feature, "p5")
                    self.assertEqual(backbone.top_block.p6.weight.shape[1], 128)


if __name__ == "__main__":
    unittest.main()
