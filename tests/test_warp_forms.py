"""The warp's graph form (models.warp.warp_gathered) against grid_sample, and that export takes it."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.deployment.onnx_export import write_graph
from models import cpu_kernels
from models.warp import sampling_grid, warp, warp_gathered


def _flows(b: int, h: int, w: int) -> torch.Tensor:
    torch.manual_seed(3)
    flow = torch.randn(b, 2, h, w) * 6                     # many samples partly or fully outside
    flow[0, :, :3] = torch.tensor([2.0, -1.0]).view(2, 1, 1)  # integer flow: exact shifts
    flow[0, 0, 5:7] = 1e4                                   # far outside: zeros
    flow[-1, 1, 3:5] = -0.5                                  # half-pixel steps
    return flow


@pytest.mark.parametrize("shape", [(2, 19, 24, 40), (1, 3, 7, 5)])
def test_gathered_form_equals_grid_sample(shape):
    b, c, h, w = shape
    x = torch.randn(shape) * 5
    grid_x, grid_y = sampling_grid(_flows(b, h, w))
    ref = F.grid_sample(x, torch.stack((grid_x, grid_y), dim=-1), mode="bilinear", padding_mode="zeros",
                        align_corners=True)
    out = warp_gathered(x, grid_x, grid_y)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * x.abs().max().item())
    assert out[0, :, 5:7].abs().max() == 0                    # fully outside -> 0
    # integer flow (2, -1) away from the borders: a shift, by hand (up to the grid's float round trip)
    torch.testing.assert_close(out[0, :, 1:3, :w - 2], x[0, :, 0:2, 2:w], rtol=1e-5,
                               atol=1e-5 * x.abs().max().item())


def test_gathered_form_is_differentiable_like_grid_sample():
    x = torch.randn(1, 4, 9, 11, requires_grad=True)
    flow = (torch.randn(1, 2, 9, 11) * 2).requires_grad_()
    grads = []
    for form in ("grid_sample", "gathered"):
        gx, gy = sampling_grid(flow)
        out = (F.grid_sample(x, torch.stack((gx, gy), dim=-1), align_corners=True) if form == "grid_sample"
               else warp_gathered(x, gx, gy))
        grads.append(torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), (x, flow)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


class _Warp(nn.Module):
    def forward(self, prev_lowres, cur_lowres, prev_logits):  # the propagate graph's input names
        return warp(prev_logits, cur_lowres[:, :2] * 3)


@pytest.mark.slow
def test_export_writes_the_gathered_form(tmp_path: Path):
    import onnx
    import onnxruntime as ort
    torch.manual_seed(4)
    inputs = (torch.randn(1, 3, 16, 24), torch.randn(1, 3, 16, 24), torch.randn(1, 5, 16, 24) * 4)
    path = write_graph(_Warp().eval(), "propagate", inputs, tmp_path / "w.onnx", dynamic=False)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "GridSample" not in ops and "Gather" in ops
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {n: t.numpy() for n, t in zip(("prev_lowres", "cur_lowres", "prev_logits"), inputs)})[0]
    with cpu_kernels.disabled(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        ref = _Warp()(*inputs)  # eager: grid_sample
    assert np.abs(out - ref.numpy()).max() <= 1e-5 * ref.abs().max().item()
