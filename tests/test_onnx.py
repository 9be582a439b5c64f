"""ONNX export (engine/deployment/onnx_export.py, modes/export.py) and the ONNX Runtime backend (engine/deployment/onnx_runtime.py).

Parity bar (ONNX Runtime backend vs PyTorch backend, both through VideoPredictor): max |logit difference|
<= 1e-4 · max(1, max |logit|), labels equal except at float near-ties (two best classes within twice
that difference, where rounding decides).
Exports take 10–60 s on two cores, so every test that exports a whole model is marked slow.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.deployment.onnx_export import (CHECK_TOLERANCE, GraphCheckError, check_graph, export_onnx, export_part,
                                           graph_modules, inference_copy, parse_size, reference_cases, write_graph)
from engine.deployment.onnx_runtime import FORMAT, load_export
from engine.streaming.predictor import VideoPredictor
from engine.benchmarking.step_timing import moving_frame, synthetic_texture
from main import main
from models import cpu_kernels
from models.gsvnet import GSVNet
from models.keyframe_spec import parse_spec
from tests.stand_in_weights import case_state_dicts, save_official_gsvnet

DATA = Path(__file__).parent / "data"
REAL_CKPT = DATA / "gsvnet_swnet_seq_checkpoint.pth.tar"
SIZES = ("128x256", "64x128")  # case A's frames, and a second size that proves the dynamic graphs


def assert_parity(reference, onnx_out, frame_size) -> None:
    """The bar of the module docstring for one StepOutput pair."""
    ref, got = reference.logits, onnx_out.logits
    assert reference.is_keyframe == onnx_out.is_keyframe and got.shape == ref.shape
    diff = (got - ref).abs().max().item()
    assert diff <= 1e-4 * max(1.0, ref.abs().max().item())
    differ = reference.labels != onnx_out.labels
    if differ.any():  # a near-tie: logits within diff of each other (bilinear weights sum to 1) can swap
        up = F.interpolate(ref, size=frame_size, mode="bilinear", align_corners=True)[0]
        top2 = up.permute(1, 2, 0)[torch.from_numpy(differ)].topk(2, dim=-1).values
        assert (top2[:, 0] - top2[:, 1]).max().item() <= 2 * diff


# --- fast: the switch, sizes, the dynamic-vs-static check, CLI errors ----------------------------
def test_kernel_switch_turns_kernels_off_and_restores_itself():
    before = cpu_kernels.available()
    with cpu_kernels.disabled():
        assert not cpu_kernels.available()
        with cpu_kernels.disabled():
            assert not cpu_kernels.available()
        assert not cpu_kernels.available()          # leaving the inner block keeps the outer one off
    assert cpu_kernels.available() == before
    with pytest.raises(RuntimeError, match="boom"):
        with cpu_kernels.disabled():
            raise RuntimeError("boom")
    assert cpu_kernels.available() == before
    # inside the block the plain PyTorch path runs: no compiled kernel is called
    model = GSVNet.build(parse_spec("swiftnet"), "light", 19).eval()
    frame = torch.randint(0, 256, (1, 3, 64, 128), dtype=torch.uint8)
    forbidden = {name: mock.DEFAULT for name in ("shrink_normalise", "warp", "edge", "resize", "labels")}
    with cpu_kernels.disabled(), mock.patch.multiple(cpu_kernels, **forbidden) as kernels, torch.no_grad():
        low = model.lowres_bgr(frame)
        model.propagate(model.keyframe(frame.float()), low, low)
    assert not any(k.called for k in kernels.values()) and low.shape == (1, 3, 8, 16)


def test_parse_size():
    assert parse_size("1024x2048") == (1024, 2048) and parse_size("720X1280") == (720, 1280)
    for bad in ("1024", "axb", "12x2048", "1024x2048x3"):
        with pytest.raises(ValueError, match="--export-size"):
            parse_size(bad)


class _FixesItsWidth(nn.Module):
    """Claims dynamic H/W, but linspace fixes W at the traced size (as the warp grid once did)."""

    def forward(self, frame):
        return frame.permute(0, 3, 1, 2).float() * torch.linspace(0.0, 1.0, frame.shape[2])


class _TrulyDynamic(nn.Module):
    def forward(self, frame):
        return frame.permute(0, 3, 1, 2).float() * torch.arange(frame.shape[2], dtype=torch.float32)


def _cases(module, sizes):
    frames = {s: torch.randint(0, 256, (1, *s, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
              for s in sizes}
    return {s: ((f,), module(f)) for s, f in frames.items()}


def test_graph_that_fixes_a_size_is_caught_and_written_static(tmp_path):
    module, sizes = _FixesItsWidth().eval(), [(16, 32), (16, 48)]
    cases = _cases(module, sizes)
    path = write_graph(module, "lowres", cases[sizes[0]][0], tmp_path / "claims_dynamic.onnx", dynamic=True)
    check_graph(path, "lowres", {sizes[0]: cases[sizes[0]]})       # fine at the traced size...
    with pytest.raises(GraphCheckError, match="claims_dynamic.onnx at 16x48") as err:
        check_graph(path, "lowres", cases)                         # ...but not at the second one
    assert err.value.size == (16, 48)
    logs = []
    entry = export_part("lowres", module, cases, tmp_path, log=logs.append)
    assert entry["dynamic"] is False and any("fails" in line for line in logs)
    assert entry["files"] == {"16x32": "lowres_16x32.onnx", "16x48": "lowres_16x48.onnx"}
    assert all(d <= 1e-4 for d in entry["max_abs_diff"].values())   # values up to 255, linspace rounding
    (tmp_path / "dyn").mkdir()
    dynamic = _TrulyDynamic().eval()
    entry = export_part("lowres", dynamic, _cases(dynamic, sizes), tmp_path / "dyn")
    assert entry["dynamic"] is True and set(entry["files"].values()) == {"lowres.onnx"}


@pytest.mark.parametrize("args,message", [
    (["--export", "onnx"], "--output"),
    (["--export", "onnx", "--output", "OUT", "--export-size", "1024by2048"], "--export-size '1024by2048'"),
])
def test_export_cli_errors(tmp_path, capsys, args, message):
    args = [a.replace("OUT", str(tmp_path / "out")) for a in args]
    assert main(args) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "gsvnet.json").exists()


# --- slow: whole exports --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def case_a_files(case_a, tmp_path_factory):
    folder = tmp_path_factory.mktemp("case_a_onnx")
    sds = case_state_dicts(case_a)
    torch.save(sds["segnet"], folder / "swnet.pt")
    save_official_gsvnet(sds["gsv"], sds["flow"], folder / "gsvnet.tar")
    return folder


@pytest.fixture(scope="module")
def case_a_export(case_a_files):
    """`main.py --export onnx` of case A's model at SIZES."""
    out = case_a_files / "export"
    args = ["--export", "onnx", "--dataset", "cityscapes", "--segnet-weights", str(case_a_files / "swnet.pt"),
            "--resume", str(case_a_files / "gsvnet.tar"), "--output", str(out), "--key-interval", "3"]
    assert main(args + [a for s in SIZES for a in ("--export-size", s)]) == 0
    return out


