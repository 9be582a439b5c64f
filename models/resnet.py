"""ResNet-18 (He et al., CVPR 2016), the trunk of SwiftNet and BiSeNet, written here so that building
either net does not import torchvision (whose import costs seconds of start-up).

Module names, shapes, initialisation and forward follow torchvision's ``resnet18`` (v1.5: the stride
sits on a block's first 3×3 conv), so every state_dict written for that layout (the official SwiftNet
and BiSeNet files, ImageNet backbones, ours) loads unchanged:

    conv1 (7×7 s2, 3->64) bn1 relu maxpool (3×3 s2)   -> 64 @ 1/4
    layer1..layer4: 2 BasicBlocks each (conv1 bn1 conv2 bn2 [downsample.0 conv1×1, downsample.1 BN])
                                                      -> 64 @ 1/4, 128 @ 1/8, 256 @ 1/16, 512 @ 1/32
    avgpool fc (512 -> num_classes)                   -> the ImageNet classifier

Every conv is bias-free. Construction draws from torch's random generator in torchvision's order (the
default initialisation of each module as it is created, classifier included, then kaiming-normal
fan_out for every conv), so a seeded build gives torchvision's numbers (tests/test_resnet.py).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

STAGE_CHANNELS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); the shortcut is a strided 1×1 conv + BN
    (``downsample``) where the stride or the channel count changes, else the identity."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        # Registration order fixes the state_dict order: conv1, bn1, conv2, bn2, downsample.
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)   # in-place is safe: it always acts on a fresh BN/sum output
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        """x: B×in×H×W -> B×out×(H/stride)×(W/stride)."""
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _stage(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    blocks = [BasicBlock(in_ch, out_ch, stride)]
    blocks += [BasicBlock(out_ch, out_ch) for _ in range(BLOCKS_PER_STAGE - 1)]
    return nn.Sequential(*blocks)


class ResNet18(nn.Module):
    """ResNet-18 with its ImageNet classifier. forward: B×3×H×W -> B×num_classes; ``forward_stages``
    gives the four stage outputs instead. Keyframe nets take the trunk modules (conv1 … layer4) by name."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, STAGE_CHANNELS[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_CHANNELS[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = STAGE_CHANNELS[0]
        for i, out_ch in enumerate(STAGE_CHANNELS):
            self.add_module(f"layer{i + 1}", _stage(in_ch, out_ch, stride=1 if i == 0 else 2))
            in_ch = out_ch
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(STAGE_CHANNELS[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """x: B×3×H×W -> [64 @ 1/4, 128 @ 1/8, 256 @ 1/16, 512 @ 1/32] (each after its block's ReLU)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stages = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            stages.append(x)
        return stages

    def forward(self, x: Tensor) -> Tensor:
        """x: B×3×H×W -> B×num_classes class scores."""
        pooled = self.avgpool(self.forward_stages(x)[-1])   # B×512×1×1
        return self.fc(torch.flatten(pooled, 1))
