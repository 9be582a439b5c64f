"""Tests for models/keyframe_net.py: spec parsing, building every kind offline, reading outputs,
normalisation numbers worked out by hand, folder names. CPU, 64×64 inputs, tiny configs."""
import re
import sys
from types import SimpleNamespace

import pytest
import torch
import torchvision
from torch import nn

from models.keyframe_net import (IMAGENET, SWIFTNET, Normalisation, build_keyframe_net, check_logits,
                                 default_normalisation, output_stride, propagation_normalisation, read_logits)
from models.keyframe_spec import KeyframeNetSpec, parse_spec, spec_dirname


# --- specs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, kind, target, canonical", [
    ("swiftnet", "builtin", "swiftnet", "swiftnet"),
    (" pidnet_m ", "builtin", "pidnet_m", "pidnet_m"),
    ("torchvision:lraspp_mobilenet_v3_large", "torchvision", "lraspp_mobilenet_v3_large", None),
    ("hf:/tmp/x/segformer", "hf", "/tmp/x/segformer", None),
    ("hf:nvidia/segformer-b0", "hf", "nvidia/segformer-b0", None),
    ("module:pkg.nets:make", "module", "pkg.nets:make", None),
])
def test_parse_spec_forms(text, kind, target, canonical):
    assert parse_spec(text) == KeyframeNetSpec(canonical or text, kind, target)


@pytest.mark.parametrize("text", ["resnet18", "", "SwiftNet", "pidnet", "cuda:0", "torchvision:",
                                  "torchvision:bad-name", "hf:", "hf:   ", "module:foo", "module:foo:",
                                  "module:foo.:make", "module::make", "module:a:b:c"])
def test_parse_spec_malformed(text):
    with pytest.raises(ValueError) as err:
        parse_spec(text)
    assert repr(text) in str(err.value) and "torchvision:<builder>" in str(err.value)


# --- normalisation -------------------------------------------------------------------------------
def test_imagenet_apply_on_white_frame():
    out = IMAGENET.apply(torch.full((2, 3, 4, 5), 255.0))
    expected = torch.tensor([2.2489083, 2.4285714, 2.64]).view(1, 3, 1, 1).expand(2, 3, 4, 5)  # (1-mean)/std
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_swiftnet_apply_on_0_255_scale_and_uint8():
    frame = torch.full((1, 3, 2, 2), 100, dtype=torch.uint8)
    expected = torch.tensor([0.5632473, 0.3526500, 0.5803478]).view(1, 3, 1, 1).expand(1, 3, 2, 2)  # (100-mean)/std
    torch.testing.assert_close(SWIFTNET.apply(frame), expected, rtol=0, atol=1e-6)
    assert SWIFTNET.as_divisor() == 1.0 and IMAGENET.as_divisor() == 255.0


def test_apply_per_channel_order():
    norm = Normalisation((1.0, 2.0, 3.0), (1.0, 0.5, 0.25), 1.0)
    frame = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(norm.apply(frame).flatten(), torch.tensor([9.0, 36.0, 108.0]))


@pytest.mark.parametrize("spec, keyframe, propagation", [
    ("swiftnet", SWIFTNET, SWIFTNET), ("bisenet", IMAGENET, IMAGENET), ("pidnet_s", IMAGENET, IMAGENET),
    ("torchvision:fcn_resnet50", IMAGENET, IMAGENET), ("hf:x/y", IMAGENET, IMAGENET),
    ("module:a.b:c", IMAGENET, IMAGENET)])
def test_normalisation_tables(spec, keyframe, propagation):
    assert default_normalisation(parse_spec(spec)) == keyframe and propagation_normalisation(parse_spec(spec)) == propagation


def test_swiftnet_statistics_are_on_0_255_scale():
    assert SWIFTNET.mean == (73.15, 82.90, 72.3) and SWIFTNET.input_range == 1.0
    assert IMAGENET.mean == (0.485, 0.456, 0.406) and IMAGENET.input_range == 255.0


