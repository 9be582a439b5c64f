"""SwiftNet-R18, single scale: the keyframe network of GSVNet-SN.

Architecture and state_dict layout follow `docs/formats.md#key-layouts` so that the official
Cityscapes weights (a raw state_dict, 195 entries) load with ``strict=True``:

    ResNet-18 trunk (models/resnet.py)     ->  skips at 1/4, 1/8, 1/16, 1/32
    SPP on the 1/32 skip                   ->  128 ch at 1/32
    3 ladder-style upsampling blocks       ->  128 ch at 1/4
    logits (BN-ReLU-Conv 1x1, with bias)   ->  C ch at 1/4

Conventions (stated once, here):
- Input: RGB on the 0-255 scale, already normalised with SWIFTNET_MEAN / SWIFTNET_STD. The official
  forward does not normalise, but the ``img_mean`` / ``img_std`` buffers stay in the state_dict.
- Skip features are the **ReLU'd** outputs of each layer's last BasicBlock. The official block is
  written to return ``relu(out), out`` (a pre-ReLU skip), but its ReLU is in-place, so both names
  hold the same rectified tensor. The official code's own outputs (tests/test_pipeline.py, parity
  case A) only match with the rectified skip; a pre-ReLU skip misses them by ~0.15 %.
- Every internal resize is bilinear with ``align_corners=False``, as in the official SwiftNet code.
- Output: raw logits at ceil(H/4) x ceil(W/4); no final upsampling (the GSVNet pipeline resizes).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from models.resnet import ResNet18

SWIFTNET_MEAN = (73.15, 82.90, 72.3)   # RGB, 0-255 scale
SWIFTNET_STD = (47.67, 48.49, 47.73)

SPP_GRIDS = (8, 4, 2)          # the official spp_grids is (8, 4, 2, 1) but only 3 levels are built
SPP_BN_MOMENTUM = 0.005        # the official SPP uses a much slower running-stat update
NUM_FEATURES = 128
_RESNET_PARTS = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")


class BNReluConv(nn.Sequential):
    """Pre-activation unit BN -> ReLU -> Conv (bias-free unless asked), 'same' padding.

    Children are named ``norm``, ``relu``, ``conv`` to give the official keys.
    """

    def __init__(self, in_ch: int, out_ch: int, k: int = 3, bias: bool = False,
                 bn_momentum: float = 0.1):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(in_ch, momentum=bn_momentum))
        # In-place is safe: the BN output is always a fresh tensor.
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(in_ch, out_ch, k, padding=k // 2, bias=bias))


class SpatialPyramidPooling(nn.Module):
    """SPP over the 1/32 features: 512 -> 128 (spp_bn), 3 pooled levels of 42 ch, fuse 254 -> 128."""

    def __init__(self, in_ch: int = 512, bottleneck: int = 128, level_ch: int = 42,
                 out_ch: int = NUM_FEATURES, grids: tuple[int, ...] = SPP_GRIDS):
        super().__init__()
        self.grids = tuple(grids)
        m = SPP_BN_MOMENTUM
        layers = {"spp_bn": BNReluConv(in_ch, bottleneck, k=1, bn_momentum=m)}
        for i in range(len(self.grids)):
            layers[f"spp{i}"] = BNReluConv(bottleneck, level_ch, k=1, bn_momentum=m)
        fused = bottleneck + len(self.grids) * level_ch
        layers["spp_fuse"] = BNReluConv(fused, out_ch, k=1, bn_momentum=m)
        self.spp = nn.ModuleDict(layers)

    def forward(self, x: Tensor) -> Tensor:
        """x: B×512×h×w -> B×128×h×w."""
        size = x.shape[-2:]
        # Grids keep the feature map's aspect ratio; Python round() as in the official code.
        aspect = size[1] / size[0]
        x = self.spp["spp_bn"](x)
        levels = [x]
        for i, g in enumerate(self.grids):
            pooled = F.adaptive_avg_pool2d(x, (g, max(1, round(g * aspect))))
            level = self.spp[f"spp{i}"](pooled)
            levels.append(F.interpolate(level, size=size, mode="bilinear", align_corners=False))
        return self.spp["spp_fuse"](torch.cat(levels, dim=1))  # cat: B×(128+3·42)×h×w


class UpsampleBlock(nn.Module):
    """Ladder step: resize the coarse features to the skip, add bottleneck(skip), blend (3×3)."""

    def __init__(self, skip_ch: int, ch: int = NUM_FEATURES):
        super().__init__()
        self.bottleneck = BNReluConv(skip_ch, ch, k=1)
        self.blend_conv = BNReluConv(ch, ch, k=3)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """x: B×128×h×w, skip: B×S×H'×W' -> B×128×H'×W'."""
        skip = self.bottleneck(skip)
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.blend_conv(x + skip)


def basic_block_with_skip(block: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Run a ResNet-18 BasicBlock (models/resnet.py) and return (relu(out), skip).

    skip is the rectified output as well: the official block's in-place ReLU overwrites the pre-ReLU
    sum it meant to return (see the module docstring). Kept as a separate function so the skip
    semantics are stated and tested in one place.
    """
    out = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
    identity = x if block.downsample is None else block.downsample(x)
    out = out + identity
    rectified = F.relu(out)
    return rectified, rectified


