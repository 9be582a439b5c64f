"""Optical-flow networks of GSVNet (docs/formats.md#key-layouts): the light net and FlowNetS.

Both take a 6-channel pair of BGR-normalised frames at 1/8 of the full resolution (the order of the
pair is the pipeline's business, docs/conventions.md#tensors-between-frames) and return a raw 2-channel flow map, channel 0 = x.
"Raw" means: no scaling inside the network. The vectors are 4× the displacement in pixels of the
1/8 grid (see ``models.warp.FLOW_DIVISOR``), and the map is coarser than that grid (1/4 or 1/8 of the
input); the pipeline resizes it without rescaling the vectors, as the official code does.
Module names equal the official ones, so official state_dicts load unchanged.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def _check_pair(x: Tensor, net: str, min_side: int = 1, sizes: str = "") -> None:
    if x.dim() != 4 or x.shape[1] != 6:
        raise ValueError(f"{net}: input must be B×6×H×W (two stacked 3-channel frames), got {tuple(x.shape)}")
    if min(x.shape[-2:]) < min_side:
        raise ValueError(f"{net}: input height and width must be >= {min_side}{sizes}, "
                         f"got {tuple(x.shape[-2:])}")


def _conv_bn_lrelu(cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel - 1) // 2  # "same" padding, so only the stride changes the size
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, bias=True),
                         nn.BatchNorm2d(cout), nn.LeakyReLU(0.1, inplace=True))


class FlowLight(nn.Module):
    """The paper's lightweight flow net (official "light"; 186,402 parameters, PyTorch default init).

    Two stride-2 convs, then hierarchical feature fusion (HFF) of four dilated branches applied to the
    same input, each added to the previous branch's output (x2 = d2(x) + x1, ...), a 1×1 merge with
    a residual connection, and a 3×3 conv to 2 channels.

    forward(x: B×6×h×w) -> B×2×ceil(h/4)×ceil(w/4) raw flow (see module docstring for units).
    """

    def __init__(self) -> None:
        super().__init__()
        c = 32
        self.conv1 = _conv_bn_lrelu(6, c, stride=2)
        self.conv2 = _conv_bn_lrelu(c, 2 * c, stride=2)
        self.conv_dilate_1 = _conv_bn_lrelu(2 * c, 2 * c, dilation=1)
        self.conv_dilate_2 = _conv_bn_lrelu(2 * c, 2 * c, dilation=2)
        self.conv_dilate_3 = _conv_bn_lrelu(2 * c, 2 * c, dilation=4)
        self.conv_dilate_4 = _conv_bn_lrelu(2 * c, 2 * c, dilation=8)
        self.conv_merge = _conv_bn_lrelu(8 * c, 2 * c, kernel=1)
        self.toflow = nn.Conv2d(2 * c, 2, 3, 1, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        _check_pair(x, "FlowLight")
        x = self.conv2(self.conv1(x))  # B×64×h/4×w/4
        x1 = self.conv_dilate_1(x)
        x2 = self.conv_dilate_2(x) + x1  # HFF: the sums remove gridding artefacts of large dilations
        x3 = self.conv_dilate_3(x) + x2
        x4 = self.conv_dilate_4(x) + x3
        out = self.conv_merge(torch.cat([x1, x2, x3, x4], dim=1)) + x
        return self.toflow(out)


def _conv_lrelu(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, bias=True),
                         nn.LeakyReLU(0.1, inplace=True))


def _deconv_lrelu(cin: int, cout: int) -> nn.Sequential:
    # Padding 0 gives 2n + 2 outputs; the extra rows/cols are cropped at the bottom/right (official).
    # LeakyReLU is elementwise, so applying it before the crop equals the official "crop, then act".
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 0, bias=True), nn.LeakyReLU(0.1, inplace=True))


def _crop_like(x: Tensor, target: Tensor) -> Tensor:
    """Top-left crop of x to target's spatial size (official crop_like)."""
    return x[:, :, :target.shape[2], :target.shape[3]]