# --- built-ins -----------------------------------------------------------------------------------
def test_swiftnet_and_bisenet_outputs_match_their_stride():
    x = torch.randn(1, 3, 64, 64)
    swift = build_keyframe_net(parse_spec("swiftnet"), 5).eval()
    with torch.no_grad():
        logits = check_logits(read_logits(parse_spec("swiftnet"), swift(x)), 5, parse_spec("swiftnet"))
    assert logits.shape == (1, 5, 64 // output_stride(parse_spec("swiftnet")), 64 // output_stride(parse_spec("swiftnet")))
    bise = build_keyframe_net(parse_spec("bisenet"), 5).train()
    with torch.no_grad():
        out = bise(torch.randn(2, 3, 64, 64))  # batch 2: train-mode BN on the 1×1 global context
    assert isinstance(out, tuple) and read_logits(parse_spec("bisenet"), out) is out[0]
    assert out[0].shape == (2, 5, 64 // output_stride(parse_spec("bisenet")), 64 // output_stride(parse_spec("bisenet")))


def test_builtin_refuses_weights_file():
    with pytest.raises(ValueError, match="models/checkpoints.py"):
        build_keyframe_net(parse_spec("swiftnet"), 5, weights="w.pth")


def test_pidnet_entries():
    pidnet = pytest.importorskip("models.pidnet")
    assert pidnet.PIDNET_MEAN == IMAGENET.mean and pidnet.PIDNET_STD == IMAGENET.std
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        plain = build_keyframe_net(parse_spec("pidnet_s"), 5).eval()(x)
        augmented = build_keyframe_net(parse_spec("pidnet_s"), 5, training_form=True).eval()(x)
    assert isinstance(plain, torch.Tensor) and plain.shape == (1, 5, 8, 8)
    assert isinstance(augmented, list) and read_logits(parse_spec("pidnet_s"), augmented) is augmented[1]
    assert check_logits(augmented[1], 5, parse_spec("pidnet_s")).shape == (1, 5, 8, 8)


# --- torchvision ---------------------------------------------------------------------------------
@pytest.fixture
def no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)


def test_no_download_fixture_intercepts_torchvision(no_download):
    builder = torchvision.models.get_model_builder("lraspp_mobilenet_v3_large")
    with pytest.raises(AssertionError, match="download"):
        builder(num_classes=5)  # the builder's default backbone weights would be fetched


@pytest.mark.parametrize("builder", ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"])
def test_torchvision_builds_offline(no_download, builder):
    spec = f"torchvision:{builder}"
    net = build_keyframe_net(parse_spec(spec), 5).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 64))
    assert isinstance(out, dict)
    logits = check_logits(read_logits(parse_spec(spec), out), 5, parse_spec(spec))
    assert logits.shape == (1, 5, 64, 64) and output_stride(parse_spec(spec)) == 1


def test_torchvision_weights_file(no_download, tmp_path):
    spec = "torchvision:lraspp_mobilenet_v3_large"
    torch.manual_seed(0)
    source = build_keyframe_net(parse_spec(spec), 5)
    path = tmp_path / "lraspp.pth"
    torch.save(source.state_dict(), path)
    loaded = build_keyframe_net(parse_spec(spec), 5, weights=str(path))
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    wrong = dict(source.state_dict())
    wrong.pop("classifier.low_classifier.bias")
    wrong["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "wrong.pth"
    torch.save(wrong, bad)
    with pytest.raises(ValueError) as err:
        build_keyframe_net(parse_spec(spec), 5, weights=str(bad))
    assert str(bad) in str(err.value) and "classifier.low_classifier.bias" in str(err.value)
    assert "extra.weight" in str(err.value)


def test_torchvision_unknown_builder(no_download):
    with pytest.raises(ValueError) as err:
        build_keyframe_net(parse_spec("torchvision:resnet18"), 5)
    assert "'torchvision:resnet18'" in str(err.value) and "lraspp_mobilenet_v3_large" in str(err.value)


# --- hf ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_segformer():
    transformers = pytest.importorskip("transformers")

    def make(cls, num_labels=5):
        config = transformers.SegformerConfig(
            num_encoder_blocks=4, depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16],
            num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=16, num_labels=num_labels)
        torch.manual_seed(0)
        return getattr(transformers, cls)(config).eval()
    return make