def _pytorch_predictor(case_a_files, checkpoint=None) -> VideoPredictor:
    return VideoPredictor.from_checkpoints(segnet_weights=str(case_a_files / "swnet.pt"), key_interval=3,
                                           checkpoint=str(checkpoint or case_a_files / "gsvnet.tar"))


def _onnx_predictor(folder) -> VideoPredictor:
    model, meta = load_export(folder)
    return VideoPredictor(model, key_interval=meta["key_interval"], key_scale=meta["key_scale"], fold_bn=False)


@pytest.mark.slow
def test_export_metadata(case_a_export):
    meta = json.loads((case_a_export / "gsvnet.json").read_text())
    assert meta["format"] == FORMAT == "gsvnet-onnx/1" and meta["opset"] == 18
    assert meta["keyframe_net"] == "swiftnet" and meta["flow"] == "light" and meta["fusion"] == "gsv"
    assert (meta["num_classes"], meta["key_interval"], meta["key_scale"]) == (19, 3, 0.75)
    assert len(meta["class_names"]) == len(meta["palette"]) == 19 and meta["class_names"][0] == "road"
    assert meta["frame_sizes"] == [[128, 256], [64, 128]]
    assert meta["git_commit"] is None or len(meta["git_commit"]) == 40
    graphs = meta["graphs"]
    # lowres and propagate hold at both sizes as one dynamic graph; SwiftNet's pyramid pooling grid
    # (round of the aspect ratio) makes the keyframe graph static: one file per size
    assert graphs["lowres"]["dynamic"] and graphs["propagate"]["dynamic"] and not graphs["keyframe"]["dynamic"]
    assert graphs["keyframe"]["files"] == {"128x256": "keyframe_128x256.onnx", "64x128": "keyframe_64x128.onnx"}
    assert graphs["propagate"]["files"] == {"128x256": "propagate.onnx", "64x128": "propagate.onnx"}
    assert graphs["keyframe"]["inputs"] == {"frame": {"shape": [1, "H", "W", 3], "dtype": "uint8"}}
    assert graphs["propagate"]["outputs"] == {"logits": {"shape": [1, "C", "H//8", "W//8"], "dtype": "float32"}}
    assert list(graphs["propagate"]["inputs"]) == ["prev_lowres", "cur_lowres", "prev_logits"]
    assert graphs["lowres"]["max_abs_diff"] == {"128x256": 0.0, "64x128": 0.0}  # same float ops, same order
    import onnx
    for name in ("lowres.onnx", "keyframe_128x256.onnx", "propagate.onnx"):
        model = onnx.load(str(case_a_export / name), load_external_data=False)
        onnx.checker.check_model(model)
        assert model.opset_import[0].version == 18


