"""BatchNorm folding for inference: same outputs as the unfolded model, on random BN statistics."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from engine.streaming.predictor import VideoPredictor
from models.bn_fold import fold_batchnorm
from models.gsvnet import GSVNet
from models.keyframe_spec import parse_spec
from tests.test_segnets import _randomize_bn


def _num_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("segnet,expected", [("swiftnet", 35), ("bisenet", None)])
def test_folded_gsvnet_gives_the_same_logits(segnet, expected):
    torch.manual_seed(0)
    model = GSVNet.build(parse_spec(segnet), "light", num_classes=19).eval()
    _randomize_bn(model, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded, count = fold_batchnorm(model)
    # light flow 7 conv→BN pairs, GSV 8; SwiftNet: ResNet-18 stem 1 + 8 blocks × 2 + 3 downsample
    if expected is not None:
        assert count == expected
    assert _num_bn(folded) == _num_bn(model) - count and count > 15
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())   # original untouched
    frames = torch.rand(1, 2, 3, 64, 96) * 255
    with torch.no_grad():
        for net in (model, folded):
            key = net.keyframe(frames[:, 0], 0.75)
            lr0, lr1 = net.lowres_bgr(frames[:, 0]), net.lowres_bgr(frames[:, 1])
            net.out = (key, net.propagate(key, lr0, lr1))
    for ref, got in zip(model.out, folded.out):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_only_conv_followed_directly_by_bn_is_folded():
    # BN -> ReLU -> conv (SwiftNet's BNReluConv) must stay; conv -> BN in a Sequential folds
    seq = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6))
    _randomize_bn(seq, 2)
    folded, count = fold_batchnorm(seq)
    assert count == 1 and isinstance(folded[0], nn.BatchNorm2d) and len(folded) == 3   # the folded BN is gone
    x = torch.randn(2, 4, 9, 7)
    torch.testing.assert_close(folded(x), seq.eval()(x), rtol=1e-5, atol=1e-5)


def test_predictor_with_and_without_folding_agree():
    torch.manual_seed(3)
    model = GSVNet.build(parse_spec("swiftnet"), "light", num_classes=19)
    _randomize_bn(model, 4)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 128, 3), dtype=np.uint8) for _ in range(3)]
    outs = {}
    for fold in (True, False):
        p = VideoPredictor(model, key_interval=3, fold_bn=fold)
        outs[fold] = [p.step(f).logits for f in frames]
    assert VideoPredictor(model, fold_bn=True).model is not model
    for a, b in zip(outs[True], outs[False]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
