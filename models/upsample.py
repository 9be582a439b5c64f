"""Full-resolution labels from 1/8-scale logits: bilinear (align_corners=True) upsampling, then argmax."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def logits_to_labels_plain(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Reference: B×C×h×w logits -> B×H×W uint8 labels via a full upsample + argmax."""
    up = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=True)
    return up.argmax(1).to(torch.uint8)


def logits_to_labels(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """B×C×h×w logits -> B×H×W uint8 labels (same result as :func:`logits_to_labels_plain`)."""
    return logits_to_labels_plain(logits, size)
