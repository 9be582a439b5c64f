"""models/resnet.py against an independent implementation, torchvision's resnet18: the same state_dict
layout, the same numbers from a seeded build, the same outputs for the same weights; and BN folding of
its blocks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from models.bisenet import BiSeNet
from models.bn_fold import fold_batchnorm
from models.resnet import BasicBlock, ResNet18
from models.swiftnet import SwiftNet
from tests.test_segnets import _randomize_bn


def _layout(sd) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    return [(k, tuple(v.shape), v.dtype) for k, v in sd.items()]


def test_state_dict_layout_is_torchvisions():
    ours, theirs = ResNet18().state_dict(), torchvision.models.resnet18(weights=None).state_dict()
    assert len(ours) == 122 and _layout(ours) == _layout(theirs)   # 20 convs, 20 BNs of 5 entries, fc: same order
    assert _layout(ResNet18(num_classes=7).state_dict())[-2:] == [("fc.weight", (7, 512), torch.float32),
                                                                   ("fc.bias", (7,), torch.float32)]


@pytest.mark.parametrize("seed", [0, 3])
def test_seeded_build_draws_torchvisions_numbers(seed):
    # Same random draws in the same order: a seeded SwiftNet/BiSeNet keeps the weights it had before.
    torch.manual_seed(seed)
    theirs = torchvision.models.resnet18(weights=None).state_dict()
    torch.manual_seed(seed)
    ours = ResNet18().state_dict()
    assert all(torch.equal(ours[k], v) for k, v in theirs.items())
    assert ours["layer1.0.conv1.weight"].std() > 0.01   # really drawn


@pytest.mark.parametrize("train", [False, True])
def test_same_outputs_for_the_same_weights(train):
    torch.manual_seed(1)
    theirs = torchvision.models.resnet18(weights=None, num_classes=10)
    _randomize_bn(theirs, seed=1)
    torch.manual_seed(2)   # different init, then torchvision's weights: only the forward is compared
    ours = ResNet18(num_classes=10)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.train(train), ours.train(train)
    x = torch.randn(2, 3, 67, 93)   # odd sizes: every stride rounds up
    with torch.no_grad():
        got, want = ours(x), theirs(x)
        stages = ours.forward_stages(x)
        y = theirs.maxpool(theirs.relu(theirs.bn1(theirs.conv1(x))))
        for i, stage in enumerate(stages):
            y = getattr(theirs, f"layer{i + 1}")(y)
            torch.testing.assert_close(stage, y, rtol=1e-5, atol=1e-5)
    assert [tuple(s.shape[1:]) for s in stages] == [(64, 17, 24), (128, 9, 12), (256, 5, 6), (512, 3, 3)]
    assert got.shape == (2, 10) and got.std() > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_block_with_zero_residual_branch_is_relu_of_its_input():
    block = BasicBlock(8, 8).eval()
    torch.nn.init.zeros_(block.bn2.weight)   # bn2 output = its bias = 0: the block is relu(identity)
    x = torch.randn(2, 8, 5, 6)
    torch.testing.assert_close(block(x), F.relu(x), rtol=0, atol=0)
    down = BasicBlock(8, 16, stride=2)
    assert down.downsample is not None and down(x).shape == (2, 16, 3, 3)


def test_keyframe_nets_hold_the_local_trunk():
    assert isinstance(SwiftNet(5).backbone.layer3[0], BasicBlock)
    assert isinstance(BiSeNet(5).context_path.layer4[1], BasicBlock)


@pytest.mark.parametrize("make", [ResNet18, lambda: torchvision.models.resnet18(weights=None)])
def test_blocks_fold_like_torchvisions(make):
    # 8 blocks × 2 conv→BN pairs + 3 downsample Sequentials; the stem is not a named pair of a plain ResNet
    net = make().eval()
    _randomize_bn(net, seed=4)
    folded, count = fold_batchnorm(net)
    assert count == 19
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = net(x)
        torch.testing.assert_close(folded(x), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