@pytest.mark.slow
def test_parity_case_a_and_a_second_size(case_a, case_a_files, case_a_export):
    reference, runtime = _pytorch_predictor(case_a_files), _onnx_predictor(case_a_export)
    for t, frame in enumerate(case_a["frames"].numpy()):
        ref, got = reference.step(frame), runtime.step(frame)
        assert_parity(ref, got, (128, 256))
        expected = case_a["expected_logits"][t]     # and the official code's own output, at its 1e-3 bar
        assert (got.logits - expected).abs().max().item() <= 1e-3 * max(1.0, expected.abs().max().item())
    texture = synthetic_texture(64, 128)
    reference.reset(), runtime.reset()
    for i in range(4):                              # a new size: a keyframe, then propagation
        frame = moving_frame(texture, i)
        assert_parity(reference.step(frame), runtime.step(frame), (64, 128))


@pytest.mark.slow
def test_sizes_not_exported_are_refused(case_a_export):
    runtime = _onnx_predictor(case_a_export)
    with pytest.raises(ValueError, match="accepts frames of 128x256, 64x128, not 72x128"):
        runtime.step(np.zeros((72, 128, 3), np.uint8))
    with pytest.raises(ValueError, match="key scale 0.75, not 0.5"):
        runtime.model.keyframe(torch.zeros(1, 3, 64, 128), 0.5)
    with pytest.raises(ValueError, match="not integers in 0–255"):
        runtime.model.lowres_bgr(torch.full((1, 3, 64, 128), 0.5))


@pytest.mark.slow
def test_forward_clip_for_evaluation(case_a, case_a_files, case_a_export):
    """evaluate_model's call: a batch of float clips, frame 0 the keyframe, logits of the last frame."""
    model, _ = load_export(case_a_export)
    reference = _pytorch_predictor(case_a_files).model
    clips = case_a["frames"][:3].permute(0, 3, 1, 2).float().unsqueeze(0).repeat(2, 1, 1, 1, 1)  # 2×3×3×H×W
    clips[1] = clips[1].flip(-1)
    with torch.inference_mode():
        expected, got = reference.forward_clip(clips, 0.75), model.forward_clip(clips, 0.75)
    assert got.shape == expected.shape == (2, 19, 16, 32)
    assert (got - expected).abs().max().item() <= 1e-4 * max(1.0, expected.abs().max().item())