class FlowNetS(nn.Module):
    """FlowNetS as used by the official "flownet" option (batchNorm=False; 38,676,514 parameters).

    Encoder of ten conv+LeakyReLU(0.1) layers down to 1/64, decoder of padding-0 transposed convs with
    top-left crops to the skip size, and an AvgPool2d(2, 2) on the last concatenation, so the output is
    at 1/8 of the input. Init: kaiming_normal(a=0.1) weights, zero biases. Weights of the official
    "FlowNet2S" file are loaded by the caller (non-strictly, as officially), never here.

    forward(x: B×6×h×w) -> B×2×(ceil(h/4)//2)×(ceil(w/4)//2) raw flow, i.e. exactly h/8 × w/8 when h and w
    are multiples of 8 (the official sizes are multiples of 64). Any h, w >= 8 is accepted.
    """

    MIN_SIDE = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv_lrelu(6, 64, 7, 2)
        self.conv2 = _conv_lrelu(64, 128, 5, 2)
        self.conv3 = _conv_lrelu(128, 256, 5, 2)
        self.conv3_1 = _conv_lrelu(256, 256, 3, 1)
        self.conv4 = _conv_lrelu(256, 512, 3, 2)
        self.conv4_1 = _conv_lrelu(512, 512, 3, 1)
        self.conv5 = _conv_lrelu(512, 512, 3, 2)
        self.conv5_1 = _conv_lrelu(512, 512, 3, 1)
        self.conv6 = _conv_lrelu(512, 1024, 3, 2)
        self.conv6_1 = _conv_lrelu(1024, 1024, 3, 1)
        self.deconv5 = _deconv_lrelu(1024, 512)
        self.deconv4 = _deconv_lrelu(1026, 256)
        self.deconv3 = _deconv_lrelu(770, 128)
        self.deconv2 = _deconv_lrelu(386, 64)
        self.predict_flow6 = nn.Conv2d(1024, 2, 3, 1, 1, bias=True)
        self.predict_flow5 = nn.Conv2d(1026, 2, 3, 1, 1, bias=True)
        self.predict_flow4 = nn.Conv2d(770, 2, 3, 1, 1, bias=True)
        self.predict_flow3 = nn.Conv2d(386, 2, 3, 1, 1, bias=True)
        self.predict_flow2 = nn.Conv2d(194, 2, 3, 1, 1, bias=True)
        self.upsampled_flow6_to_5 = nn.ConvTranspose2d(2, 2, 4, 2, 0, bias=True)
        self.upsampled_flow5_to_4 = nn.ConvTranspose2d(2, 2, 4, 2, 0, bias=True)
        self.upsampled_flow4_to_3 = nn.ConvTranspose2d(2, 2, 4, 2, 0, bias=True)
        self.upsampled_flow3_to_2 = nn.ConvTranspose2d(2, 2, 4, 2, 0, bias=True)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, a=0.1)
                nn.init.zeros_(m.bias)

    def _refine(self, skip: Tensor, feat: Tensor, flow: Tensor, deconv: nn.Module, up: nn.Module) -> Tensor:
        """One decoder level: cat[skip, deconv(feat), up(flow)], both upsamplings cropped to skip's size."""
        return torch.cat([skip, _crop_like(deconv(feat), skip), _crop_like(up(flow), skip)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        _check_pair(x, "FlowNetS", self.MIN_SIDE, " (any size from 8 up; the output is exactly H/8×W/8 when H and W "
                    "are multiples of 8, ceil(side/4)//2 otherwise; official sizes are multiples of 64)")
        c2 = self.conv2(self.conv1(x))  # 1/4
        c3 = self.conv3_1(self.conv3(c2))  # 1/8
        c4 = self.conv4_1(self.conv4(c3))  # 1/16
        c5 = self.conv5_1(self.conv5(c4))  # 1/32
        c6 = self.conv6_1(self.conv6(c5))  # 1/64
        flow6 = self.predict_flow6(c6)
        cat5 = self._refine(c5, c6, flow6, self.deconv5, self.upsampled_flow6_to_5)  # 1026 ch
        flow5 = self.predict_flow5(cat5)
        cat4 = self._refine(c4, cat5, flow5, self.deconv4, self.upsampled_flow5_to_4)  # 770 ch
        flow4 = self.predict_flow4(cat4)
        cat3 = self._refine(c3, cat4, flow4, self.deconv3, self.upsampled_flow4_to_3)  # 386 ch
        flow3 = self.predict_flow3(cat3)
        cat2 = self._refine(c2, cat3, flow3, self.deconv2, self.upsampled_flow3_to_2)  # 194 ch at 1/4
        # The official port pools here (replacing the MXNet scale layer) so the output lands on 1/8.
        return self.predict_flow2(F.avg_pool2d(cat2, kernel_size=2, stride=2))


def build_flow_net(name: str) -> nn.Module:
    """"light" → FlowLight (random init), "flownet" → FlowNetS (kaiming init; load weights yourself)."""
    if name == "light":
        return FlowLight()
    if name == "flownet":
        return FlowNetS()
    raise ValueError(f"build_flow_net: name must be 'light' or 'flownet', got {name!r}")
