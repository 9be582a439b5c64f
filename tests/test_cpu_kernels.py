"""Each compiled CPU kernel (models.cpu_kernels) against the PyTorch code it replaces."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch

from models import cpu_kernels
from models.gsv import GSV
from models.gsvnet import GSVNet, shrink_uint8
from models.warp import warp
from models.keyframe_spec import parse_spec

pytestmark = pytest.mark.skipif(not cpu_kernels.available(), reason="numba is not installed")


def _torch_only():
    return mock.patch.object(cpu_kernels, "numba", None)


@pytest.mark.parametrize("grad", [False, True])
def test_warp_kernel_equals_grid_sample(grad):
    torch.manual_seed(0)
    x = torch.randn(2, 19, 24, 40) * 5
    flow = torch.randn(2, 2, 24, 40) * 6          # many samples land partly or fully outside
    flow[0, :, :4] = torch.tensor([3.0, -2.0]).view(2, 1, 1)   # integer flow: exact shifts
    with torch.set_grad_enabled(grad):
        fast = warp(x, flow)
    with _torch_only():
        ref = warp(x, flow)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5 * x.abs().max().item())
    # zero flow is the identity up to the normalise/unnormalise round trip of the grid (as for grid_sample)
    torch.testing.assert_close(warp(x, torch.zeros_like(flow)), x, rtol=1e-5, atol=1e-5 * x.abs().max().item())


def test_warp_with_gradients_uses_grid_sample():
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    flow = torch.randn(1, 2, 8, 8)
    warp(x, flow).sum().backward()               # the kernel has no backward: this must take grid_sample
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_edge_kernel_equals_laplacian_of_argmax():
    torch.manual_seed(1)
    gsv = GSV(5)
    logits = torch.randn(2, 5, 17, 23)
    logits[0, :, 3:9, 4:12] = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0]).view(5, 1, 1)  # ties: first max wins
    fast = gsv.edge_map(logits)
    with _torch_only():
        ref = gsv.edge_map(logits)
    assert torch.equal(fast, ref) and 0 < fast.mean() < 1
    # a uniform class-0 map has no edge at all, a uniform class-2 map marks the border (official quirk)
    flat = torch.zeros(1, 5, 6, 7)
    assert gsv.edge_map(flat).sum() == 0
    flat[:, 2] = 1
    border = gsv.edge_map(flat)[0, 0]
    assert border[1:-1, 1:-1].sum() == 0 and border[0].all() and border[:, -1].all()


@pytest.mark.parametrize("shape", [(1024, 2048), (97, 61)])
def test_shrink_kernel_equals_torch_lowres(shape):
    model = GSVNet.build(parse_spec("swiftnet"), "light", 19)
    rng = np.random.default_rng(2)
    frame = torch.from_numpy(rng.integers(0, 256, (2, *shape, 3), dtype=np.uint8)).permute(0, 3, 1, 2)
    fast = model.lowres_bgr(frame)
    with _torch_only():
        ref = model.lowres_bgr(frame)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    small = shrink_uint8(frame, fast.shape[-2:])      # and the value of one pixel by hand
    expected = ((small[1, 0, 3, 5] - 73.15) / 47.67).item()   # RGB channel 0 -> BGR channel 2
    assert fast[1, 2, 3, 5].item() == pytest.approx(expected, abs=1e-5)