def test_hf_folder_loads_offline(tiny_segformer, tmp_path):
    original = tiny_segformer("SegformerForSemanticSegmentation")
    original.save_pretrained(tmp_path)
    spec = f"hf:{tmp_path}"
    net = build_keyframe_net(parse_spec(spec), 5).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = check_logits(read_logits(parse_spec(spec), net(x)), 5, parse_spec(spec))
        expected = original(x).logits
    assert logits.shape == (1, 5, 16, 16) and output_stride(parse_spec(spec)) == 4
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)  # the saved weights, not a fresh init


def test_hf_num_labels_mismatch(tiny_segformer, tmp_path):
    tiny_segformer("SegformerForSemanticSegmentation", num_labels=7).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"7 classes.*num_classes is 5") as err:
        build_keyframe_net(parse_spec(f"hf:{tmp_path}"), 5)
    assert repr(f"hf:{tmp_path}") in str(err.value)


@pytest.mark.parametrize("cls", ["SegformerModel", "SegformerForImageClassification"])
def test_hf_without_segmentation_head(tiny_segformer, tmp_path, cls):
    tiny_segformer(cls).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no semantic-segmentation head") as err:
        build_keyframe_net(parse_spec(f"hf:{tmp_path}"), 5)
    assert repr(f"hf:{tmp_path}") in str(err.value) and cls in str(err.value)
    assert "ForSemanticSegmentation" in str(err.value)


def test_hf_missing_folder_fails_without_network(tmp_path):
    spec = f"hf:{tmp_path / 'absent'}"
    with pytest.raises(ValueError, match="no such folder") as err:
        build_keyframe_net(parse_spec(spec), 5)
    assert repr(spec) in str(err.value)


def test_hf_refuses_weights_file(tmp_path):
    with pytest.raises(ValueError, match="carries its own weights"):
        build_keyframe_net(parse_spec(f"hf:{tmp_path}"), 5, weights="w.pth")


# --- module --------------------------------------------------------------------------------------
TINYSEG = """
from torch import nn
CALLS = []
VALUE = 3
def make(*args, **kwargs):
    CALLS.append((args, kwargs))
    return nn.Conv2d(3, kwargs["num_classes"], 1)
def not_a_module(num_classes):
    return "a string"
"""


