"""Full-resolution labels from 1/8-scale logits: bilinear (align_corners=True) upsampling, then argmax.

The fast path is exact. Every output pixel is a convex combination of the logit vectors at the four
corners of its low-resolution cell. If those four vectors share the same argmax c, then every convex
combination of them has argmax c too (sum_i a_i v_i[c] >= sum_i a_i v_i[j] for all j). So only the
pixels of "boundary" cells, whose corners disagree, need the interpolation; the rest copy the cell's
label. The result equals the plain upsample+argmax except where two classes tie exactly (or within
float rounding of a tie), where either answer is a valid argmax.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def logits_to_labels_plain(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Reference: B×C×h×w logits -> B×H×W uint8 labels via a full upsample + argmax."""
    up = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=True)
    return up.argmax(1).to(torch.uint8)


def _cells(in_size: int, out_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """For each output index: its cell (left corner, clamped to in_size−2) and the weight of the right corner.

    Source coordinate = index · (in−1)/(out−1) in float32, as PyTorch's align_corners=True kernel computes it.
    """
    scale = torch.tensor(in_size - 1, dtype=torch.float32) / max(out_size - 1, 1)
    src = torch.arange(out_size, device=device, dtype=torch.float32) * scale.to(device)
    cell = src.floor().long().clamp_(max=in_size - 2)
    return cell, src - cell


def _labels_one(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """C×h×w -> H×W uint8 (h, w >= 2)."""
    num_classes, h, w = logits.shape
    low = logits.argmax(0)                                                   # h×w
    corner = low[:-1, :-1]
    uniform = (corner == low[1:, :-1]) & (corner == low[:-1, 1:]) & (corner == low[1:, 1:])
    cy, wy = _cells(h, size[0], logits.device)
    cx, wx = _cells(w, size[1], logits.device)
    labels = corner.to(torch.uint8).index_select(0, cy).index_select(1, cx)  # H×W, right where uniform
    boundary = ~uniform.index_select(0, cy).index_select(1, cx)
    ys, xs = boundary.nonzero(as_tuple=True)
    if ys.numel() == 0:
        return labels
    y0, x0, ay, ax = cy[ys], cx[xs], wy[ys], wx[xs]
    rows = logits.permute(1, 2, 0).reshape(h * w, num_classes)             # (h·w)×C, one row per pixel
    top = y0 * w + x0
    ay, ax = ay.unsqueeze(1), ax.unsqueeze(1)
    # same order of operations as the bilinear kernel: blend along x, then along y
    upper = torch.lerp(rows[top], rows[top + 1], ax)                        # N×C
    lower = torch.lerp(rows[top + w], rows[top + w + 1], ax)
    labels[ys, xs] = torch.lerp(upper, lower, ay).argmax(1).to(torch.uint8)
    return labels


def logits_to_labels(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """B×C×h×w logits -> B×H×W uint8 labels, equal to :func:`logits_to_labels_plain` up to exact ties."""
    if logits.shape[1] > 256:
        raise ValueError(f"labels are uint8: at most 256 classes, got {logits.shape[1]}")
    h, w = logits.shape[-2:]
    if h < 2 or w < 2 or size[0] < 2 or size[1] < 2:
        return logits_to_labels_plain(logits, size)
    logits = logits.float()
    return torch.stack([_labels_one(x, size) for x in logits])
