"""Full-resolution labels from 1/8-scale logits: bilinear (align_corners=True) upsampling, then argmax.

The fast path is exact, using two facts about a convex combination of the four corner vectors of
an output pixel's low-resolution cell:
1. if the four corners share the same argmax c, every convex combination has argmax c
   (sum_i a_i v_i[c] >= sum_i a_i v_i[j] for all j), so such "uniform" cells just copy c;
2. in a "boundary" cell, a class j whose best corner value is below L = max_c min_i v_i[c] (the value
   some class is guaranteed everywhere in the cell) can never win there, so only the few remaining
   candidate classes are interpolated.
The result equals the plain upsample + argmax except where two classes tie exactly (or within float
rounding of a tie), where either answer is a valid argmax.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

BOUNDARY = 255  # marks boundary cells in the uint8 cell map (labels are < 255 classes)
PLAIN_ABOVE = 0.5  # boundary-cell fraction above which the full upsample is cheaper (measured: ~55 % on 2 cores)
NEVER = -1e30  # padding value of non-candidate slots: finite, so 0 · NEVER stays 0 (−inf would give NaN)


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


def _candidates(corners: Tensor) -> tuple[Tensor, Tensor]:
    """corners: M×4×C -> (values M×4×K padded with NEVER, classes M×K) of the classes that can win.

    Candidates keep ascending class order, so argmax over them breaks ties like argmax over all classes.
    """
    guaranteed = corners.amin(1).amax(1, keepdim=True)                     # M×1: L of each cell
    possible = corners.amax(1) >= guaranteed                                # M×C
    k = int(possible.sum(1).max())
    # stable sort puts the candidate classes first, in ascending class order
    order = torch.sort((~possible).to(torch.uint8), dim=1, stable=True).indices[:, :k]   # M×K
    values = corners.gather(2, order.unsqueeze(1).expand(-1, 4, -1))        # M×4×K
    values = values.masked_fill(~possible.gather(1, order).unsqueeze(1), NEVER)
    return values, order


def _labels_one(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """C×h×w -> H×W uint8 (h, w >= 2)."""
    num_classes, h, w = logits.shape
    pixels = logits.permute(1, 2, 0)                                        # h×w×C (contiguous if NHWC)
    low = logits.max(0).indices                                             # h×w (= argmax, faster)
    corner = low[:-1, :-1]
    uniform = (corner == low[1:, :-1]) & (corner == low[:-1, 1:]) & (corner == low[1:, 1:])
    if (~uniform).float().mean() > PLAIN_ABOVE:  # mostly boundaries (e.g. noisy predictions)
        return logits_to_labels_plain(logits.unsqueeze(0), size)[0]
    cell_map = torch.where(uniform, corner, BOUNDARY).to(torch.uint8)       # (h−1)×(w−1)
    cy, wy = _cells(h, size[0], logits.device)
    cx, wx = _cells(w, size[1], logits.device)
    labels = cell_map.index_select(0, cy).index_select(1, cx)               # H×W, BOUNDARY where undecided
    ys, xs = (labels == BOUNDARY).nonzero(as_tuple=True)
    if ys.numel() == 0:
        return labels
    # one row per boundary cell: its 4 corner vectors (top-left, top-right, bottom-left, bottom-right)
    cell_id = torch.full(uniform.shape, -1, dtype=torch.long, device=logits.device)
    by, bx = (~uniform).nonzero(as_tuple=True)
    cell_id[by, bx] = torch.arange(by.numel(), device=logits.device)
    corners = torch.stack([pixels[by, bx], pixels[by, bx + 1], pixels[by + 1, bx], pixels[by + 1, bx + 1]], 1)
    values, classes = _candidates(corners.float())                          # M×4×K, M×K
    m = cell_id[cy[ys], cx[xs]]                                             # N
    v = values[m]                                                           # N×4×K
    ay, ax = wy[ys].unsqueeze(1), wx[xs].unsqueeze(1)
    # the bilinear kernel's order: blend along x, then along y
    top = (1 - ax) * v[:, 0] + ax * v[:, 1]
    bottom = (1 - ax) * v[:, 2] + ax * v[:, 3]
    best = ((1 - ay) * top + ay * bottom).argmax(1, keepdim=True)           # N×1 index into the candidates
    labels[ys, xs] = classes[m].gather(1, best).squeeze(1).to(torch.uint8)
    return labels


def logits_to_labels(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """B×C×h×w logits -> B×H×W uint8 labels, equal to :func:`logits_to_labels_plain` up to exact ties."""
    if logits.shape[1] >= BOUNDARY:
        raise ValueError(f"labels are uint8: at most {BOUNDARY - 1} classes, got {logits.shape[1]}")
    h, w = logits.shape[-2:]
    if h < 2 or w < 2 or size[0] < 2 or size[1] < 2:
        return logits_to_labels_plain(logits, size)
    logits = logits.float()
    return torch.stack([_labels_one(x, size) for x in logits])