class SwiftNetBackbone(nn.Module):
    """ResNet-18 trunk + SPP + upsampling path (the official ``backbone.*`` keys)."""

    def __init__(self):
        super().__init__()
        # Kept for state_dict compatibility only; forward() expects an already normalised input.
        self.register_buffer("img_mean", torch.tensor(SWIFTNET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("img_std", torch.tensor(SWIFTNET_STD).view(1, 3, 1, 1))
        # The trunk inits convs kaiming_normal(fan_out) and BN to (1, 0), like the official code.
        resnet = ResNet18()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(resnet, name))
        self.spp = SpatialPyramidPooling(512)
        # Coarse-to-fine: up0 takes the layer3 skip (256 ch), up1 layer2 (128), up2 layer1 (64).
        self.upsample = nn.ModuleList(UpsampleBlock(c) for c in (256, 128, 64))
        for m in [*self.spp.modules(), *self.upsample.modules()]:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def forward_layer(layer: nn.Sequential, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (input for the next layer, skip of the last block)."""
        *head, last = layer
        for block in head:
            x = block(x)
        return basic_block_with_skip(last, x)

    def forward_down(self, image: Tensor) -> list[Tensor]:
        """image: B×3×H×W -> [skip1 64@1/4, skip2 128@1/8, skip3 256@1/16, spp 128@1/32]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(image))))
        features = []
        for layer in (self.layer1, self.layer2, self.layer3):
            x, skip = self.forward_layer(layer, x)
            features.append(skip)
        _, skip4 = self.forward_layer(self.layer4, x)
        features.append(self.spp(skip4))
        return features

    def forward_up(self, features: list[Tensor]) -> Tensor:
        """features as from forward_down -> B×128×(H/4)×(W/4)."""
        x, *skips = features[::-1]
        for up, skip in zip(self.upsample, skips):
            x = up(x, skip)
        return x

    def forward(self, image: Tensor) -> Tensor:
        return self.forward_up(self.forward_down(image))


class SwiftNet(nn.Module):
    """SwiftNet-R18 single scale. forward: B×3×H×W normalised RGB -> B×C×ceil(H/4)×ceil(W/4) logits."""

    def __init__(self, num_classes: int = 19):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = SwiftNetBackbone()
        self.logits = BNReluConv(NUM_FEATURES, num_classes, k=1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"SwiftNet.forward: x must be B×3×H×W, got shape {tuple(x.shape)}")
        return self.logits(self.backbone(x))

    def load_imagenet_backbone(self, state_dict: dict[str, Tensor]) -> None:
        """Load a resnet18 ImageNet state_dict (torchvision's layout) into the ResNet trunk (fc.* ignored).

        ``num_batches_tracked`` may be absent (pre-0.4 files such as resnet18-5c106cde.pth).
        Raises ValueError naming missing, unexpected or wrongly shaped keys.
        """
        expected = {k: v for k, v in self.backbone.state_dict().items()
                    if k.split(".")[0] in _RESNET_PARTS}
        given = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        missing = sorted(k for k in expected
                         if k not in given and not k.endswith("num_batches_tracked"))
        unexpected = sorted(k for k in given if k not in expected)
        shapes = sorted(f"{k}: got {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
                        for k, v in given.items()
                        if k in expected and tuple(v.shape) != tuple(expected[k].shape))
        if missing or unexpected or shapes:
            raise ValueError(
                "load_imagenet_backbone: state_dict is not a torchvision resnet18 state_dict; "
                f"missing keys: {missing}; unexpected keys: {unexpected}; shape mismatches: {shapes}")
        with torch.no_grad():
            for k, v in given.items():
                expected[k].copy_(v)
