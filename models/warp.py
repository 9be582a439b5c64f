"""Backward warping of 1/8-scale maps by a dense flow field (docs/conventions.md#tensors-between-frames).

Convention, stated once here and relied upon everywhere else:

- ``flow`` is B×2×H×W on the same grid as the map being warped; channel 0 is x (along the width),
  channel 1 is y (along the height); units are pixels of that grid.
- Backward warp: ``out(p) = x(p + flow(p))``, bilinear, zero outside the image, pixel centres on the
  corners of the normalised grid (``align_corners=True``, the behaviour the official weights were
  trained with under torch 1.1).
- The official flow nets do not output pixels: they output 4× the displacement in pixels of the 1/8
  grid (the official warp divides by 4 internally, and the flow map is resized to the 1/8 grid
  without rescaling its vectors). We keep ``warp`` in plain pixels and make that factor explicit:
  the pipeline divides the raw flow-net output by ``FLOW_DIVISOR`` before calling ``warp``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models import cpu_kernels

FLOW_DIVISOR = 4
"""Raw flow-net output / FLOW_DIVISOR = displacement in pixels of the 1/8 grid (official convention)."""


def warp(x: Tensor, flow: Tensor) -> Tensor:
    """Backward-warp ``x`` by ``flow``: ``out[b, :, y, x] = x[b, :, y + v, x + u]`` (bilinear, zeros outside).

    Args:
        x: B×C×H×W floating-point map (e.g. the previous frame's logits at 1/8 scale), H, W ≥ 2.
        flow: B×2×H×W displacements in pixels of x's grid; channel 0 = u (x / width), channel 1 = v
            (y / height). A positive u samples to the right. Cast to ``x.dtype`` if it differs.

    Returns:
        B×C×H×W tensor of ``x.dtype`` on ``x.device``. Neither input is modified.
    """
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"warp: x must be a floating-point B×C×H×W tensor, got {x.dtype} {tuple(x.shape)}")
    b, _, h, w = x.shape
    if flow.dim() != 4 or flow.shape[0] != b or flow.shape[1] != 2 or flow.shape[2:] != x.shape[2:]:
        raise ValueError(f"warp: flow must be B×2×H×W = {(b, 2, h, w)} to match x, got {tuple(flow.shape)}")
    if not flow.is_floating_point():
        raise ValueError(f"warp: flow must be floating point, got {flow.dtype}")
    if h < 2 or w < 2:
        # With align_corners=True a 1-pixel axis has no scale, so a displacement along it cannot be expressed.
        raise ValueError(f"warp: x needs H >= 2 and W >= 2, got H={h}, W={w}")
    flow = flow.to(dtype=x.dtype)  # grid_sample needs grid and input of the same dtype
    grid_x, grid_y = sampling_grid(flow)
    if torch.compiler.is_exporting():
        return warp_gathered(x, grid_x, grid_y)
    if _compiled_applies(x, flow):
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        cpu_kernels.follow_torch_threads()
        cpu_kernels.warp(x.contiguous().numpy(), grid_x.contiguous().numpy(), grid_y.contiguous().numpy(), out.numpy())
        return out
    grid = torch.stack((grid_x, grid_y), dim=-1)  # B×H×W×2, last dim (x, y) as grid_sample expects
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def sampling_grid(flow: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel flow B×2×H×W (H, W ≥ 2) -> where each pixel samples, (x, y) each B×H×W, in grid_sample's
    align_corners=True coordinates. Pixel displacement → normalised displacement: the full width spans 2
    over (W − 1) pixel steps. Out-of-place, so the caller's flow is never touched (unlike the official code)."""
    h, w = flow.shape[-2:]
    grid_x = corner_positions(w, flow).view(1, 1, w) + flow[:, 0] * (2.0 / (w - 1))
    grid_y = corner_positions(h, flow).view(1, h, 1) + flow[:, 1] * (2.0 / (h - 1))
    return grid_x, grid_y


def warp_gathered(x: Tensor, grid_x: Tensor, grid_y: Tensor) -> Tensor:
    """grid_sample(x, (grid_x, grid_y), bilinear, zeros, align_corners=True) written as row gathers.

    The form an exported graph holds (``warp`` takes it while ``torch.compiler.is_exporting()``): ONNX
    Runtime's GridSample kernel computes every class channel's sample separately and takes ~4.5 ms for
    19×128×256 on 2 CPU cores, ~7× the compiled kernel, while this form takes ~2 ms there: the
    four corners of every pixel are computed once, each corner's C values are copied as one row of the
    channels-last map (a Gather per corner), and corners outside the map get weight 0 (their index
    is clamped into it). Same corner weights and summation order as grid_sample's CPU kernel; tested against it.

    x: B×C×H×W; grid_x, grid_y: B×H×W in align_corners=True coordinates (-1 … 1 spans the map).
    """
    b, c, h, w = x.shape
    ix = (grid_x + 1) / 2 * (w - 1)  # grid_sample's un-normalisation
    iy = (grid_y + 1) / 2 * (h - 1)
    x0, y0 = ix.floor(), iy.floor()
    x1, y1 = x0 + 1, y0 + 1
    index, weight = [], []
    for cy, wy in ((y0, y1 - iy), (y1, iy - y0)):  # corner order nw, ne, sw, se
        for cx, wx in ((x0, x1 - ix), (x1, ix - x0)):
            inside = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)
            weight.append(wx * wy * inside.to(x.dtype))
            index.append(cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1))
    first_row = (torch.arange(b, device=x.device) * (h * w)).view(b, 1, 1)
    table = x.permute(0, 2, 3, 1).reshape(b * h * w, c)  # one row of C values per pixel

    def corner(k: int) -> Tensor:  # B×H×W×C: corner k's values, weighted
        rows = (index[k].long() + first_row).reshape(-1)
        return table.index_select(0, rows).view(b, h, w, c) * weight[k].unsqueeze(-1)

    out = corner(0)
    for k in range(1, 4):
        out = out + corner(k)
    return out.permute(0, 3, 1, 2)


def corner_positions(n: int, like: Tensor) -> Tensor:
    """The n pixel centres of an axis in grid_sample's align_corners=True coordinates: -1 … 1, n ≥ 2.

    torch.linspace(-1, 1, n)'s own formula (step 2/(n−1) in the tensor's dtype, the first half counted
    from −1, the second half from +1, so both ends are exact), written with arange so that an exported
    graph keeps n symbolic (linspace fixes it). linspace's vectorised CPU kernel adds the step inside
    each SIMD block instead, so a few of its points differ from these by one float step (≤ 6e-8).
    """
    index = torch.arange(n, dtype=like.dtype, device=like.device)
    step = torch.full((), 2.0, dtype=like.dtype, device=like.device) / (n - 1)
    from_start = step * index - 1.0
    from_end = 1.0 - step * ((n - 1) - index)
    return torch.where(index < n // 2, from_start, from_end)


def _compiled_applies(x: Tensor, flow: Tensor) -> bool:
    """The compiled kernel (same samples as grid_sample up to float rounding) runs for CPU float32
    inference; anything that needs gradients, or other devices and dtypes, use grid_sample."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or flow.requires_grad)
    return x.device.type == "cpu" and x.dtype == torch.float32 and not needs_grad and cpu_kernels.available()
