"""Full-resolution labels from 1/8-scale logits: bilinear (align_corners=True) upsampling, then argmax.

On CPU a compiled kernel (models.cpu_kernels.labels) gives the same labels without building the
C×H×W upsampled tensor, using two facts about a convex combination of the four corner vectors of an
output pixel's low-resolution cell:
1. a class j whose best corner value is below L = max_c min_i v_i[c] (the value some class is
   guaranteed everywhere in the cell) can never win there, so only the remaining candidate classes
   are interpolated;
2. if a single candidate is left (e.g. the four corners share their argmax, far from any boundary),
   the whole cell takes that label without any interpolation.
The result equals the plain upsample + argmax except where two classes tie exactly (or within float
rounding of a tie), where either answer is a valid argmax. Other devices (CUDA) use the plain path,
which is cheap there; so does CPU if numba is missing.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models import cpu_kernels
from models.resize import source_coordinates

MAX_CLASSES = 255  # labels are uint8


def logits_to_labels_plain(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Reference: B×C×h×w logits -> B×H×W uint8 labels via a full upsample + argmax."""
    up = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=True)
    return up.argmax(1).to(torch.uint8)


def _cells(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output index: its cell (left corner, clamped to in_size−2) and the weight of the right corner."""
    src = source_coordinates(in_size, out_size)
    cell = src.floor().long().clamp_(max=in_size - 2)
    return cell.to(torch.int32).numpy(), (src - cell).numpy()


def _runs(cells: np.ndarray, num_cells: int) -> np.ndarray:
    """Output indices of each cell as runs: cell j covers [start[j], start[j+1]) (cells are non-decreasing)."""
    return np.searchsorted(cells, np.arange(num_cells + 1)).astype(np.int64)


def _labels_cpu(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """B×C×h×w float32 CPU logits (h, w >= 2) -> B×H×W uint8 via the compiled kernel."""
    h, w = logits.shape[-2:]
    cy, ay = _cells(h, size[0])
    cx, ax = _cells(w, size[1])
    col_start = _runs(cx, w - 1)
    cpu_kernels.follow_torch_threads()
    out = np.empty((logits.shape[0], *size), np.uint8)
    for b, x in enumerate(logits):
        cpu_kernels.labels(np.ascontiguousarray(x.permute(1, 2, 0).numpy()), cy, ay, col_start, ax, out[b])
    return torch.from_numpy(out)


def logits_to_labels(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """B×C×h×w logits -> B×H×W uint8 labels on the logits' device, equal to :func:`logits_to_labels_plain`
    up to exact ties."""
    if logits.shape[1] > MAX_CLASSES:
        raise ValueError(f"labels are uint8: at most {MAX_CLASSES} classes, got {logits.shape[1]}")
    h, w = logits.shape[-2:]
    if logits.device.type != "cpu" or h < 2 or w < 2 or size[0] < 1 or size[1] < 1 or not cpu_kernels.available():
        return logits_to_labels_plain(logits, size)
    return _labels_cpu(logits.detach().float(), tuple(size))
