"""Building blocks of PIDNet (Xu et al., CVPR 2023), laid out so that the official state_dict loads.

Each module's child names, child order and ``nn.Sequential`` indices reproduce the official key names
(for example ``spp.scale1.1.weight`` is the BatchNorm after the pooling of the first PPM branch, and
``dfm.conv.2.weight`` the 3×3 convolution of the Bag module). Facts come from the official
implementation (XuJiacong/PIDNet, MIT licence); the code is ours.

Conventions (stated once, here):
- Tensors are B×C×H×W. Every resize is bilinear with ``align_corners=False``, as in the official code.
- Residual blocks end with an optional ReLU (``relu_out``); which blocks have it is decided by
  :func:`residual_stage` and matters for parity, since several branch outputs are used un-rectified.
- The PPM average pools count the zero padding (PyTorch's default ``count_include_pad=True``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def resize(x: Tensor, size) -> Tensor:
    """Bilinear resize of a B×C×h×w map to ``size`` = (H, W), ``align_corners=False``."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def conv_bn(in_ch: int, out_ch: int, k: int = 1, stride: int = 1) -> nn.Sequential:
    """Bias-free conv (padding k//2) then BN: children ``0`` and ``1``."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=k // 2, bias=False),
                         nn.BatchNorm2d(out_ch))


def bn_relu_conv(in_ch: int, out_ch: int, k: int = 1, groups: int = 1,
                 pool: nn.Module | None = None) -> nn.Sequential:
    """Pre-activation unit [pool] -> BN -> ReLU -> bias-free conv (padding k//2)."""
    layers = [] if pool is None else [pool]
    layers += [nn.BatchNorm2d(in_ch), nn.ReLU(),
               nn.Conv2d(in_ch, out_ch, k, padding=k // 2, groups=groups, bias=False)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN with an identity (or 1×1 conv-BN ``downsample``) shortcut; out = planes ch."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, relu_out: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        needs_proj = stride != 1 or in_ch != planes
        self.downsample = conv_bn(in_ch, planes, 1, stride) if needs_proj else None
        self.relu_out = relu_out

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        out = out + (x if self.downsample is None else self.downsample(x))
        return F.relu(out) if self.relu_out else out


class Bottleneck(nn.Module):
    """1×1 -> 3×3 (strided) -> 1×1 conv-BN with expansion 2; out = 2·planes ch."""

    expansion = 2

    def __init__(self, in_ch: int, planes: int, stride: int = 1, relu_out: bool = False):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        needs_proj = stride != 1 or in_ch != out_ch
        self.downsample = conv_bn(in_ch, out_ch, 1, stride) if needs_proj else None
        self.relu_out = relu_out

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + (x if self.downsample is None else self.downsample(x))
        return F.relu(out) if self.relu_out else out


def residual_stage(block: type, in_ch: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """``blocks`` residual blocks, the first one strided. ReLU placement follows the official stages:
    the last block of a multi-block stage has no output ReLU, the middle ones have it, and the first
    keeps its class default (BasicBlock: ReLU, Bottleneck: none) — so neither block of the two-block
    Bottleneck stage ``layer5`` is rectified."""
    first_relu = block is BasicBlock
    layers = [block(in_ch, planes, stride, relu_out=first_relu)]
    for i in range(1, blocks):
        layers.append(block(planes * block.expansion, planes, 1, relu_out=i < blocks - 1))
    return nn.Sequential(*layers)


class SegHead(nn.Module):
    """BN -> ReLU -> 3×3 conv (mid ch) -> BN -> ReLU -> 1×1 conv with bias (out ch); same resolution."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, mid_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_ch)
        self.conv2 = nn.Conv2d(mid_ch, out_ch, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(F.relu(self.bn1(x)))
        return self.conv2(F.relu(self.bn2(x)))


def _pyramid_branches(in_ch: int, branch_ch: int) -> list[nn.Sequential]:
    """scale1..scale4: average pools of stride 2, 4, 8 and global, each followed by BN-ReLU-1×1 conv."""
    pools = [nn.AvgPool2d(5, 2, 2), nn.AvgPool2d(9, 4, 4), nn.AvgPool2d(17, 8, 8), nn.AdaptiveAvgPool2d(1)]
    return [bn_relu_conv(in_ch, branch_ch, 1, pool=p) for p in pools]


class PAPPM(nn.Module):
    """Parallel aggregation PPM (PIDNet-S/M): the four pooled branches, each upsampled and added to the
    un-pooled ``scale0`` branch, go through one grouped (4 groups) 3×3 conv together; then
    ``compression(cat[scale0, that]) + shortcut(x)``. in_ch -> out_ch, same resolution."""

    def __init__(self, in_ch: int, branch_ch: int, out_ch: int):
        super().__init__()
        self.scale1, self.scale2, self.scale3, self.scale4 = _pyramid_branches(in_ch, branch_ch)
        self.scale0 = bn_relu_conv(in_ch, branch_ch, 1)
        self.scale_process = bn_relu_conv(branch_ch * 4, branch_ch * 4, 3, groups=4)
        self.compression = bn_relu_conv(branch_ch * 5, out_ch, 1)
        self.shortcut = bn_relu_conv(in_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        base = self.scale0(x)
        pooled = [resize(s(x), size) + base for s in (self.scale1, self.scale2, self.scale3, self.scale4)]
        mixed = self.scale_process(torch.cat(pooled, 1))
        return self.compression(torch.cat([base, mixed], 1)) + self.shortcut(x)


class DAPPM(nn.Module):
    """Deep aggregation PPM (PIDNet-L): each pooled branch, upsampled, is added to the previous
    branch's output and refined by its own 3×3 conv (``process1..4``), sequentially; then
    ``compression(cat[all five]) + shortcut(x)``. in_ch -> out_ch, same resolution."""

    def __init__(self, in_ch: int, branch_ch: int, out_ch: int):
        super().__init__()
        self.scale1, self.scale2, self.scale3, self.scale4 = _pyramid_branches(in_ch, branch_ch)
        self.scale0 = bn_relu_conv(in_ch, branch_ch, 1)
        self.process1, self.process2, self.process3, self.process4 = (
            bn_relu_conv(branch_ch, branch_ch, 3) for _ in range(4))
        self.compression = bn_relu_conv(branch_ch * 5, out_ch, 1)
        self.shortcut = bn_relu_conv(in_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        outs = [self.scale0(x)]
        pairs = ((self.scale1, self.process1), (self.scale2, self.process2),
                 (self.scale3, self.process3), (self.scale4, self.process4))
        for scale, process in pairs:
            outs.append(process(resize(scale(x), size) + outs[-1]))
        return self.compression(torch.cat(outs, 1)) + self.shortcut(x)


class PagFM(nn.Module):
    """Pixel-attention-guided fusion: sim = sigmoid(Σ_c f_x(p)·up(f_y(i))) per pixel (B×1×H×W);
    out = (1 - sim)·p + sim·up(i), where p (the P branch) sets the size and up() resizes the I-branch
    feature to it. Both inputs have in_ch channels; f_x / f_y project to mid_ch (1×1 conv-BN)."""

    def __init__(self, in_ch: int, mid_ch: int):
        super().__init__()
        self.f_x = conv_bn(in_ch, mid_ch, 1)
        self.f_y = conv_bn(in_ch, mid_ch, 1)

    def forward(self, p: Tensor, i: Tensor) -> Tensor:
        size = p.shape[-2:]
        query = resize(self.f_y(i), size)
        sim = torch.sigmoid((self.f_x(p) * query).sum(dim=1, keepdim=True))
        return (1 - sim) * p + sim * resize(i, size)


class LightBag(nn.Module):
    """Light boundary-attention-guided fusion (PIDNet-S/M), a = sigmoid(d):
    conv_p((1 - a)·i + p) + conv_i(i + a·p), each a 1×1 conv-BN. p, i: in_ch; d: 1 or in_ch channels."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv_p = conv_bn(in_ch, out_ch, 1)
        self.conv_i = conv_bn(in_ch, out_ch, 1)

    def forward(self, p: Tensor, i: Tensor, d: Tensor) -> Tensor:
        att = torch.sigmoid(d)
        return self.conv_p((1 - att) * i + p) + self.conv_i(i + att * p)


class Bag(nn.Module):
    """Boundary-attention-guided fusion (PIDNet-L), a = sigmoid(d): BN-ReLU-3×3 conv of a·p + (1 - a)·i."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = bn_relu_conv(in_ch, out_ch, 3)

    def forward(self, p: Tensor, i: Tensor, d: Tensor) -> Tensor:
        att = torch.sigmoid(d)
        return self.conv(att * p + (1 - att) * i)
