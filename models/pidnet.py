"""PIDNet-S/M/L (Xu et al., "PIDNet: A Real-time Semantic Segmentation Network Inspired by PID
Controllers", CVPR 2023) as a keyframe network.

Architecture facts and the state_dict layout follow the official implementation (XuJiacong/PIDNet,
MIT licence, ``models/pidnet.py`` and ``models/model_utils.py``), so its released files load unchanged
(see models/pidnet_weights.py); the code is ours. Three branches share a ResNet-like stem:

    stem   conv1 (2× conv3×3 s2 + BN + ReLU), layer1, layer2               1/8, 2·planes ch
    I      layer3 -> layer4 -> layer5 (Bottleneck) -> PPM (spp)            1/16, 1/32, 1/64 -> 1/8
    P      layer3_ -> pag3 -> layer4_ -> pag4 -> layer5_                   1/8, fused with I via PagFM
    D      layer3_d (+ diff3(I)) -> layer4_d (+ diff4(I)) -> layer5_d      1/8, boundary detail
    head   final_layer(dfm(P, I, D))  (dfm = LightBag for S/M, Bag for L)  1/8, num_classes ch

Conventions (stated once, here):
- Input: B×3×H×W RGB on the 0-1 scale, normalised with PIDNET_MEAN / PIDNET_STD by the caller.
- Output: logits at the 1/8 grid, i.e. ceil(ceil(ceil(H/2)/2)/2) rows (= H/8 when 8 divides H).
  Branch features are resized to the size of the stem's 1/8 feature; the official code uses
  (H//8, W//8) instead, which is the same size whenever 8 divides H and W (and fails otherwise).
  Deeper I-branch maps (1/16..1/64) need not be integer fractions (360×640 gives a 6×10 map at 1/64).
- Every internal resize is bilinear with ``align_corners=False``, as in the official code.
- Inference form (``augment=False``): forward returns the main logits (a tensor). Training form
  (``augment=True``): forward returns [p_aux, main, d] in train and eval mode alike, as officially:
  p_aux (num_classes ch) from ``seghead_p`` on the P branch after pag3, d (1 ch, boundary logits) from
  ``seghead_d`` on the D branch after stage 4, all three at the 1/8 grid. The official in-place ReLUs
  rectify both head inputs before the heads see them; we reproduce that explicitly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from models.pidnet_blocks import (DAPPM, PAPPM, Bag, BasicBlock, Bottleneck, LightBag, PagFM, SegHead,
                                  conv_bn, residual_stage, resize)

PIDNET_MEAN = (0.485, 0.456, 0.406)   # ImageNet statistics, RGB on the 0-1 scale
PIDNET_STD = (0.229, 0.224, 0.225)
OUTPUT_STRIDE = 8
HEAD_PREFIXES = ("seghead_p.", "seghead_d.")  # training-only heads (26 state_dict entries)


@dataclass(frozen=True)
class PIDNetSize:
    """Constructor arguments of one official variant (m, n: blocks per stage; channel widths)."""

    m: int
    n: int
    planes: int
    ppm_planes: int
    head_planes: int


VARIANTS = {
    "s": PIDNetSize(m=2, n=3, planes=32, ppm_planes=96, head_planes=128),
    "m": PIDNetSize(m=2, n=3, planes=64, ppm_planes=96, head_planes=128),
    "l": PIDNetSize(m=3, n=4, planes=64, ppm_planes=112, head_planes=256),
}


class PIDNet(nn.Module):
    """PIDNet with the official module names; see the module docstring for shapes and outputs."""

    def __init__(self, num_classes: int, size: PIDNetSize, augment: bool = False):
        super().__init__()
        m, n, c = size.m, size.n, size.planes
        self.num_classes = num_classes
        self.augment = augment
        # Registration order = the official state_dict order.
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.layer1 = residual_stage(BasicBlock, c, c, m)
        self.layer2 = residual_stage(BasicBlock, c, c * 2, m, stride=2)
        self.layer3 = residual_stage(BasicBlock, c * 2, c * 4, n, stride=2)
        self.layer4 = residual_stage(BasicBlock, c * 4, c * 8, n, stride=2)
        self.layer5 = residual_stage(Bottleneck, c * 8, c * 8, 2, stride=2)
        self.compression3 = conv_bn(c * 4, c * 2, 1)
        self.compression4 = conv_bn(c * 8, c * 2, 1)
        self.pag3 = PagFM(c * 2, c)
        self.pag4 = PagFM(c * 2, c)
        self.layer3_ = residual_stage(BasicBlock, c * 2, c * 2, m)
        self.layer4_ = residual_stage(BasicBlock, c * 2, c * 2, m)
        self.layer5_ = residual_stage(Bottleneck, c * 2, c * 2, 1)
        light = m == 2  # S and M: a thinner D branch, PAPPM and LightBag; L: DAPPM and Bag
        d_ch = c if light else c * 2
        self.layer3_d = BasicBlock(c * 2, d_ch, relu_out=False)
        self.layer4_d = (residual_stage(Bottleneck, c, c, 1) if light
                         else BasicBlock(c * 2, c * 2, relu_out=False))
        self.diff3 = conv_bn(c * 4, d_ch, 3)
        self.diff4 = conv_bn(c * 8, c * 2, 3)
        self.spp = (PAPPM if light else DAPPM)(c * 16, size.ppm_planes, c * 4)
        self.dfm = (LightBag if light else Bag)(c * 4, c * 4)
        self.layer5_d = residual_stage(Bottleneck, c * 2, c * 2, 1)
        if augment:
            self.seghead_p = SegHead(c * 2, size.head_planes, num_classes)
            self.seghead_d = SegHead(c * 2, c, 1)
        self.final_layer = SegHead(c * 4, size.head_planes, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """Official initialisation: Kaiming-normal (fan_out, ReLU) convs, BN weight 1 and bias 0."""
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(mod, nn.BatchNorm2d):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """x: B×3×H×W normalised RGB. Returns B×C×h×w logits at 1/8, or [p_aux, main, d] if augment."""
        i = F.relu(self.layer2(F.relu(self.layer1(self.conv1(x)))))   # 1/8, 2c ch
        size = i.shape[-2:]
        p = self.layer3_(i)
        d = self.layer3_d(i)
        i = F.relu(self.layer3(i))                                       # 1/16, 4c ch
        p = F.relu(self.pag3(p, self.compression3(i)))  # rectified: also the p_aux head's input
        d = F.relu(d + resize(self.diff3(i), size))
        aux_p_in = p
        i = F.relu(self.layer4(i))                                       # 1/32, 8c ch
        p = F.relu(self.pag4(self.layer4_(p), self.compression4(i)))
        d = F.relu(self.layer4_d(d) + resize(self.diff4(i), size))      # also the d head's input
        aux_d_in = d
        p = self.layer5_(p)
        d = self.layer5_d(d)
        i = resize(self.spp(self.layer5(i)), size)                       # 1/64 -> 1/8, 4c ch
        main = self.final_layer(self.dfm(p, i, d))
        if not self.augment:
            return main
        return [self.seghead_p(aux_p_in), main, self.seghead_d(aux_d_in)]


def build_pidnet(variant: str, num_classes: int, augment: bool = False) -> PIDNet:
    """PIDNet-S/M/L ("s", "m", "l"); ``augment`` adds the training-only heads and the 3-output form."""
    key = variant.lower()
    if key not in VARIANTS:
        raise ValueError(f"PIDNet variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    return PIDNet(num_classes, VARIANTS[key], augment=augment)