def _broken_copy(src: Path, dst: Path, problem: str) -> Path:
    """A copy of an export folder (graphs linked, not copied) with one problem."""
    dst.mkdir()
    meta = json.loads((src / "gsvnet.json").read_text())
    for name in {f for g in meta["graphs"].values() for f in g["files"].values()}:
        if not (problem == "missing graph" and name == "keyframe_64x128.onnx"):
            os.symlink(src / name, dst / name)
    if problem == "other format":
        meta["format"] = "gsvnet-onnx/2"
    elif problem == "class count":
        meta.update(num_classes=11, class_names=meta["class_names"][:11], palette=meta["palette"][:11])
    elif problem == "size the static graph does not take":
        meta["frame_sizes"].append([96, 160])
        for part, graph in meta["graphs"].items():
            graph["files"]["96x160"] = graph["files"]["128x256"]
    if problem != "no gsvnet.json":
        (dst / "gsvnet.json").write_text(json.dumps(meta))
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("problem,error,message", [
    ("missing graph", FileNotFoundError, r"keyframe_64x128\.onnx: keyframe graph for 64x128 is missing"),
    ("other format", ValueError, r"format 'gsvnet-onnx/2', this runtime reads 'gsvnet-onnx/1'"),
    ("class count", ValueError, r"keyframe_128x256\.onnx: logits have 19 classes, gsvnet\.json says 11"),
    ("size the static graph does not take", ValueError, r"keyframe_128x256\.onnx: gives a 16x32 grid.*96x160"),
    ("no gsvnet.json", FileNotFoundError, r"gsvnet\.json: not found"),
])
def test_bad_export_folders_name_the_problem(case_a_export, tmp_path, problem, error, message):
    with pytest.raises(error, match=message):
        load_export(_broken_copy(case_a_export, tmp_path / "broken", problem))


@pytest.mark.slow
def test_parity_real_third_party_checkpoint(case_a_files, tmp_path):
    """The released GSV + light flow (legacy pickle) with stand-in SwiftNet weights, 128×256."""
    reference = _pytorch_predictor(case_a_files, REAL_CKPT)
    unfolded = VideoPredictor.from_checkpoints(segnet_weights=str(case_a_files / "swnet.pt"),
                                               checkpoint=str(REAL_CKPT), fold_bn=False).model
    export_onnx(unfolded, tmp_path, [(128, 256)], key_interval=3, log=lambda _: None)
    runtime = _onnx_predictor(tmp_path)
    texture = synthetic_texture(128, 256)
    for i in range(4):
        frame = moving_frame(texture, i)
        assert_parity(reference.step(frame), runtime.step(frame), (128, 256))


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["bisenet", "pidnet_s", "pidnet_m", "pidnet_l",
                                  "torchvision:lraspp_mobilenet_v3_large"])
def test_keyframe_graph_of_other_keyframe_nets(spec, tmp_path):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphs = graph_modules(inference_copy(GSVNet.build(parse_spec(spec), "light", 19)), 0.75)
    inputs, expected = reference_cases(graphs, (64, 128))["keyframe"]
    path = write_graph(graphs["keyframe"], "keyframe", inputs, tmp_path / "keyframe_64x128.onnx", dynamic=False)
    diff = check_graph(path, "keyframe", {(64, 128): (inputs, expected)})["64x128"]
    assert expected.shape == (1, 19, 8, 16)
    assert diff <= CHECK_TOLERANCE * max(1.0, expected.abs().max().item())


