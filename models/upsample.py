"""Full-resolution labels from 1/8-scale logits: bilinear (align_corners=True) upsampling, then argmax.

On CPU a compiled kernel (numba, parallel over rows) gives the same labels without building the
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

try:
    import numba
except ImportError:  # the plain path gives the same labels, only slower
    numba = None

MAX_CLASSES = 255  # labels are uint8


def logits_to_labels_plain(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Reference: B×C×h×w logits -> B×H×W uint8 labels via a full upsample + argmax."""
    up = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=True)
    return up.argmax(1).to(torch.uint8)


def _cells(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output index: its cell (left corner, clamped to in_size−2) and the weight of the right corner.

    Source coordinate = index · (in−1)/(out−1) in float32, as PyTorch's align_corners=True kernel computes it.
    """
    scale = torch.tensor(in_size - 1, dtype=torch.float32) / max(out_size - 1, 1)
    src = torch.arange(out_size, dtype=torch.float32) * scale
    cell = src.floor().long().clamp_(max=in_size - 2)
    return cell.to(torch.int32).numpy(), (src - cell).numpy()


def _runs(cells: np.ndarray, num_cells: int) -> np.ndarray:
    """Output indices of each cell as runs: cell j covers [start[j], start[j+1]) (cells are non-decreasing)."""
    return np.searchsorted(cells, np.arange(num_cells + 1)).astype(np.int64)


def _labels_kernel(v, cy, ay, col_start, ax, out):  # pragma: no cover - compiled
    """Bilinear upsample + argmax. v: h×w×C float32 logits; cy/ay: cell row and weight of the lower
    corner per output row; col_start: cell j covers output columns [col_start[j], col_start[j+1]);
    ax: weight of the right corner per output column; out: H×W uint8, filled in place.

    Per cell, a class whose best corner is below the best worst corner (a value some class keeps
    everywhere in the cell) cannot win: only the remaining candidates are interpolated, and a cell
    with one candidate is filled without interpolating.
    """
    h, w, num_classes = v.shape
    one = np.float32(1.0)
    cand = np.empty((h - 1, w - 1, num_classes), np.uint8)   # candidates in ascending class order:
    count = np.empty((h - 1, w - 1), np.int32)               # ties then resolve like argmax
    for i in numba.prange(h - 1):
        for j in range(w - 1):
            guaranteed = -np.inf
            for c in range(num_classes):
                low = min(min(v[i, j, c], v[i, j + 1, c]), min(v[i + 1, j, c], v[i + 1, j + 1, c]))
                guaranteed = max(guaranteed, low)
            n = 0
            for c in range(num_classes):
                high = max(max(v[i, j, c], v[i, j + 1, c]), max(v[i + 1, j, c], v[i + 1, j + 1, c]))
                if high >= guaranteed:
                    cand[i, j, n] = c
                    n += 1
            count[i, j] = n
    for y in numba.prange(out.shape[0]):
        i, a = cy[y], ay[y]
        a1 = one - a
        left = np.empty(num_classes, np.float32)    # candidates blended along y: left / right column
        right = np.empty(num_classes, np.float32)
        for j in range(w - 1):
            x0, x1, n = col_start[j], col_start[j + 1], count[i, j]
            if x0 == x1:
                continue
            if n == 1:
                out[y, x0:x1] = cand[i, j, 0]
                continue
            for k in range(n):
                c = cand[i, j, k]
                left[k] = a1 * v[i, j, c] + a * v[i + 1, j, c]
                right[k] = a1 * v[i, j + 1, c] + a * v[i + 1, j + 1, c]
            for x in range(x0, x1):
                b = ax[x]
                b1 = one - b
                best, arg = b1 * left[0] + b * right[0], 0
                for k in range(1, n):
                    value = b1 * left[k] + b * right[k]
                    if value > best:
                        best, arg = value, k
                out[y, x] = cand[i, j, arg]


if numba is not None:  # compiled on first use, cached next to this file
    _labels_kernel = numba.njit(parallel=True, cache=True, nogil=True)(_labels_kernel)


def _follow_torch_threads() -> None:
    """Use as many threads as torch does. numba and torch share one OpenMP runtime here, so lowering
    numba's count below torch's could lower torch's too: in that case (NUMBA_NUM_THREADS set lower) leave it."""
    threads = torch.get_num_threads()
    if threads <= numba.config.NUMBA_NUM_THREADS and threads != numba.get_num_threads():
        numba.set_num_threads(threads)


def _labels_cpu(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """B×C×h×w float32 CPU logits (h, w >= 2) -> B×H×W uint8 via the compiled kernel."""
    h, w = logits.shape[-2:]
    cy, ay = _cells(h, size[0])
    cx, ax = _cells(w, size[1])
    col_start = _runs(cx, w - 1)
    _follow_torch_threads()
    out = np.empty((logits.shape[0], *size), np.uint8)
    for b, x in enumerate(logits):
        _labels_kernel(np.ascontiguousarray(x.permute(1, 2, 0).numpy()), cy, ay, col_start, ax, out[b])
    return torch.from_numpy(out)


def logits_to_labels(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """B×C×h×w logits -> B×H×W uint8 labels on the logits' device, equal to :func:`logits_to_labels_plain`
    up to exact ties."""
    if logits.shape[1] > MAX_CLASSES:
        raise ValueError(f"labels are uint8: at most {MAX_CLASSES} classes, got {logits.shape[1]}")
    h, w = logits.shape[-2:]
    if numba is None or logits.device.type != "cpu" or h < 2 or w < 2 or size[0] < 1 or size[1] < 1:
        return logits_to_labels_plain(logits, size)
    return _labels_cpu(logits.detach().float(), tuple(size))
