"""Tests for the keyframe networks: models/swiftnet.py and models/bisenet.py.

Layouts are checked against `docs/formats.md#key-layouts` (the SwiftNet key list is the
official one in tests/data); behaviour against functional re-computations written here.
"""
import io
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from models.bisenet import BiSeNet, FeatureFusion, AttentionRefinement
from models.swiftnet import SwiftNet

DATA = Path(__file__).parent / "data"


def _randomize_bn(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics/affines so eval-mode BN is far from identity."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)


def _n_params(module: nn.Module, prefixes=("",)) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if n.startswith(prefixes))


@pytest.fixture(scope="module")
def swiftnet():
    torch.manual_seed(0)
    return SwiftNet(19).eval()


@pytest.fixture(scope="module")
def bisenet():
    torch.manual_seed(0)
    return BiSeNet(19).eval()


# ----------------------------------------------------------------------------- layouts

def test_swiftnet_state_dict_matches_official_list(swiftnet):
    expected = [tuple([k, tuple(s), dt]) for k, s, dt in
                json.loads((DATA / "keys_swiftnet_r18.json").read_text())]
    got = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch."))
           for k, v in swiftnet.state_dict().items()]
    assert len(expected) == 195
    assert got == expected
    assert _n_params(swiftnet) == 11_797_071


