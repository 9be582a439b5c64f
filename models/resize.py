"""Every bilinear resize of the project, one module (align_corners=True unless a net says otherwise).

- ``resize``: F.interpolate(bilinear, align_corners=True), a no-op at the same size; differentiable.
- ``resize_bilinear``: the same values by a compiled kernel for CPU float32 inference (keeps the memory
  format), else ``resize``.
- ``shrink_uint8``: the same resize of a uint8 frame, touching only the rows/columns it samples.
- ``bilinear_taps`` / ``bilinear_taps_tensors``: the (left, right, right weight) taps all of them use.
Nets that resize with align_corners=False inside (SwiftNet's pyramid, PIDNet) call F.interpolate
themselves: that is part of their definition, not a pipeline convention.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models import cpu_kernels


def _as_size(size) -> tuple[int, int]:
    """(height, width) as Python ints; symbolic sizes of a traced graph stay symbolic (int() would fix them)."""
    return tuple(s if isinstance(s, torch.SymInt) else int(s) for s in (size[0], size[1]))


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear, align_corners=True, to ``size`` (returns ``x`` itself when it already has that size)."""
    size = _as_size(size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def resize_bilinear(x: Tensor, size: tuple[int, int]) -> Tensor:
    """F.interpolate(x, size, mode="bilinear", align_corners=True), by the compiled kernel for CPU float32
    inference (same arithmetic and order; keeps x's memory format)."""
    size = _as_size(size)
    if tuple(x.shape[-2:]) == size:
        return x
    needs_grad = torch.is_grad_enabled() and x.requires_grad
    if x.device.type != "cpu" or x.dtype != torch.float32 or needs_grad or not cpu_kernels.available():
        return resize(x, size)
    layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1 \
        else torch.contiguous_format
    out = torch.empty((x.shape[0], x.shape[1], *size), dtype=x.dtype, memory_format=layout)
    y0, y1, ay = bilinear_taps(x.shape[-2], size[0])
    x0, x1, ax = bilinear_taps(x.shape[-1], size[1])
    cpu_kernels.follow_torch_threads()
    cpu_kernels.resize(x.permute(0, 2, 3, 1).numpy(), y0, y1, ay, x0, x1, ax, out.permute(0, 2, 3, 1).numpy())
    return out


def source_coordinates(in_size: int, out_size: int, device: torch.device | str | None = None) -> Tensor:
    """align_corners=True source coordinate of each output index, in float32 as PyTorch computes it."""
    scale = torch.full((), in_size - 1, dtype=torch.float32, device=device) / max(out_size - 1, 1)
    return torch.arange(out_size, dtype=torch.float32, device=device) * scale


def bilinear_taps_tensors(in_size: int, out_size: int, device: torch.device | str | None = None
                          ) -> tuple[Tensor, Tensor, Tensor]:
    """align_corners=True bilinear taps as tensors on ``device``: (left index, right index, right weight).
    Torch ops only, so a traced graph computes them from its input size."""
    src = source_coordinates(in_size, out_size, device)
    left = src.floor().long().clamp(max=in_size - 1)
    right = (left + 1).clamp(max=in_size - 1)
    return left, right, src - left


def bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """align_corners=True taps per output index as numpy arrays (for the compiled kernels)."""
    left, right, weight = bilinear_taps_tensors(in_size, out_size)
    return left.numpy(), right.numpy(), weight.numpy()


def shrink_uint8(frame: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear (align_corners=True) resize of a uint8 B×3×H×W frame to float B×3×h×w, touching only the
    rows and columns it samples: the same values as F.interpolate on the float frame (same order of
    operations: along x, then along y) without converting the whole frame to float. Gathers with
    index_select only (no data-dependent sizes), so the same code exports to ONNX."""
    x0, x1, ax = bilinear_taps_tensors(frame.shape[-1], size[1], frame.device)
    y0, y1, ay = bilinear_taps_tensors(frame.shape[-2], size[0], frame.device)

    def along_x(rows: Tensor) -> Tensor:
        return (1 - ax) * rows.index_select(-1, x0).float() + ax * rows.index_select(-1, x1).float()

    ay = ay.view(-1, 1)
    return (1 - ay) * along_x(frame.index_select(-2, y0)) + ay * along_x(frame.index_select(-2, y1))
