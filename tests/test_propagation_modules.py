"""Flow nets, warp and GSV: official key layouts, hand-computed numbers, independent re-implementations."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from models.flownet import FlowLight, FlowNetS, build_flow_net
from models.gsv import GSV, canonical_delay_kernels
from models.warp import FLOW_DIVISOR, warp

DATA = Path(__file__).parent / "data"

# docs/formats.md#key-layouts: FlowNetS (batchNorm=False) state_dict, in registration order.
FLOWNETS_WEIGHTS = [
    ("conv1.0", (64, 6, 7, 7)), ("conv2.0", (128, 64, 5, 5)), ("conv3.0", (256, 128, 5, 5)),
    ("conv3_1.0", (256, 256, 3, 3)), ("conv4.0", (512, 256, 3, 3)), ("conv4_1.0", (512, 512, 3, 3)),
    ("conv5.0", (512, 512, 3, 3)), ("conv5_1.0", (512, 512, 3, 3)), ("conv6.0", (1024, 512, 3, 3)),
    ("conv6_1.0", (1024, 1024, 3, 3)), ("deconv5.0", (1024, 512, 4, 4)), ("deconv4.0", (1026, 256, 4, 4)),
    ("deconv3.0", (770, 128, 4, 4)), ("deconv2.0", (386, 64, 4, 4)), ("predict_flow6", (2, 1024, 3, 3)),
    ("predict_flow5", (2, 1026, 3, 3)), ("predict_flow4", (2, 770, 3, 3)), ("predict_flow3", (2, 386, 3, 3)),
    ("predict_flow2", (2, 194, 3, 3)), ("upsampled_flow6_to_5", (2, 2, 4, 4)),
    ("upsampled_flow5_to_4", (2, 2, 4, 4)), ("upsampled_flow4_to_3", (2, 2, 4, 4)),
    ("upsampled_flow3_to_2", (2, 2, 4, 4)),
]
# ConvTranspose2d weights are (in, out, k, k): the bias has the second size.
FLOWNETS_KEYS = [entry for name, shape in FLOWNETS_WEIGHTS for entry in (
    (f"{name}.weight", shape, "float32"),
    (f"{name}.bias", (shape[1] if ("deconv" in name or "upsampled" in name) else shape[0],), "float32"))]


def _layout(module):
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in module.state_dict().items()]


def _read_keys(name, strip=""):
    rows = json.loads((DATA / name).read_text())
    return [(k[len(strip):] if k.startswith(strip) else k, tuple(shape), dtype) for k, shape, dtype in rows]


def _count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def flownets():
    torch.manual_seed(0)
    return FlowNetS().eval()


@pytest.fixture(scope="module")
def gsv():
    torch.manual_seed(1)
    return GSV().eval()


# ----------------------------------------------------------------------------- layouts and sizes

def test_flow_light_layout_and_count():
    net = FlowLight()
    assert _layout(net) == _read_keys("keys_flow_light.json")
    assert _count(net) == 186_402


def test_flownets_layout_count_and_init(flownets):
    assert len(FLOWNETS_KEYS) == 46
    assert _layout(flownets) == FLOWNETS_KEYS
    assert _count(flownets) == 38_676_514
    assert all(not torch.any(v) for k, v in flownets.state_dict().items() if k.endswith(".bias"))
    w = flownets.conv6_1[0].weight  # kaiming_normal(a=0.1), fan_in = 1024·9
    expected_std = (2.0 / (1 + 0.1 ** 2)) ** 0.5 / (1024 * 9) ** 0.5
    assert abs(w.std().item() / expected_std - 1) < 0.02


def test_gsv_layout_and_counts():
    torch.manual_seed(0)
    net = GSV()
    assert _layout(net) == _read_keys("keys_gsv_end2end_19.json", strip="grm.")
    assert _count(net) == 210_085
    parts = {name: _count(child) for name, child in net.named_children()}
    assert parts == {"ideal_dk": 81, "intra_net": 15_763, "guide": 194_241}
    assert not net.ideal_dk.filter_copy_s.requires_grad
    assert "laplacian" in dict(net.named_buffers()) and "laplacian" not in net.state_dict()
    assert torch.equal(net.ideal_dk.filter_copy_s, canonical_delay_kernels())
    kernels = net.ideal_dk.filter_copy_s.view(9, 3, 3)
    raster = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]
    for m, (i, j) in enumerate(raster):
        expected = torch.zeros(3, 3)
        expected[i, j] = 1
        assert torch.equal(kernels[m], expected)
    assert not torch.any(kernels[8])
    w = net.guide.guide_conv_feat[3].weight  # xavier_normal: std = sqrt(2 / (fan_in + fan_out))
    expected_std = (2.0 / (64 * 9 + 128 * 9)) ** 0.5
    assert abs(w.std().item() / expected_std - 1) < 0.05


def test_gsv_without_intra_and_other_class_counts():
    net = GSV(num_classes=11, intra=False).eval()
    keys = net.state_dict().keys()
    assert not any(k.startswith("intra_net.") for k in keys)
    assert net.state_dict()["guide.guide_conv.0.weight"].shape == (32, 12, 3, 3)
    assert net.state_dict()["guide.guide_decoder.0.weight"].shape == (10, 32, 3, 3)
    x = torch.randn(2, 11, 20, 28)
    out, w, edge = net(x)
    assert out.shape == x.shape and w.shape == (2, 10, 20, 28) and edge.shape == (2, 1, 20, 28)
    candidates = net.ideal_dk(x)  # B×10×C×h×w
    assert_close(out, (w.unsqueeze(2) * candidates).sum(1))
    net11 = GSV(num_classes=11).eval()
    assert net11.state_dict()["intra_net.intra_net.6.weight"].shape == (11, 32, 3, 3)
    assert net11.state_dict()["guide.guide_conv.0.weight"].shape == (32, 12, 3, 3)
    out, w, _ = net11(x, torch.randn(2, 3, 20, 28))
    assert out.shape == x.shape and w.shape == (2, 11, 20, 28)


@pytest.mark.parametrize("size", [(90, 120), (128, 256), (13, 18)])
def test_gsv_output_shapes(gsv, size):
    x, img = torch.randn(1, 19, *size), torch.randn(1, 3, *size)
    with torch.no_grad():
        out, w, edge = gsv(x, img)
    assert out.shape == (1, 19, *size) and w.shape == (1, 11, *size) and edge.shape == (1, 1, *size)


def test_flow_net_output_sizes(flownets):
    light = FlowLight().eval()
    with torch.no_grad():
        assert light(torch.randn(1, 6, 128, 256)).shape == (1, 2, 32, 64)
        assert light(torch.randn(2, 6, 90, 120)).shape == (2, 2, 23, 30)  # ceil(h/4)
        assert flownets(torch.randn(2, 6, 64, 128)).shape == (2, 2, 8, 16)  # official sizes: 1/8
        assert flownets(torch.randn(1, 6, 36, 44)).shape == (1, 2, 4, 5)  # otherwise ceil(h/4)//2
    with pytest.raises(ValueError, match="multiples of 8"):
        flownets(torch.randn(1, 6, 4, 64))
    with pytest.raises(ValueError, match="B×6×H×W"):
        light(torch.randn(1, 3, 32, 32))
    assert isinstance(build_flow_net("light"), FlowLight)
    with pytest.raises(ValueError, match="'light' or 'flownet'"):
        build_flow_net("flownet2")


# ----------------------------------------------------------------------------- warp

def _ramp(h=4, w=5, dtype=torch.float32):
    return torch.arange(h * w, dtype=dtype).view(1, 1, h, w) + 1.0


def _raw_flow(u, v, h, w, dtype=torch.float32):
    """Flow as the official nets emit it (4 × pixels), divided by FLOW_DIVISOR as the pipeline does."""
    raw = torch.stack([torch.full((h, w), float(u)), torch.full((h, w), float(v))]).unsqueeze(0)
    return (raw / FLOW_DIVISOR).to(dtype)


def test_warp_zero_flow_is_identity():
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        x = torch.randn(2, 3, 7, 9, dtype=dtype)
        assert_close(warp(x, torch.zeros(2, 2, 7, 9, dtype=dtype)), x, atol=tol, rtol=0)


def test_warp_verified_integer_and_half_pixel_cases():
    x = _ramp()
    right = torch.zeros_like(x)  # u = 4 → one pixel: out[y, x] = in[y, x + 1], last column 0
    right[..., :, :-1] = x[..., :, 1:]
    assert_close(warp(x, _raw_flow(4, 0, 4, 5)), right, atol=1e-5, rtol=0)
    down = torch.zeros_like(x)  # v = 4: out[y, x] = in[y + 1, x], last row 0
    down[..., :-1, :] = x[..., 1:, :]
    assert_close(warp(x, _raw_flow(0, 4, 4, 5)), down, atol=1e-5, rtol=0)
    half = 0.5 * x  # u = 2 → half a pixel: blend of x and x + 1, border column 0.5 · in
    half[..., :, :-1] = 0.5 * (x[..., :, :-1] + x[..., :, 1:])
    assert_close(warp(x, _raw_flow(2, 0, 4, 5)), half, atol=1e-5, rtol=0)
    assert_close(warp(x, _raw_flow(2, 0, 4, 5))[0, 0, 0], torch.tensor([1.5, 2.5, 3.5, 4.5, 2.5]))


@pytest.mark.parametrize("dx, dy", [(-2, 1), (1, -3), (3, 2)])
def test_warp_integer_flow_is_exact_shift(dx, dy):
    x = torch.randn(2, 4, 6, 8, dtype=torch.float64)
    expected = torch.zeros_like(x)  # zeros enter where p + d leaves the image
    ys, xs = slice(max(0, -dy), min(6, 6 - dy)), slice(max(0, -dx), min(8, 8 - dx))
    src_ys, src_xs = slice(ys.start + dy, ys.stop + dy), slice(xs.start + dx, xs.stop + dx)
    expected[..., ys, xs] = x[..., src_ys, src_xs]
    flow = _raw_flow(4 * dx, 4 * dy, 6, 8, torch.float64).expand(2, 2, 6, 8)
    assert_close(warp(x, flow), expected, atol=1e-12, rtol=0)


def test_warp_per_pixel_flow_and_inputs_untouched():
    x = torch.randn(1, 2, 5, 6)
    flow = torch.zeros(1, 2, 5, 6)
    flow[0, 0, 2, 3] = -1.0  # only pixel (y=2, x=3) looks one to the left
    flow[0, 1, 4, 0] = -0.25  # (4, 0) looks a quarter up
    x_before, flow_before = x.clone(), flow.clone()
    out = warp(x, flow)
    assert torch.equal(x, x_before) and torch.equal(flow, flow_before)
    assert_close(out[0, :, 2, 3], x[0, :, 2, 2], atol=1e-5, rtol=0)
    assert_close(out[0, :, 4, 0], 0.75 * x[0, :, 4, 0] + 0.25 * x[0, :, 3, 0], atol=1e-5, rtol=0)
    assert_close(out[0, :, 0, 0], x[0, :, 0, 0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="flow must be"):
        warp(x, torch.zeros(1, 2, 5, 7))


# ----------------------------------------------------------------------------- shift candidates

def test_shift_candidates_by_hand(gsv):
    base = torch.arange(1.0, 10.0).view(3, 3)
    x = torch.stack([base, 10 * base]).unsqueeze(0)  # 1×2×3×3; classes shift independently
    z = 0.0
    expected = [
        [[1, 2, 3], [4, 5, 6], [7, 8, 9]],  # 0: identity
        [[z, z, z], [z, 1, 2], [z, 4, 5]],  # 1: x(y-1, x-1)
        [[z, z, z], [1, 2, 3], [4, 5, 6]],  # 2: x(y-1, x)
        [[z, z, z], [2, 3, z], [5, 6, z]],  # 3: x(y-1, x+1)
        [[z, 1, 2], [z, 4, 5], [z, 7, 8]],  # 4: x(y, x-1)
        [[2, 3, z], [5, 6, z], [8, 9, z]],  # 5: x(y, x+1)
        [[z, 4, 5], [z, 7, 8], [z, z, z]],  # 6: x(y+1, x-1)
        [[4, 5, 6], [7, 8, 9], [z, z, z]],  # 7: x(y+1, x)
        [[5, 6, z], [8, 9, z], [z, z, z]],  # 8: x(y+1, x+1)
        [[z, z, z], [z, z, z], [z, z, z]],  # 9: dead kernel
    ]
    expected = torch.tensor(expected)
    cand = gsv.ideal_dk(x)
    assert cand.shape == (1, 10, 2, 3, 3)
    assert torch.equal(cand[0, :, 0], expected) and torch.equal(cand[0, :, 1], 10 * expected)


def _conv3d_candidates(x, kernels):
    """The official construction: cat[x, conv3d(x, filter_copy_s, padding (0,1,1))] → B×10×C×h×w."""
    return torch.cat([x.unsqueeze(1), F.conv3d(x.unsqueeze(1), kernels, padding=(0, 1, 1))], dim=1)


def test_slicing_shifts_equal_conv3d_and_general_path():
    torch.manual_seed(3)
    dk = GSV(num_classes=5, intra=False).ideal_dk
    x, w = torch.randn(2, 5, 7, 9), torch.rand(2, 10, 7, 9)
    reference = _conv3d_candidates(x, dk.filter_copy_s)
    assert dk.is_canonical()
    assert_close(dk(x), reference, atol=0, rtol=0)
    fused = (w.unsqueeze(2) * reference).sum(1)
    assert_close(dk._weighted_sum_shifts(x, w), fused)
    assert_close(dk._weighted_sum_general(x, w), fused)
    assert_close(dk.weighted_sum(x, w), fused)
    # A checkpoint with different kernels: detected after loading, served by the exact general path.
    other = torch.randn(9, 1, 1, 3, 3)
    dk.load_state_dict({"filter_copy_s": other})
    assert not dk.is_canonical()
    reference = _conv3d_candidates(x, other)
    assert_close(dk(x), reference)
    assert_close(dk.weighted_sum(x, w), (w.unsqueeze(2) * reference).sum(1))
    dk.load_state_dict({"filter_copy_s": canonical_delay_kernels()})
    assert dk.is_canonical()
    dk.double()  # a dtype change replaces the storage: the cached check must be redone, not reused
    assert dk.is_canonical() and dk(x.double()).dtype == torch.float64


def test_real_checkpoint_loads_strictly():
    """The third-party GSVNet checkpoint (legacy format, float num_batches_tracked) fits both modules."""
    ckpt = torch.load(DATA / "gsvnet_swnet_seq_checkpoint.pth.tar", map_location="cpu", weights_only=True)

    def cast(sd, prefix=""):
        return {k[len(prefix):]: (v.long() if k.endswith("num_batches_tracked") else v) for k, v in sd.items()}

    net = GSV()
    net.load_state_dict(cast(ckpt["state_dict"], "grm."))
    assert net.ideal_dk.is_canonical()  # the released kernels are the canonical ones: fast path
    FlowLight().load_state_dict(cast(ckpt["state_dict_of"]))


def test_gsv_fusion_matches_official_formula_and_weights_sum_to_one():
    torch.manual_seed(4)
    net = GSV().eval()
    x, img = 3 * torch.randn(2, 19, 24, 32), torch.randn(2, 3, 24, 32)
    with torch.no_grad():
        out, w, edge = net(x, img)
        intra = net.intra_net(img)
        expected = (w.unsqueeze(2) * torch.cat([_conv3d_candidates(x, net.ideal_dk.filter_copy_s),
                                                intra.unsqueeze(1)], dim=1)).sum(1)
        assert_close(out, expected)
        assert torch.all(w >= 0)
        total = w.sum(1)
        alive = total > 0
        assert alive.float().mean() > 0.5  # the check below must cover most pixels
        assert_close(total[alive], torch.ones_like(total[alive]))
        sd = net.state_dict()  # same module with non-canonical kernels takes the general path
        sd["ideal_dk.filter_copy_s"] = torch.randn(9, 1, 1, 3, 3)
        net.load_state_dict(sd)
        out2, w2, _ = net(x, img)
        expected2 = (w2.unsqueeze(2) * torch.cat([_conv3d_candidates(x, sd["ideal_dk.filter_copy_s"]),
                                                  intra.unsqueeze(1)], dim=1)).sum(1)
        assert_close(out2, expected2)
    net.train()
    out, _, _ = net(x.requires_grad_(), img)  # training mode: gradients reach guide, intra and the input
    out.sum().backward()
    assert x.grad is not None and net.guide.guide_conv[0].weight.grad is not None
    assert net.ideal_dk.filter_copy_s.grad is None


# ----------------------------------------------------------------------------- edge map

def _edge_reference(labels):
    """Independent loop implementation: 3×3 Laplacian with zero padding, then != 0."""
    h, w = labels.shape
    out = torch.zeros(h, w)
    for y in range(h):
        for x in range(w):
            total = -9 * int(labels[y, x])
            for yy in range(y - 1, y + 2):
                for xx in range(x - 1, x + 2):
                    if 0 <= yy < h and 0 <= xx < w:
                        total += int(labels[yy, xx])
            out[y, x] = float(total != 0)
    return out


def _logits(labels, num_classes=19):
    return 5 * F.one_hot(labels, num_classes).permute(2, 0, 1).unsqueeze(0).float()


def test_edge_map_by_hand(gsv):
    labels = torch.zeros(4, 5, dtype=torch.long)
    labels[1, 2] = 2  # a single class-2 pixel: itself and its 8 neighbours respond
    expected = torch.tensor([[0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]]).float()
    assert torch.equal(gsv.edge_map(_logits(labels))[0, 0], expected)
    # Uniform non-zero class: zero padding makes the whole image border an edge, the interior is not.
    border = torch.ones(4, 5)
    border[1:-1, 1:-1] = 0
    assert torch.equal(gsv.edge_map(_logits(torch.full((4, 5), 3)))[0, 0], border)
    assert not torch.any(gsv.edge_map(_logits(torch.zeros(4, 5, dtype=torch.long))))
    # Columns 1 | 2 | 3: the centre column's responses cancel (a known official quirk).
    ramp = torch.tensor([1, 1, 2, 3, 3]).repeat(5, 1)
    edge = gsv.edge_map(_logits(ramp))[0, 0]
    assert not torch.any(edge[1:-1, 2]) and torch.all(edge[1:-1, 1]) and torch.all(edge[1:-1, 3])
    torch.manual_seed(5)
    rand = torch.randint(0, 19, (9, 11))
    assert torch.equal(gsv.edge_map(_logits(rand))[0, 0], _edge_reference(rand))


# ----------------------------------------------------------------------------- any-size guide

def test_guide_padding_path(gsv):
    torch.manual_seed(6)
    with torch.no_grad():
        g_in = torch.randn(1, 20, 90, 120)  # CamVid 720×960 at 1/8: 90 is not divisible by 4
        manual = gsv.guide._forward_official(F.pad(g_in, (0, 0, 0, 2), mode="replicate"))[:, :, :90]
        assert torch.equal(gsv.guide(g_in), manual)
        fits = torch.randn(1, 20, 96, 128)  # already divisible: no padding, and a forced zero pad agrees
        assert torch.equal(gsv.guide(fits), gsv.guide._forward_official(fits))
        assert torch.equal(gsv.guide(fits), gsv.guide._forward_padded(fits, 0, 0))
        odd = torch.randn(1, 20, 13, 18)
        manual = gsv.guide._forward_official(F.pad(odd, (0, 2, 0, 3), mode="replicate"))[:, :, :13, :18]
        assert torch.equal(gsv.guide(odd), manual)


def test_favour_skip_starts_the_fusion_at_the_warped_logits():
    from models.gsv import GSV
    torch.manual_seed(0)
    gsv = GSV(19).train()
    gsv.favour_skip()
    warped = torch.randn(2, 19, 16, 24)
    out, weights, _ = gsv(warped, torch.randn(2, 3, 16, 24))
    # train-mode BN normalises each channel: skip ≈ relu(N(0,1) + 3) ≈ 3, each other ≈ relu(N(0,1) − 1),
    # mean ≈ 0.08, so the normalised skip weight is ≈ 3 / (3 + 10 · 0.08) ≈ 0.78 on average
    assert weights[:, 0].mean() > 0.7
    assert (weights.argmax(1) == 0).float().mean() > 0.95
    plain = GSV(19).train()
    plain.load_state_dict(gsv.state_dict())
    plain.guide.guide_decoder[1].bias.data.zero_()  # the official start
    out_plain, weights_plain, _ = plain(warped, torch.randn(2, 3, 16, 24))
    assert weights_plain[:, 0].mean() < 0.3
    assert (out - warped).abs().mean() < 0.5 * (out_plain - warped).abs().mean()
