"""BatchNorm folded into the preceding convolution, for inference (eval mode, frozen statistics).

In eval mode BN(conv(x)) = conv'(x) with w' = w·γ/√(σ²+ε) per output channel and
b' = (b − μ)·γ/√(σ²+ε) + β, so the BN pass disappears; the outputs agree up to float rounding.
A pair is folded only where the BN provably follows the conv directly:
- consecutive children of an ``nn.Sequential`` (its forward is its registration order; the BN is
  removed from it);
- named pairs of modules whose forward we know (the ResNet-18 BasicBlock of models/resnet.py, the
  SwiftNet stem, BiSeNet's ConvBnRelu).
SwiftNet's BN-ReLU-Conv units (BN before the conv, across a ReLU) cannot be folded and are left.
"""
from __future__ import annotations

import copy
import sys

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from models.bisenet import ConvBnRelu
from models.resnet import BasicBlock
from models.swiftnet import SwiftNetBackbone

NAMED_PAIRS: dict[type, tuple[tuple[str, str], ...]] = {
    BasicBlock: (("conv1", "bn1"), ("conv2", "bn2")),
    SwiftNetBackbone: (("conv1", "bn1"),),
    ConvBnRelu: (("conv", "bn"),),
}


def _named_pairs() -> dict[type, tuple[tuple[str, str], ...]]:
    """NAMED_PAIRS, plus torchvision's BasicBlock (the same forward) when torchvision is already loaded:
    a ``torchvision:`` or ``module:`` net may hold them. Never imports torchvision itself (seconds of start-up)."""
    tv_resnet = sys.modules.get("torchvision.models.resnet")
    if tv_resnet is None:
        return NAMED_PAIRS
    return {**NAMED_PAIRS, tv_resnet.BasicBlock: NAMED_PAIRS[BasicBlock]}


def _foldable(conv, bn) -> bool:
    return (type(conv) is nn.Conv2d and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats
            and bn.running_mean is not None and conv.out_channels == bn.num_features)


def _fold_sequential(seq: nn.Sequential) -> int:
    names = list(seq._modules)
    folded = []
    for first, second in zip(names, names[1:]):
        conv, bn = seq._modules[first], seq._modules[second]
        if _foldable(conv, bn):
            seq._modules[first] = fuse_conv_bn_eval(conv, bn)
            folded.append(second)
    for name in folded:  # dropped rather than replaced by Identity: one module call less per pair
        del seq._modules[name]
    return len(folded)


def _fold_named(module: nn.Module, pairs: tuple[tuple[str, str], ...]) -> int:
    folded = 0
    for conv_name, bn_name in pairs:
        conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
        if _foldable(conv, bn):
            setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(module, bn_name, nn.Identity())
            folded += 1
    return folded


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``model`` with every foldable conv→BN pair merged; returns (copy, pairs folded).

    The original is not modified. The copy is for inference only: training it would not update any BN.
    """
    model = copy.deepcopy(model).eval()
    folded = 0
    named_pairs = _named_pairs()
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            folded += _fold_sequential(module)
        pairs = named_pairs.get(type(module))
        if pairs:
            folded += _fold_named(module, pairs)
    return model, folded