@pytest.fixture
def tinyseg(tmp_path, monkeypatch):
    (tmp_path / "tinyseg.py").write_text(TINYSEG)
    (tmp_path / "brokenseg.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("tinyseg", "brokenseg"):
        sys.modules.pop(name, None)


def test_module_factory_called_with_num_classes_only(tinyseg):
    spec = "module:tinyseg:make"
    net = build_keyframe_net(parse_spec(spec), 5)
    assert sys.modules["tinyseg"].CALLS == [((), {"num_classes": 5})]
    logits = check_logits(read_logits(parse_spec(spec), net(torch.randn(1, 3, 8, 8))), 5, parse_spec(spec))
    assert logits.shape == (1, 5, 8, 8) and output_stride(parse_spec(spec)) is None
    with pytest.raises(ValueError, match=r"'module:tinyseg:make'.*3 channels.*num_classes=5"):
        check_logits(torch.zeros(1, 3, 8, 8), 5, parse_spec(spec))


def test_module_weights_file(tinyseg):
    torch.manual_seed(1)
    source = nn.Conv2d(3, 5, 1)
    torch.save(source.state_dict(), tinyseg / "conv.pth")
    net = build_keyframe_net(parse_spec("module:tinyseg:make"), 5, weights=str(tinyseg / "conv.pth"))
    assert torch.equal(net.weight, source.weight) and torch.equal(net.bias, source.bias)


@pytest.mark.parametrize("spec, message", [
    ("module:brokenseg:make", "boom at import"),
    ("module:no_such_module_here:make", "No module named 'no_such_module_here'"),
    ("module:tinyseg:absent", "has no callable 'absent'"),
    ("module:tinyseg:VALUE", "has no callable 'VALUE'"),
    ("module:tinyseg:not_a_module", "returned builtins.str, expected a torch.nn.Module"),
])
def test_module_errors(tinyseg, spec, message):
    with pytest.raises(ValueError) as err:
        build_keyframe_net(parse_spec(spec), 5)
    assert repr(spec) in str(err.value) and message in str(err.value)


# --- reading outputs -----------------------------------------------------------------------------
def test_read_logits_per_kind():
    main, other = torch.zeros(1, 5, 2, 2), torch.ones(1, 5, 2, 2)
    for spec in ("swiftnet", "bisenet", "pidnet_l", "torchvision:fcn_resnet50", "hf:a/b", "module:m:f"):
        assert read_logits(parse_spec(spec), main) is main
    assert read_logits(parse_spec("torchvision:fcn_resnet50"), {"aux": other, "out": main}) is main
    assert read_logits(parse_spec("hf:a/b"), SimpleNamespace(logits=main)) is main
    assert read_logits(parse_spec("pidnet_m"), [other, main, other]) is main
    assert read_logits(parse_spec("bisenet"), (main, other, other)) is main
    assert read_logits(parse_spec("module:m:f"), {"out": main}) is main
    assert read_logits(parse_spec("module:m:f"), SimpleNamespace(logits=main)) is main


def test_read_logits_hf_output_class():
    transformers = pytest.importorskip("transformers")
    main = torch.zeros(1, 5, 2, 2)
    output = transformers.modeling_outputs.SemanticSegmenterOutput(logits=main)
    assert read_logits(parse_spec("hf:a/b"), output) is main


@pytest.mark.parametrize("spec, output", [
    ("swiftnet", (torch.zeros(1),)), ("torchvision:fcn_resnet50", [torch.zeros(1)]),
    ("hf:a/b", {"out": torch.zeros(1)}), ("module:m:f", [torch.zeros(1)]), ("pidnet_s", [torch.zeros(1)]),
    ("bisenet", "logits")])
def test_read_logits_refuses_other_types(spec, output):
    with pytest.raises(TypeError) as err:
        read_logits(parse_spec(spec), output)
    assert repr(parse_spec(spec).spec) in str(err.value) and type(output).__qualname__ in str(err.value)


@pytest.mark.parametrize("logits", [torch.zeros(5, 2, 2), torch.zeros(1, 5, 2, 2, dtype=torch.long), "x"])
def test_check_logits_shape_and_dtype(logits):
    with pytest.raises(ValueError, match="'bisenet': expected float logits"):
        check_logits(logits, 5, parse_spec("bisenet"))


# --- folder names --------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, name", [
    ("swiftnet", "swiftnet"), (" pidnet_l", "pidnet_l"),
    ("torchvision:lraspp_mobilenet_v3_large", "torchvision-lraspp_mobilenet_v3_large"),
    ("hf:/tmp/x/segformer", "hf-tmp_x_segformer-37453bc1"),
    ("module:pkg.nets:make", "module-pkg.nets_make-c45400da"),
])
def test_spec_dirname_values(spec, name):
    assert spec_dirname(parse_spec(spec)) == name


def test_spec_dirname_safe_and_distinct():
    long = "/data/" + "x" * 100 + "/segformer"
    specs = ["hf:a/b", "hf:a_b", "hf:a\\b", "hf:a b", "hf:./a/b", "hf:../a/b", "hf:a/b/", "hf:...",
             f"hf:{long}", f"hf:/other{long}", "hf:nvidia/segformer-b0", "module:a.b:c", "module:a:b_c",
             "torchvision:fcn_resnet50", "swiftnet", "hf:swiftnet"]
    names = [spec_dirname(parse_spec(s)) for s in specs]
    assert len(set(names)) == len(specs)
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) and len(name) <= 80, name
    assert names == [spec_dirname(parse_spec(s)) for s in specs]  # deterministic
