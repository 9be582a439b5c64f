"""BiSeNet-R18 (TorchSeg style): the keyframe network of GSVNet-BN.

Architecture and state_dict layout follow `docs/formats.md#key-layouts` so that the official
Cityscapes weights (218 entries, aux heads included) load with ``strict=True``:

    spatial path  3 -> 64 (7×7 s2) -> 64 (3×3 s2) -> 64 (3×3 s2) -> 128 (1×1)      128 ch @ 1/8
    context path  ResNet-18 (models/resnet.py)                                      64..512 @ 1/4..1/32
    global context GAP(layer4) -> 1×1 512->128, broadcast to 1/32
    arms[0](layer4) + global -> up to 1/16 -> refines[0]  (aux head 0 input)
    arms[1](layer3) + prev   -> up to 1/8  -> refines[1]  (aux head 1 input)
    ffm(cat[spatial, context]) 256 ch @ 1/8 -> heads[2] -> logits @ 1/8

Conventions (stated once, here):
- Input: RGB on the 0-1 scale, normalised with IMAGENET_MEAN / IMAGENET_STD (done by the caller).
- Every internal resize is bilinear with ``align_corners=True`` (TorchSeg convention).
- Eval: returns main logits at 1/8. Train: returns (main @1/8, aux_a @1/16, aux_b @1/8); the aux
  heads' official ×16 / ×8 upsampling to the input size is left to the trainer.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from models.resize import resize
from models.resnet import ResNet18

IMAGENET_MEAN = (0.485, 0.456, 0.406)   # RGB, 0-1 scale
IMAGENET_STD = (0.229, 0.224, 0.225)

CONV_CHANNELS = 128


class ConvBnRelu(nn.Module):
    """Conv (bias-free) -> optional BN -> optional ReLU; children ``conv``, ``bn`` as official keys."""

    def __init__(self, in_ch: int, out_ch: int, k: int, stride: int = 1,
                 has_bn: bool = True, has_relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_ch) if has_bn else None
        self.relu = nn.ReLU(inplace=True) if has_relu else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


class ContextPath(nn.Module):
    """ResNet-18 without avgpool/fc; returns the four (post-ReLU) stage outputs."""

    def __init__(self):
        super().__init__()
        resnet = ResNet18()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(resnet, name))

    def forward(self, x: Tensor) -> list[Tensor]:
        """x: B×3×H×W -> [64@1/4, 128@1/8, 256@1/16, 512@1/32]: the trunk's own stage pass, on the modules
        taken from it above (same names, so ResNet18.forward_stages applies to this module as is)."""
        return ResNet18.forward_stages(self, x)


class SpatialPath(nn.Module):
    """Three stride-2 convs keep fine detail: B×3×H×W -> B×128×(H/8)×(W/8)."""

    def __init__(self, in_ch: int = 3, out_ch: int = CONV_CHANNELS, inner: int = 64):
        super().__init__()
        self.conv_7x7 = ConvBnRelu(in_ch, inner, 7, stride=2)
        self.conv_3x3_1 = ConvBnRelu(inner, inner, 3, stride=2)
        self.conv_3x3_2 = ConvBnRelu(inner, inner, 3, stride=2)
        self.conv_1x1 = ConvBnRelu(inner, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_1x1(self.conv_3x3_2(self.conv_3x3_1(self.conv_7x7(x))))


class AttentionRefinement(nn.Module):
    """ARM: 3×3 ConvBnRelu, reweighted per channel by sigmoid(ConvBn(GAP(.)))."""

    def __init__(self, in_ch: int, out_ch: int = CONV_CHANNELS):
        super().__init__()
        self.conv_3x3 = ConvBnRelu(in_ch, out_ch, 3)
        self.channel_attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), ConvBnRelu(out_ch, out_ch, 1, has_relu=False), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        fm = self.conv_3x3(x)
        return fm * self.channel_attention(fm)   # B×C×h×w * B×C×1×1


class FeatureFusion(nn.Module):
    """FFM: fm = ConvBnRelu(cat); out = fm + fm·sigmoid(SE(fm)); the SE convs have no BN, no bias."""

    def __init__(self, in_ch: int = 2 * CONV_CHANNELS, out_ch: int = 2 * CONV_CHANNELS,
                 reduction: int = 1):
        super().__init__()
        self.conv_1x1 = ConvBnRelu(in_ch, out_ch, 1)
        self.channel_attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            ConvBnRelu(out_ch, out_ch // reduction, 1, has_bn=False),
            ConvBnRelu(out_ch // reduction, out_ch, 1, has_bn=False, has_relu=False),
            nn.Sigmoid())

    def forward(self, spatial: Tensor, context: Tensor) -> Tensor:
        fm = self.conv_1x1(torch.cat([spatial, context], dim=1))
        return fm + fm * self.channel_attention(fm)


class BiSeNetHead(nn.Module):
    """ConvBnRelu 3×3 (256 ch for aux heads, 64 for the main one) -> 1×1 conv with bias.

    No upsampling here (see module docstring).
    """

    def __init__(self, in_ch: int, num_classes: int, is_aux: bool):
        super().__init__()
        mid = 256 if is_aux else 64
        self.conv_3x3 = ConvBnRelu(in_ch, mid, 3)
        self.conv_1x1 = nn.Conv2d(mid, num_classes, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_1x1(self.conv_3x3(x))


class BiSeNet(nn.Module):
    """BiSeNet-R18. forward: B×3×H×W ImageNet-normalised RGB -> logits at 1/8 (eval) or a
    (main @1/8, aux_a @1/16, aux_b @1/8) tuple (train)."""

    def __init__(self, num_classes: int = 19):
        super().__init__()
        self.num_classes = num_classes
        c = CONV_CHANNELS
        # Registration order fixes the official state_dict order.
        self.context_path = ContextPath()
        self.spatial_path = SpatialPath(3, c)
        self.global_context = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBnRelu(512, c, 1))
        self.ffm = FeatureFusion(2 * c, 2 * c, reduction=1)
        self.arms = nn.ModuleList([AttentionRefinement(512, c), AttentionRefinement(256, c)])
        self.refines = nn.ModuleList([ConvBnRelu(c, c, 3), ConvBnRelu(c, c, 3)])
        self.heads = nn.ModuleList([BiSeNetHead(c, num_classes, is_aux=True),
                                    BiSeNetHead(c, num_classes, is_aux=True),
                                    BiSeNetHead(2 * c, num_classes, is_aux=False)])
        # The context path keeps the ResNet-18 init; the rest gets kaiming (fan_in) as in TorchSeg.
        for name, m in self.named_modules():
            if name.startswith("context_path"):
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: B×3×H×W -> (refine0 128@1/16, refine1 128@1/8, ffm 256@1/8)."""
        spatial = self.spatial_path(x)
        stages = self.context_path(x)[::-1]          # [layer4, layer3, layer2, layer1]
        coarse = self.global_context(stages[0])      # B×128×1×1
        prev = resize(coarse, stages[0].shape[-2:])
        refined = []
        for i, (arm, refine) in enumerate(zip(self.arms, self.refines)):
            fm = arm(stages[i]) + prev
            prev = refine(resize(fm, stages[i + 1].shape[-2:]))
            refined.append(prev)
        fused = self.ffm(spatial, prev)
        return refined[0], refined[1], fused

    def forward(self, x: Tensor):
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"BiSeNet.forward: x must be B×3×H×W, got shape {tuple(x.shape)}")
        aux_in_a, aux_in_b, fused = self.forward_features(x)
        main = self.heads[2](fused)
        if not self.training:
            return main
        return main, self.heads[0](aux_in_a), self.heads[1](aux_in_b)