@pytest.mark.slow
def test_from_export_is_the_same_host_loop(case_a, case_a_files, case_a_export):
    frames = case_a["frames"].numpy() if hasattr(case_a["frames"], "numpy") else case_a["frames"]
    ours = VideoPredictor.from_export(str(case_a_export))
    ref = _onnx_predictor(case_a_export)
    assert ours.key_interval == 3 and ours.model.takes_uint8_frames
    for frame in frames:
        a, b = ours.step(frame), ref.step(frame)
        assert a.is_keyframe == b.is_keyframe
        torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_benchmark_times_both_backends(case_a_files, case_a_export, tmp_path):
    h, w = (int(v) for v in SIZES[0].split("x"))
    args = ["--benchmark", "1", "--backend", "onnxruntime", "--export-dir", str(case_a_export), "--device", "cpu",
            "--segnet-weights", str(case_a_files / "swnet.pt"), "--resume", str(case_a_files / "gsvnet.tar"),
            "--bench-height", str(h), "--bench-width", str(w), "--bench-repeats", "1", "--bench-scales", "0.75",
            "--results-dir", str(tmp_path)]
    assert main(args) == 0
    result = json.loads(next(tmp_path.glob("bench_*.json")).read_text())
    backends = result["backends"]
    assert set(backends["times_ms"]) == {f"{b}_{k}" for b in ("pytorch", "onnxruntime")
                                         for k in ("keyframe", "nonkeyframe")}
    assert all(v["step"]["median_ms"] > 0 for v in backends["times_ms"].values())
    assert backends["max_abs_logit_diff"] < 1e-2  # logits of case A reach ~430: 1e-4 relative is ~4e-2
    assert "| nonkeyframe (ms) |" in next(tmp_path.glob("bench_*.md")).read_text()


@pytest.mark.slow
def test_evaluate_on_onnxruntime_matches_pytorch(tmp_path):
    from tests.test_eval_cli import H, W, cli as eval_args, eval_dir, make_env
    env = make_env(tmp_path)
    out = tmp_path / "export"
    assert main(["--export", "onnx", "--dataset", "synthetic", "--segnet-weights", str(env["segnet"]), "--resume",
                 str(env["ckpt"]), "--output", str(out), "--export-size", f"{H}x{W}"]) == 0
    common = ("--eval-multi-step", "1", "2", "--resume", str(env["ckpt"]))
    assert main(eval_args(env, *common, "--ResFolderName", "pt")) == 0
    assert main(eval_args(env, *common, "--ResFolderName", "ort", "--backend", "onnxruntime",
                          "--export-dir", str(out))) == 0
    pt, ort = (json.loads((eval_dir(env, n) / "metrics.json").read_text()) for n in ("pt", "ort"))
    for k in ("0", "1", "2"):
        assert ort["per_distance"][k]["miou"] == pytest.approx(pt["per_distance"][k]["miou"], abs=0.05)
    assert ort["temporal_consistency"]["miou"] == pytest.approx(pt["temporal_consistency"]["miou"], abs=0.05)
    assert main(eval_args(env, *common, "--backend", "onnxruntime")) == 1  # no --export-dir: a clear error


@pytest.mark.slow
def test_inference_on_onnxruntime_writes_the_pytorch_labels(case_a, case_a_files, case_a_export, tmp_path):
    import cv2
    frames = case_a["frames"].numpy() if hasattr(case_a["frames"], "numpy") else case_a["frames"]
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.ascontiguousarray(f[:, :, ::-1]))
    common = ["--inference", "1", "--input", str(folder), "--dataset", "cityscapes", "--device", "cpu",
              "--segnet-weights", str(case_a_files / "swnet.pt"), "--resume", str(case_a_files / "gsvnet.tar"),
              "--save", "label"]
    assert main(common + ["--output", str(tmp_path / "pt")]) == 0
    assert main(common + ["--output", str(tmp_path / "ort"), "--backend", "onnxruntime",
                          "--export-dir", str(case_a_export)]) == 0
    pt, ort = ([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((tmp_path / d / "label").glob("*.png"))]
               for d in ("pt", "ort"))
    assert len(pt) == len(ort) == len(frames)
    agree = np.mean([np.mean(a == b) for a, b in zip(pt, ort)])
    assert agree >= 0.999, agree
    summary = json.loads((tmp_path / "ort" / "summary.json").read_text())
    assert summary["keyframes"] == json.loads((tmp_path / "pt" / "summary.json").read_text())["keyframes"]
