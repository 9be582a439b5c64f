"""Every keyframe-net kind through the one building path (engine.model_builder.assemble_model), the
streaming predictor, our checkpoints, run folders and the command line.

Numbers: PIDNet-S against the official code's logits (tests/data/pidnet), the generic kinds against
their own nets run by hand, a 1×1-conv module against a hand computation (its FLOPs too).
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import main as cli
from config.config import parse_args
from dataset.synthetic import generate
from engine.model_builder import assemble_model
from engine.streaming.predictor import VideoPredictor
from engine.runs import REPO, resolve_resume, run_name, segnet_weights_path
from models.checkpoints import gsvnet_checkpoint, gsvnet_parts
from models.keyframe_net import IMAGENET, build_keyframe_net, read_logits
from models.keyframe_spec import parse_spec, spec_dirname
from models.pidnet_weights import load_pidnet_weights
from models.pidnet import build_pidnet
from tests.test_pidnet import CASE_S, assert_parity, write_official_pidnet_file
from utils.checkpoint import load_file, save_atomic

MODULE = "tinykf_net"
TINY_MODULE = '''
from torch import nn


class TinyNet(nn.Module):
    """A 1×1 conv, then 8×8 average pooling: logits at 1/8, returned as {"out": logits}."""

    def __init__(self, num_classes):
        super().__init__()
        self.classify = nn.Conv2d(3, num_classes, 1)
        self.pool = nn.AvgPool2d(8)

    def forward(self, x):
        return {"out": self.pool(self.classify(x))}


def make(num_classes):
    return TinyNet(num_classes)
'''
TV = "torchvision:lraspp_mobilenet_v3_large"
MOD = f"module:{MODULE}:make"
RUN = ("run", "synthetic")


def _segformer(folder: Path, num_labels: int) -> Path:
    transformers = pytest.importorskip("transformers")
    config = transformers.SegformerConfig(num_encoder_blocks=4, depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16],
                                          num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=16,
                                          num_labels=num_labels)
    torch.manual_seed(0)
    transformers.SegformerForSemanticSegmentation(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    """spec -> (spec for 5 classes, weights for 5 classes or None) plus the 19-class hf folder."""
    root = tmp_path_factory.mktemp("kinds")
    (root / f"{MODULE}.py").write_text(TINY_MODULE)
    sys.path.insert(0, str(root))
    hf5, hf19 = _segformer(root / "segformer5", 5), _segformer(root / "segformer19", 19)
    files = {}
    for spec in (TV, MOD):
        torch.manual_seed(3)
        files[spec] = root / f"{spec_dirname(parse_spec(spec))}.pth"
        torch.save(build_keyframe_net(parse_spec(spec), 5).state_dict(), files[spec])
    yield {"tv": (TV, str(files[TV])), "module": (MOD, str(files[MOD])), "hf": (f"hf:{hf5}", None),
           "hf19": f"hf:{hf19}"}
    sys.path.remove(str(root))
    sys.modules.pop(MODULE, None)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, num_train=2, num_val=1, height=64, width=128, num_frames=4, gt_index=2, progress=False, workers=1)
    return root


def _frames(n: int, h: int = 64, w: int = 128) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _quiet_predictor(**kw) -> VideoPredictor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random flow net / GSV
        return VideoPredictor.from_checkpoints(**kw)


# --- built-ins: PIDNet --------------------------------------------------------------------------
def test_pidnet_s_parity_through_the_predictor(tmp_path):
    case = torch.load(CASE_S, map_location="cpu", weights_only=True)
    path = write_official_pidnet_file(tmp_path / "PIDNet_S_Cityscapes_val.pt", "s", "released")
    p = _quiet_predictor(segnet="pidnet_s", segnet_weights=str(path), key_interval=1, key_scale=1.0)
    assert (p.model.key_divisor, p.model.seg_divisor) == (255.0, 255.0)  # ImageNet on 0–1 for both paths
    for frame, expected in zip(case["frames"].numpy(), case["expected_logits"]):
        out = p.step(frame)
        assert out.is_keyframe and out.logits.shape == expected.shape == (1, 19, 32, 64)
        assert_parity(out.logits, expected)


@pytest.mark.parametrize("variant", ["m", "l"])
def test_pidnet_m_l_run_at_360x640_and_a_wrong_variant_is_refused(tmp_path, variant):
    path = write_official_pidnet_file(tmp_path / f"PIDNet_{variant.upper()}.pt", variant, "released")
    p = _quiet_predictor(segnet=f"pidnet_{variant}", segnet_weights=str(path), key_interval=2, key_scale=1.0)
    outs = [p.step(f) for f in _frames(2, 360, 640)]
    assert [o.is_keyframe for o in outs] == [True, False]
    assert all(o.logits.shape == (1, 19, 45, 80) and torch.isfinite(o.logits).all() for o in outs)
    with pytest.raises(ValueError) as err:  # an M/L file for PIDNet-S
        _quiet_predictor(segnet="pidnet_s", segnet_weights=str(path))
    assert str(path) in str(err.value) and "model keys have another shape in the file" in str(err.value)
    assert "conv1.0.weight (file (64, 3, 3, 3), model (32, 3, 3, 3))" in str(err.value)


# --- generic kinds ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["tv", "hf", "module"])
def test_generic_kind_through_the_predictor(kinds, kind):
    spec, weights = kinds[kind]
    p = _quiet_predictor(segnet=spec, num_classes=5, segnet_weights=weights, key_interval=2, key_scale=1.0)
    frames = _frames(3)
    outs = [p.step(f) for f in frames]
    assert [o.is_keyframe for o in outs] == [True, False, True]
    assert all(o.logits.shape == (1, 5, 8, 16) and torch.isfinite(o.logits).all() for o in outs)
    assert outs[1].labels.shape == (64, 128) and outs[1].labels.max() < 5
    # flow net / GSV inputs: ImageNet statistics on 0–1 (BGR order is applied by lowres_bgr)
    assert p.model.seg_divisor == 255.0 and p.model.rgb_mean.flatten().tolist() == pytest.approx(list(IMAGENET.mean))
    # the keyframe: the kind's own net, loaded independently, on ImageNet-normalised RGB, resized to 1/8
    reference = build_keyframe_net(parse_spec(spec), 5, weights=weights if kind != "hf" else None).eval()
    x = torch.from_numpy(frames[0]).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        native = read_logits(parse_spec(spec), reference(IMAGENET.apply(x)))
    expected = F.interpolate(native, size=(8, 16), mode="bilinear", align_corners=True)
    torch.testing.assert_close(outs[0].logits, expected, rtol=1e-4, atol=1e-4)


def test_module_keyframe_equals_a_hand_computation(kinds):
    spec, weights = kinds["module"]
    p = _quiet_predictor(segnet=spec, num_classes=5, segnet_weights=weights, key_interval=1, key_scale=1.0)
    frame = _frames(1)[0]
    sd = torch.load(weights, weights_only=True)
    w, b = sd["classify.weight"][:, :, 0, 0].double().numpy(), sd["classify.bias"].double().numpy()
    rgb = (frame.astype(np.float64) / 255 - np.array(IMAGENET.mean)) / np.array(IMAGENET.std)   # 64×128×3
    block_means = rgb.reshape(8, 8, 16, 8, 3).mean(axis=(1, 3))                                 # 8×16×3
    expected = np.einsum("hwc,kc->khw", block_means, w) + b[:, None, None]                     # 5×8×16
    np.testing.assert_allclose(p.step(frame).logits[0].double().numpy(), expected, rtol=0, atol=1e-5)


def test_missing_weights_start_random_with_a_warning_except_hf(kinds):
    for spec in (TV, MOD, "pidnet_s"):
        with pytest.warns(UserWarning, match=f"keyframe net {spec}: no weights given"):
            assemble_model(parse_spec(spec), "light", 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, _ = assemble_model(parse_spec(kinds["hf"][0]), "light", 5)  # the folder's own weights: no warning
    assert model.num_classes == 5


# --- checkpoints --------------------------------------------------------------------------------
def test_checkpoint_records_spec_and_arguments_and_rebuilds_alone(kinds, tmp_path):
    spec, weights = kinds["module"]
    model, _ = assemble_model(parse_spec(spec), "light", 5, segnet_weights=weights, intra=False, segnet_mean=[0.5, 0.5, 0.5],
                              segnet_std=[0.25, 0.25, 0.25], segnet_input_range=1)
    ckpt = gsvnet_checkpoint(model.gsv, model.flow_net, model_args=model.constructor_args(),
                             segnet_state_dict=model.segnet.state_dict(), epoch=1)
    save_atomic(ckpt, tmp_path / "ours.pth.tar")
    args = load_file(tmp_path / "ours.pth.tar")["model_args"]
    assert args == {"segnet": spec, "num_classes": 5, "flow": "light", "intra": False,
                    "keyframe_normalisation": {"mean": [0.5] * 3, "std": [0.25] * 3, "divisor": 255.0},
                    "propagation_normalisation": {"mean": list(IMAGENET.mean), "std": list(IMAGENET.std),
                                                  "divisor": 255.0}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is random or guessed
        p = VideoPredictor.from_checkpoints(checkpoint=str(tmp_path / "ours.pth.tar"), fold_bn=False)
    assert (p.model.segnet_name, p.model.num_classes, p.model.flow_name) == (spec, 5, "light")
    assert p.model.keyframe_norm == model.keyframe_norm and not hasattr(p.model.gsv, "intra_net")
    for name, value in model.state_dict().items():
        assert torch.equal(p.model.state_dict()[name], value), name
    with pytest.raises(ValueError, match=r"(?s)ours\.pth\.tar.*trained with keyframe net 'module.*'swiftnet'"):
        VideoPredictor.from_checkpoints(segnet="swiftnet", checkpoint=str(tmp_path / "ours.pth.tar"))


def test_old_checkpoint_with_only_a_config_gets_its_arguments_from_it(tmp_path):
    model, _ = assemble_model(parse_spec("bisenet"), "light", 11, intra=True, missing_segnet="quiet")
    save_atomic(gsvnet_checkpoint(model.gsv, model.flow_net, config={"segnet": "bisenet", "segnet_mean": []}),
                tmp_path / "old.pth.tar")
    args = gsvnet_parts(str(tmp_path / "old.pth.tar"))["model_args"]
    assert (args["segnet"], args["num_classes"], args["flow"], args["intra"]) == ("bisenet", 11, "light", True)
    with pytest.raises(ValueError, match="keyframe net 'swiftnet' feeds them"):  # SwiftNet statistics ≠ BiSeNet's
        assemble_model(parse_spec("swiftnet"), "light", 11, checkpoint=str(tmp_path / "old.pth.tar"), missing_segnet="quiet")


# --- run folders, default weights, resume -------------------------------------------------------
def test_run_folders_and_default_weights_for_every_kind(tmp_path):
    def cfg(spec):
        return parse_args(["--segnet", spec, "--checkname", "x", "--log-folder", str(tmp_path)])
    assert run_name(cfg("swiftnet")) == "swiftnet_x" and run_name(cfg(TV)) == "torchvision-lraspp_mobilenet_v3_large_x"
    assert segnet_weights_path(cfg("pidnet_m")) == REPO / "weights" / "PIDNet_M_Cityscapes_val.pt"
    assert segnet_weights_path(cfg(TV)) is None and segnet_weights_path(cfg(MOD)) is None
    resumed = cfg(TV)
    resumed.resume = "1"
    with pytest.raises(FileNotFoundError, match=r"torchvision-lraspp_mobilenet_v3_large_x/checkpoint\.pth\.tar does"):
        resolve_resume(resumed)


# --- command line -------------------------------------------------------------------------------
def _args(data: Path, logs: Path, spec: str, *extra: str) -> list[str]:
    return ["--dataset", "synthetic", "--data-path", str(data), "--log-folder", str(logs), "--checkname", "k",
            "--segnet", spec, "--crop-height", "64", "--crop-width", "128", "--batch-size", "2", "--num-worker", "0",
            "--multi-step", "1", "2", "--eval-multi-step", "1", "--max-eval-samples", "1", "--max-iters", "2",
            "--epoch", "1", "--device", "cpu", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tv", "hf19", "module"])
def test_generic_kind_through_every_cli_mode(kinds, data, tmp_path, kind):
    spec = kinds[kind] if kind == "hf19" else kinds[kind][0]
    logs, folder = tmp_path / "logs", tmp_path.joinpath("logs", *RUN, f"{spec_dirname(parse_spec(spec))}_k")
    assert cli.main(_args(data, logs, spec, "--train-segnet", "1")) == 0
    best = folder / ("segnet_best" if kind == "hf19" else "segnet_best.pth")
    assert best.exists() and load_file(folder / "segnet_checkpoint.pth.tar")["model_args"]["segnet"] == spec
    trained, _ = assemble_model(parse_spec(spec), "light", 19, segnet_weights=str(best))  # reads back through the one path
    assert cli.main(_args(data, logs, spec, "--segnet-weights", str(best))) == 0
    ckpt = folder / "checkpoint.pth.tar"
    args = load_file(ckpt)["model_args"]
    assert (args["segnet"], args["num_classes"], args["flow"], args["intra"]) == (spec, 19, "light", True)
    rebuilt = _quiet_predictor(checkpoint=str(ckpt), fold_bn=False).model  # from the file alone
    for name, value in trained.segnet.state_dict().items():
        assert torch.equal(rebuilt.segnet.state_dict()[name], value), name
    resume = ("--resume", str(ckpt))
    assert cli.main(_args(data, logs, spec, "--evaluate", "1", "--ResFolderName", "e", *resume)) == 0
    assert set(json.loads((folder / "eval_e" / "metrics.json").read_text())["per_distance"]) == {"0", "1"}
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    for i, frame in enumerate(_frames(3)):
        cv2.imwrite(str(pngs / f"f{i}.png"), frame)
    out = tmp_path / "out"
    assert cli.main(_args(data, logs, spec, "--inference", "1", "--input", str(pngs), "--output", str(out),
                          "--save", "label", *resume)) == 0
    assert sorted(p.name for p in (out / "label").glob("*.png")) == ["f0.png", "f1.png", "f2.png"]


@pytest.mark.slow
def test_pidnet_training_uses_its_loss_and_writes_the_released_layout(data, tmp_path, monkeypatch):
    import engine.training.segnet as segnet_training
    seen, real = [], segnet_training.pidnet_loss

    def spy(outputs, target, **kw):
        seen.append(([tuple(o.shape) for o in outputs], kw["class_weights"]))
        return real(outputs, target, **kw)

    monkeypatch.setattr(segnet_training, "pidnet_loss", spy)
    assert cli.main(_args(data, tmp_path, "pidnet_s", "--train-segnet", "1", "--max-iters", "1")) == 0
    (shapes, weights), = seen  # one iteration: [p_aux, main, d] at 1/8 of the 64×128 crop
    assert shapes == [(2, 19, 8, 16), (2, 19, 8, 16), (2, 1, 8, 16)]
    assert weights[:3].tolist() == pytest.approx([0.8373, 0.918, 0.866])  # PIDNet's own Cityscapes weights
    path = tmp_path.joinpath(*RUN, "pidnet_s_k", "segnet_best.pt")
    assert all(k.startswith("model.") for k in load_file(path))
    report = load_pidnet_weights(build_pidnet("s", 19), str(path))
    assert (report.layout, report.loaded, len(report.dropped)) == ("released", 453, 26)


@pytest.mark.slow
def test_benchmark_of_a_module_net_counts_its_flops_and_params(kinds, tmp_path):
    argv = ["--benchmark", "1", "--segnet", MOD, "--bench-height", "64", "--bench-width", "128",
            "--bench-repeats", "1", "--bench-scales", "0.5", "--results-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    result = json.loads((tmp_path / "bench_cpu.json").read_text())
    assert result["params"]["segnet"]["count"] == 3 * 19 + 19  # the 1×1 conv
    assert result["params"]["gsv"]["count"] == 210_085 and result["params"]["flow"]["count"] == 186_402
    # keyframe at 0.5: a 1×1 conv on 32×64 pixels, 3 -> 19 channels = 116,736 multiply-adds
    assert result["flops"]["keyframe"]["0.5"]["per_module_gmacs"] == {"TinyNet": pytest.approx(116_736 / 1e9)}


@pytest.mark.parametrize("spec, message", [
    ("torchvision:resnet18", "torchvision.models.segmentation has no builder 'resnet18'"),
    ("module:no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
    ("hf:./no/such/folder", "no such folder"),
])
def test_unbuildable_specs_are_named_through_the_cli(data, tmp_path, capsys, spec, message):
    assert cli.main(_args(data, tmp_path, spec, "--evaluate", "1")) == 1
    err_text = capsys.readouterr().err
    assert repr(spec) in err_text and message in err_text


def test_malformed_spec_is_refused_while_parsing_the_flags(data, tmp_path):
    with pytest.raises(SystemExit) as err:
        cli.main(_args(data, tmp_path, "foo", "--evaluate", "1"))
    assert "--segnet" in str(err.value.code) and "'foo': unknown keyframe net name" in str(err.value.code)