def test_swiftnet_buffers_and_momenta(swiftnet):
    sd = swiftnet.state_dict()
    torch.testing.assert_close(sd["backbone.img_mean"].flatten(), torch.tensor([73.15, 82.90, 72.3]))
    torch.testing.assert_close(sd["backbone.img_std"].flatten(), torch.tensor([47.67, 48.49, 47.73]))
    spp_bns = [m for m in swiftnet.backbone.spp.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(spp_bns) == 5 and all(m.momentum == 0.005 for m in spp_bns)
    assert swiftnet.logits.norm.momentum == 0.1
    assert swiftnet.backbone.upsample[0].blend_conv.norm.momentum == 0.1


# (key, shape) rows of the §7.2 table, expanded where it says {0,1}.
BISENET_TABLE = [
    ("context_path.conv1.weight", (64, 3, 7, 7)),
    ("context_path.bn1.running_var", (64,)),
    ("context_path.layer2.0.downsample.0.weight", (128, 64, 1, 1)),
    ("context_path.layer4.1.conv2.weight", (512, 512, 3, 3)),
    ("spatial_path.conv_7x7.conv.weight", (64, 3, 7, 7)),
    ("spatial_path.conv_7x7.bn.weight", (64,)),
    ("spatial_path.conv_3x3_1.conv.weight", (64, 64, 3, 3)),
    ("spatial_path.conv_3x3_2.conv.weight", (64, 64, 3, 3)),
    ("spatial_path.conv_1x1.conv.weight", (128, 64, 1, 1)),
    ("global_context.1.conv.weight", (128, 512, 1, 1)),
    ("global_context.1.bn.running_mean", (128,)),
    ("ffm.conv_1x1.conv.weight", (256, 256, 1, 1)),
    ("ffm.conv_1x1.bn.bias", (256,)),
    ("ffm.channel_attention.1.conv.weight", (256, 256, 1, 1)),
    ("ffm.channel_attention.2.conv.weight", (256, 256, 1, 1)),
    ("arms.0.conv_3x3.conv.weight", (128, 512, 3, 3)),
    ("arms.0.conv_3x3.bn.weight", (128,)),
    ("arms.0.channel_attention.1.conv.weight", (128, 128, 1, 1)),
    ("arms.0.channel_attention.1.bn.weight", (128,)),
    ("arms.1.conv_3x3.conv.weight", (128, 256, 3, 3)),
    ("arms.1.channel_attention.1.conv.weight", (128, 128, 1, 1)),
    ("refines.0.conv.weight", (128, 128, 3, 3)),
    ("refines.1.conv.weight", (128, 128, 3, 3)),
    ("refines.1.bn.weight", (128,)),
    ("heads.0.conv_3x3.conv.weight", (256, 128, 3, 3)),
    ("heads.0.conv_3x3.bn.weight", (256,)),
    ("heads.0.conv_1x1.weight", (19, 256, 1, 1)),
    ("heads.0.conv_1x1.bias", (19,)),
    ("heads.1.conv_3x3.conv.weight", (256, 128, 3, 3)),
    ("heads.1.conv_1x1.weight", (19, 256, 1, 1)),
    ("heads.1.conv_1x1.bias", (19,)),
    ("heads.2.conv_3x3.conv.weight", (64, 256, 3, 3)),
    ("heads.2.conv_3x3.bn.weight", (64,)),
    ("heads.2.conv_1x1.weight", (19, 64, 1, 1)),
    ("heads.2.conv_1x1.bias", (19,)),
]
ABSENT_IN_BISENET = ["ffm.channel_attention.1.bn.weight", "ffm.channel_attention.1.conv.bias",
                     "context_path.fc.weight", "spatial_path.conv_1x1.conv.bias"]


def test_bisenet_state_dict_layout(bisenet):
    sd = bisenet.state_dict()
    assert len(sd) == 218
    assert _n_params(bisenet) == 13_494_777
    assert _n_params(bisenet, ("heads.0.", "heads.1.")) == 600_614
    for key, shape in BISENET_TABLE:
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key
    for key in ABSENT_IN_BISENET:
        assert key not in sd
    order = list(dict.fromkeys(k.split(".")[0] for k in sd))
    assert order == ["context_path", "spatial_path", "global_context", "ffm", "arms", "refines",
                     "heads"]
    # The context path is exactly a torchvision resnet18 without its classifier.
    tv = {f"context_path.{k}": tuple(v.shape) for k, v in torchvision.models.resnet18().state_dict()
          .items() if not k.startswith("fc.")}
    assert {k: tuple(v.shape) for k, v in sd.items() if k.startswith("context_path.")} == tv
    assert all(v.dtype == (torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
               for k, v in sd.items())


# ----------------------------------------------------------------------------- output shapes

@pytest.mark.parametrize("hw, out_hw", [((64, 128), (16, 32)), ((96, 128), (24, 32)),
                                        ((65, 97), (17, 25)), ((720, 960), (180, 240)),
                                        ((540, 960), (135, 240)), ((768, 1536), (192, 384))])
def test_swiftnet_output_quarter_resolution(swiftnet, hw, out_hw):
    with torch.inference_mode():
        out = swiftnet(torch.randn(1, 3, *hw))
    assert out.shape == (1, 19, *out_hw)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("hw, out_hw", [((64, 128), (8, 16)), ((65, 97), (9, 13)),
                                        ((720, 960), (90, 120)), ((768, 1536), (96, 192))])
def test_bisenet_output_eighth_resolution(bisenet, hw, out_hw):
    with torch.inference_mode():
        out = bisenet(torch.randn(1, 3, *hw))
    assert out.shape == (1, 19, *out_hw)
    assert torch.isfinite(out).all()


def test_bisenet_train_mode_returns_native_resolution_heads():
    torch.manual_seed(0)
    net = BiSeNet(7)
    _randomize_bn(net)
    x = torch.randn(2, 3, 64, 128)
    net.train()
    main, aux_a, aux_b = net(x)
    assert main.shape == (2, 7, 8, 16) and aux_a.shape == (2, 7, 4, 8) and aux_b.shape == (2, 7, 8, 16)
    # With BN frozen, the train-mode main head is exactly the eval-mode output.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        main_frozen = net(x)[0]
        net.eval()
        torch.testing.assert_close(main_frozen, net(x), rtol=0, atol=0)


def test_bad_input_shape_raises(swiftnet, bisenet):
    with pytest.raises(ValueError, match="B×3×H×W"):
        swiftnet(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="B×3×H×W"):
        bisenet(torch.zeros(1, 4, 32, 32))


# ----------------------------------------------------------------------------- skip semantics

def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _block_pre_relu(block, x):
    """BasicBlock by hand with functional ops; returns the residual sum before the final ReLU."""
    s = block.conv1.stride
    y = F.relu(_bn(F.conv2d(x, block.conv1.weight, stride=s, padding=1), block.bn1))
    y = _bn(F.conv2d(y, block.conv2.weight, padding=1), block.bn2)
    if block.downsample is not None:
        x = _bn(F.conv2d(x, block.downsample[0].weight, stride=s), block.downsample[1])
    return y + x


def test_swiftnet_skips_are_rectified_outputs_of_last_block():
    """The official in-place ReLU makes the skip the rectified residual sum (parity case A confirms)."""
    torch.manual_seed(1)
    net = SwiftNet(19).eval()
    _randomize_bn(net, seed=1)
    bb = net.backbone
    image = torch.randn(1, 3, 64, 96)
    seen = {}
    hook = bb.spp.register_forward_pre_hook(lambda m, args: seen.update(spp_in=args[0]))
    with torch.no_grad():
        features = bb.forward_down(image)
        hook.remove()
        x = F.conv2d(image, bb.conv1.weight, stride=2, padding=3)
        x = F.max_pool2d(F.relu(_bn(x, bb.bn1)), 3, stride=2, padding=1)
        manual = []
        for layer in (bb.layer1, bb.layer2, bb.layer3, bb.layer4):
            layer_in = x
            skip = _block_pre_relu(layer[1], F.relu(_block_pre_relu(layer[0], x)))
            manual.append(skip)
            x = F.relu(skip)
            # torchvision's own layer output is the ReLU of that skip.
            torch.testing.assert_close(layer(layer_in), x, rtol=1e-5, atol=1e-5)
    for got, pre_relu in zip(features[:3] + [seen["spp_in"]], manual):
        assert (pre_relu < 0).any()      # otherwise pre- and post-ReLU would be indistinguishable
        torch.testing.assert_close(got, F.relu(pre_relu), rtol=1e-5, atol=1e-5)


def test_swiftnet_spp_grids_keep_aspect_ratio(swiftnet):
    # 200×300 input -> layer4 7×10 (stride-2 convs round up), aspect 10/7 = 1.43:
    # grids (8, round(11.43)=11), (4, round(5.71)=6), (2, round(2.86)=3).
    sizes = {}
    spp = swiftnet.backbone.spp.spp
    hooks = [spp[f"spp{i}"].register_forward_pre_hook(
        lambda m, a, i=i: sizes.update({i: tuple(a[0].shape[-2:])})) for i in range(3)]
    fuse_in = {}
    hooks.append(spp["spp_fuse"].register_forward_pre_hook(
        lambda m, a: fuse_in.update(shape=tuple(a[0].shape))))
    with torch.inference_mode():
        swiftnet(torch.randn(1, 3, 200, 300))
    for h in hooks:
        h.remove()
    assert sizes == {0: (8, 11), 1: (4, 6), 2: (2, 3)}
    assert fuse_in["shape"] == (1, 128 + 3 * 42, 7, 10)


def test_swiftnet_spp_by_hand():
    torch.manual_seed(7)
    net = SwiftNet(19).eval()
    _randomize_bn(net, seed=7)
    spp = net.backbone.spp.spp
    x = torch.randn(1, 512, 7, 10)

    def unit(t, u):
        return F.conv2d(F.relu(_bn(t, u.norm)), u.conv.weight)

    with torch.no_grad():
        base = unit(x, spp["spp_bn"])
        levels = [base]
        for i, grid in enumerate([(8, 11), (4, 6), (2, 3)]):   # worked out in the test above
            lvl = unit(F.adaptive_avg_pool2d(base, grid), spp[f"spp{i}"])
            levels.append(F.interpolate(lvl, size=(7, 10), mode="bilinear", align_corners=False))
        want = unit(torch.cat(levels, 1), spp["spp_fuse"])
        torch.testing.assert_close(net.backbone.spp(x), want, rtol=1e-5, atol=1e-5)


def test_swiftnet_upsample_block_by_hand():
    torch.manual_seed(2)
    net = SwiftNet(19).eval()
    _randomize_bn(net, seed=2)
    up = net.backbone.upsample[2]
    x, skip = torch.randn(1, 128, 5, 7), torch.randn(1, 64, 10, 13)
    with torch.no_grad():
        s = F.conv2d(F.relu(_bn(skip, up.bottleneck.norm)), up.bottleneck.conv.weight)
        y = F.interpolate(x, size=(10, 13), mode="bilinear", align_corners=False) + s
        want = F.conv2d(F.relu(_bn(y, up.blend_conv.norm)), up.blend_conv.conv.weight, padding=1)
        torch.testing.assert_close(up(x, skip), want, rtol=1e-5, atol=1e-5)


def test_bisenet_arm_and_ffm_by_hand():
    torch.manual_seed(3)
    arm, ffm = AttentionRefinement(32, 16).eval(), FeatureFusion(32, 32).eval()
    _randomize_bn(arm, 3)
    _randomize_bn(ffm, 4)
    x, a, b = torch.randn(2, 32, 6, 9), torch.randn(2, 16, 6, 9), torch.randn(2, 16, 6, 9)
    with torch.no_grad():
        fm = F.relu(_bn(F.conv2d(x, arm.conv_3x3.conv.weight, padding=1), arm.conv_3x3.bn))
        ca = arm.channel_attention[1]
        w = torch.sigmoid(_bn(F.conv2d(fm.mean((2, 3), keepdim=True), ca.conv.weight), ca.bn))
        torch.testing.assert_close(arm(x), fm * w, rtol=1e-5, atol=1e-5)

        fm = F.relu(_bn(F.conv2d(torch.cat([a, b], 1), ffm.conv_1x1.conv.weight), ffm.conv_1x1.bn))
        w1 = ffm.channel_attention[1].conv.weight.flatten(1)
        w2 = ffm.channel_attention[2].conv.weight.flatten(1)
        se = torch.sigmoid(F.relu(fm.mean((2, 3)) @ w1.T) @ w2.T)[:, :, None, None]
        torch.testing.assert_close(ffm(a, b), fm * (1 + se), rtol=1e-5, atol=1e-5)


def test_bisenet_wiring_by_hand():
    """Recompose the forward from the submodules; odd sizes make align_corners matter."""
    torch.manual_seed(8)
    net = BiSeNet(19).eval()
    _randomize_bn(net, seed=8)
    x = torch.randn(1, 3, 72, 104)       # layer4 3×4, layer3 5×7, layer2 9×13

    def up(t, ref):
        return F.interpolate(t, size=ref.shape[-2:], mode="bilinear", align_corners=True)

    with torch.no_grad():
        l1, l2, l3, l4 = net.context_path(x)
        glob = net.global_context(l4).expand(-1, -1, *l4.shape[-2:])
        r0 = net.refines[0](up(net.arms[0](l4) + glob, l3))
        r1 = net.refines[1](up(net.arms[1](l3) + r0, l2))
        want = net.heads[2](net.ffm(net.spatial_path(x), r1))
        torch.testing.assert_close(net(x), want, rtol=1e-5, atol=1e-5)
        net.train()
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        _, aux_a, aux_b = net(x)
        torch.testing.assert_close(aux_a, net.heads[0](r0), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(aux_b, net.heads[1](r1), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- weights I/O

def test_load_imagenet_backbone_copies_resnet_weights():
    torch.manual_seed(4)
    tv_sd = torchvision.models.resnet18(weights=None).state_dict()
    net = SwiftNet(19)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_imagenet_backbone(tv_sd)
    sd = net.state_dict()
    for k, v in tv_sd.items():
        if not k.startswith("fc."):
            torch.testing.assert_close(sd[f"backbone.{k}"], v, rtol=0, atol=0)
    for k in ("backbone.spp.spp.spp_bn.conv.weight", "backbone.upsample.0.blend_conv.conv.weight",
              "logits.conv.weight", "backbone.img_mean"):
        torch.testing.assert_close(sd[k], before[k], rtol=0, atol=0)
    # Pre-0.4 ImageNet files carry no num_batches_tracked entries.
    net.load_imagenet_backbone({k: v for k, v in tv_sd.items()
                                if not k.endswith("num_batches_tracked")})


def test_load_imagenet_backbone_rejects_bad_dict_naming_keys():
    sd = torchvision.models.resnet18(weights=None).state_dict()
    sd["layer1.0.convX.weight"] = sd.pop("layer1.0.conv1.weight")
    sd["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    with pytest.raises(ValueError) as err:
        SwiftNet(19).load_imagenet_backbone(sd)
    msg = str(err.value)
    assert "layer1.0.conv1.weight" in msg and "layer1.0.convX.weight" in msg
    assert "layer2.0.conv1.weight" in msg and "(128, 64, 3, 3)" in msg


@pytest.mark.parametrize("cls, hw", [(SwiftNet, (64, 96)), (BiSeNet, (64, 96))])
def test_state_dict_round_trip_weights_only(cls, hw):
    torch.manual_seed(5)
    src = cls(19).eval()
    _randomize_bn(src, seed=5)
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    loaded = torch.load(buf, map_location="cpu", weights_only=True)
    torch.manual_seed(6)
    dst = cls(19).eval()
    dst.load_state_dict(loaded, strict=True)
    x = torch.randn(1, 3, *hw)
    with torch.inference_mode():
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)


@pytest.mark.parametrize("cls", [SwiftNet, BiSeNet])
def test_train_mode_backward_reaches_every_parameter(cls):
    torch.manual_seed(9)
    net = cls(5).train()
    out = net(torch.randn(2, 3, 64, 64))
    outputs = out if isinstance(out, tuple) else (out,)
    sum(o.square().mean() for o in outputs).backward()   # in-place ReLUs must not break autograd
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
