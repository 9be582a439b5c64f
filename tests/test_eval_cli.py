"""`main.py --evaluate 1` end to end on a tiny synthetic dataset, checked against an independent
computation: frames and labels read here with OpenCV + the cityscapesScripts label table, the
model run clip by clip, confusion matrices by numpy bincount, IoU / avg / min written out here."""
from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import main
from dataset.synthetic import generate
from models.checkpoints import gsvnet_checkpoint
from models.gsvnet import GSVNet
from models.keyframe_spec import parse_spec
from utils.checkpoint import save_atomic

H, W, NUM_VAL, GT_INDEX, NUM_FRAMES = 64, 128, 3, 5, 7
NUM_CLASSES = 19
NEVER = 16  # "train": absent from the synthetic scenes, and the weights below never predict it
GT_RE = re.compile(r"(?P<city>[a-z]+)_(?P<seq>\d{6})_(?P<frame>\d{6})_gtFine_labelIds\.png$")


def make_env(folder: Path, num_val: int = NUM_VAL) -> dict:
    """Synthetic val split + random weights saved in the official formats (raw SwiftNet state_dict,
    GSVNet checkpoint with grm.* / state_dict_of). Returns paths and the model (eval mode)."""
    generate(folder / "data", num_train=0, num_val=num_val, height=H, width=W, num_frames=NUM_FRAMES,
             gt_index=GT_INDEX, progress=False, workers=1)
    torch.manual_seed(0)
    model = GSVNet.build(parse_spec("swiftnet"), "light", NUM_CLASSES)
    with torch.no_grad():  # make class NEVER impossible in keyframe and intra-frame logits
        model.segnet.logits.conv.bias[NEVER] = -1e4
        model.gsv.intra_net.intra_net[6].bias[NEVER] = -1e4
    model.eval()
    torch.save(model.segnet.state_dict(), folder / "swnet.pt")
    save_atomic(gsvnet_checkpoint(model.gsv, model.flow_net, epoch=1), folder / "gsvnet.pth.tar")
    return {"root": folder, "data": folder / "data", "segnet": folder / "swnet.pt",
            "ckpt": folder / "gsvnet.pth.tar", "logs": folder / "logs", "model": model}


def cli(env: dict, *extra: str, data: Path | None = None) -> list[str]:
    return ["--evaluate", "1", "--dataset", "synthetic", "--data-path", str(data or env["data"]),
            "--segnet-weights", str(env["segnet"]), "--log-folder", str(env["logs"]), "--num-worker", "0",
            "--device", "cpu", *extra]


def eval_dir(env: dict, name: str, checkname: str = "test") -> Path:
    return env["logs"] / "run" / "synthetic" / f"swiftnet_{checkname}" / f"eval_{name}"


# ------------------------------------------------------------------ the independent reference
def label_to_train_table() -> np.ndarray:
    from cityscapesscripts.helpers.labels import labels
    table = np.full(256, 255, np.int64)
    for lab in labels:
        if lab.id >= 0 and lab.trainId not in (-1, 255):
            table[lab.id] = lab.trainId
    return table


def gt_files(data: Path) -> list[tuple[Path, str, str, int]]:
    out = []
    for path in sorted((data / "gtFine" / "val").glob("*/*_gtFine_labelIds.png")):
        m = GT_RE.search(path.name)
        out.append((path, m["city"], m["seq"], int(m["frame"])))
    return out


def read_clip(data: Path, city: str, seq: str, frame: int, k: int) -> torch.Tensor:
    """1×(k+1)×3×H×W float RGB 0–255, frames GT−k … GT."""
    folder = data / "leftImg8bit_sequence" / "val" / city
    frames = [cv2.imread(str(folder / f"{city}_{seq}_{f:06d}_leftImg8bit.png"))[:, :, ::-1]
              for f in range(frame - k, frame + 1)]
    return torch.from_numpy(np.stack(frames).copy()).permute(0, 3, 1, 2).float()[None]


def reference_predictions(env, k: int, fusion: str, scale: float, batch: int = 1):
    """{gt path: (train-id label H×W, predicted train ids H×W)} computed clip by clip, ``batch`` clips
    per forward in file order (the evaluator's order, so batched numerics are identical too)."""
    key = ("ref", k, fusion, scale, batch)
    if key not in env:  # cached: several tests score the same predictions
        env[key] = _reference_predictions(env, k, fusion, scale, batch)
    return env[key]


def _reference_predictions(env, k: int, fusion: str, scale: float, batch: int):
    table, files, out = label_to_train_table(), gt_files(env["data"]), {}
    for start in range(0, len(files), batch):
        group = files[start:start + batch]
        clips = torch.cat([read_clip(env["data"], c, s, f, k) for _, c, s, f in group])
        with torch.no_grad():
            logits = env["model"].forward_clip(clips, key_scale=scale, fusion=fusion)
        for i, (path, *_) in enumerate(group):
            gt = table[cv2.imread(str(path), cv2.IMREAD_UNCHANGED)]
            up = F.interpolate(logits[i:i + 1], size=gt.shape, mode="bilinear", align_corners=True)
            out[path] = (gt, up.argmax(1)[0].numpy())
    return out


def reference_cm(preds: dict) -> np.ndarray:
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for gt, pred in preds.values():
        keep = gt != 255
        cm += np.bincount(NUM_CLASSES * gt[keep] + pred[keep], minlength=NUM_CLASSES ** 2).reshape(cm.shape)
    return cm


def ref_iou(cm: np.ndarray) -> list[float | None]:
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    return [None if u == 0 else 100.0 * t / u for t, u in zip(tp, union)]


def ref_miou(cm: np.ndarray) -> float:
    vals = [v for v in ref_iou(cm) if v is not None]
    return sum(vals) / len(vals)


def check_metrics(metrics: dict, cms: dict[int, np.ndarray]) -> None:
    """metrics.json against reference confusion matrices per distance (all percent)."""
    names = metrics["class_names"]
    assert len(names) == NUM_CLASSES and names[0] == "road"
    assert sorted(metrics["per_distance"], key=int) == [str(k) for k in sorted(cms)]
    for k, cm in cms.items():
        got = metrics["per_distance"][str(k)]
        assert got["miou"] == pytest.approx(ref_miou(cm), abs=1e-9)
        for name, expected in zip(names, ref_iou(cm)):
            assert got["iou"][name] == (None if expected is None else pytest.approx(expected, abs=1e-9)), name
        assert got["iou"][names[NEVER]] is None  # absent from GT and prediction -> null, not 0
    expected_intervals = {}
    for l in range(1, 6):
        if any(d not in cms for d in range(l)):
            break
        pooled = sum(cms[d] for d in range(l))
        expected_intervals[str(l)] = (ref_miou(pooled), ref_miou(cms[l - 1]))
    assert set(metrics["intervals"]) == set(expected_intervals)
    for l, (avg, low) in expected_intervals.items():
        assert metrics["intervals"][l]["avg_miou"] == pytest.approx(avg, abs=1e-9)
        assert metrics["intervals"][l]["min_miou"] == pytest.approx(low, abs=1e-9)
    worst = min(cms, key=lambda d: (ref_miou(cms[d]), d))
    assert metrics["min_over_distances"]["distance"] == worst
    assert metrics["min_over_distances"]["miou"] == pytest.approx(ref_miou(cms[worst]), abs=1e-9)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return make_env(tmp_path_factory.mktemp("eval_cli"))


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("fusion,batch,distances", [("gsv", 1, (0, 1, 2)), ("warp", 2, (0, 1))])
def test_metrics_equal_independent_confusion_matrices(env, capsys, fusion, batch, distances):
    steps = [str(k) for k in distances if k > 0]
    rc = main.main(cli(env, "--resume", str(env["ckpt"]), "--fusion", fusion, "--eval-multi-step", *steps,
                       "--batch-size", str(batch), "--ResFolderName", f"ref_{fusion}"))
    out = capsys.readouterr()
    assert rc == 0, out.err
    folder = eval_dir(env, f"ref_{fusion}")
    metrics = json.loads((folder / "metrics.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert config["fusion"] == fusion and config["evaluate"] is True
    cms = {k: reference_cm(reference_predictions(env, k, fusion, 0.75, batch)) for k in distances}
    check_metrics(metrics, cms)
    assert metrics["num_samples"] == {str(k): NUM_VAL for k in distances}
    assert "avg mIoU" in out.out and "min mIoU" in out.out and "RANDOMLY" not in out.err
    # temporal consistency, on by default: every frame of each snippet under keyframes at 0, 3, 6 (l = 3), the
    # generator's true flow (its value is checked against an independent computation in tests/test_temporal_eval.py)
    tc = metrics["temporal_consistency"]
    assert (tc["flow"], tc["frames"], tc["pairs"], tc["snippets"]) == ("true", NUM_FRAMES * NUM_VAL,
                                                                       (NUM_FRAMES - 1) * NUM_VAL, NUM_VAL)
    assert 0 < tc["miou"] <= 100 and 0 < tc["miou_unmasked"] <= 100 and 0 < tc["excluded_fraction"] < 1
    assert "TC (%)" in out.out and "true flow" in out.out
    # pairs (t-1, t) ending on a keyframe: t = 3, 6 in each 7-frame snippet; the other 4 are propagated
    assert metrics["key_interval"] == 3
    assert (tc["refresh"]["pairs"], tc["propagated"]["pairs"]) == (2 * NUM_VAL, 4 * NUM_VAL)
    # the synthetic data are labelled on every frame, so mVC is reported; 7 frames hold no window of 8 (+ 1)
    assert metrics["mvc8"] is None and metrics["mvc16"] is None


def test_copy_baseline_is_the_keyframe_prediction_and_warns_nothing(env, capsys):
    """--fusion copy: the GT frame gets the keyframe net's prediction of frame GT−k, unchanged."""
    rc = main.main(cli(env, "--fusion", "copy", "--eval-multi-step", "3", "--batch-size", "1",
                       "--ResFolderName", "copy"))
    out = capsys.readouterr()
    assert rc == 0, out.err
    metrics = json.loads((eval_dir(env, "copy") / "metrics.json").read_text())
    table, cms = label_to_train_table(), {}
    for k in (0, 3):
        cm = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        for path, city, seq, frame in gt_files(env["data"]):
            key = read_clip(env["data"], city, seq, frame - k, 0)[:, 0]  # the keyframe alone
            with torch.no_grad():
                logits = env["model"].keyframe(key, 0.75)
            gt = table[cv2.imread(str(path), cv2.IMREAD_UNCHANGED)]
            pred = F.interpolate(logits, size=gt.shape, mode="bilinear", align_corners=True).argmax(1)[0].numpy()
            cm += np.bincount(NUM_CLASSES * gt[gt != 255] + pred[gt != 255],
                              minlength=NUM_CLASSES ** 2).reshape(cm.shape)
        cms[k] = cm
    check_metrics(metrics, cms)
    assert set(metrics["intervals"]) == {"1"}  # k=1, 2 missing: no interval l >= 2
    assert "RANDOMLY" not in out.err  # copy needs no flow/GSV weights


def test_keyframe_only_at_another_scale_needs_no_checkpoint(env, capsys):
    rc = main.main(cli(env, "--keyframe-only", "1", "--eval-scale", "0.5", "--batch-size", "1",
                       "--ResFolderName", "key05"))
    out = capsys.readouterr()
    assert rc == 0, out.err
    metrics = json.loads((eval_dir(env, "key05") / "metrics.json").read_text())
    assert metrics["key_scale"] == 0.5 and list(metrics["per_distance"]) == ["0"]
    # the keyframe net on every frame: l = 1, every pair of the consistency pass ends on a keyframe
    tc = metrics["temporal_consistency"]
    assert metrics["key_interval"] == 1 and tc["propagated"] is None
    assert tc["refresh"]["pairs"] == tc["pairs"] == (NUM_FRAMES - 1) * NUM_VAL
    assert tc["refresh"]["miou"] == tc["miou"]
    check_metrics(metrics, {0: reference_cm(reference_predictions(env, 0, "gsv", 0.5))})
    assert "RANDOMLY" not in out.err


def test_random_propagation_weights_warn_loudly(env, capsys):
    rc = main.main(cli(env, "--eval-single", "0", "--eval-multi-step", "1", "--max-eval-samples", "1",
                       "--ResFolderName", "random"))
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "RANDOMLY INITIALISED" in out.err
    metrics = json.loads((eval_dir(env, "random") / "metrics.json").read_text())
    assert metrics["num_samples"] == {"1": 1} and metrics["intervals"] == {}
    assert metrics["temporal_consistency"]["snippets"] == 1  # --max-eval-samples cuts TC's snippets too


def test_save_res_writes_labelids_cityscapesscripts_scores(env, capsys, monkeypatch):
    rc = main.main(cli(env, "--resume", str(env["ckpt"]), "--eval-single", "0", "--eval-multi-step", "2",
                       "--batch-size", "1", "--save-res", "1", "--save-seq-res", "1", "--ResFolderName", "saved"))
    out = capsys.readouterr()
    assert rc == 0, out.err
    pred = env["logs"] / "pred_img_res" / "synthetic" / "swiftnet_test" / "saved"
    assert not list(pred.parent.glob(".*partial*"))  # the staging folder is gone
    from cityscapesscripts.helpers.labels import labels
    train_to_id = {lab.trainId: lab.id for lab in labels if lab.trainId not in (-1, 255)}
    refs = reference_predictions(env, 2, "gsv", 0.75)
    for path, city, seq, frame in gt_files(env["data"]):
        name = f"{city}_{seq}_{frame:06d}"
        ids = cv2.imread(str(pred / "k2" / f"{name}_leftImg8bit.png"), cv2.IMREAD_UNCHANGED)
        assert ids.shape == (H, W) and ids.dtype == np.uint8
        assert set(np.unique(ids)) <= set(train_to_id.values())  # labelIds, never train ids
        expected = np.vectorize(train_to_id.get)(refs[path][1])
        np.testing.assert_array_equal(ids, expected)
        color = cv2.imread(str(pred / "k2" / "color" / f"color_{name}.png"))
        assert color.shape == (H, W, 3)
        seq_files = sorted(p.name for p in (pred / "k2" / "seq" / name).iterdir())
        assert seq_files == [f"{t:02d}_{city}_{seq}_{frame - 2 + t:06d}.png" for t in range(3)]
    # cityscapesScripts finds exactly one prediction per GT under k2/ and agrees with metrics.json
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs
    args = copy.copy(cs.args)
    args.predictionPath, args.predictionWalk = str(pred / "k2"), None
    args.evalInstLevelScore, args.JSONOutput, args.quiet = False, False, True
    gts = [str(p) for p, *_ in gt_files(env["data"])]
    result = cs.evaluateImgLists([cs.getPrediction(args, g) for g in gts], gts, args)
    metrics = json.loads((eval_dir(env, "saved") / "metrics.json").read_text())
    assert 100 * result["averageScoreClasses"] == pytest.approx(metrics["per_distance"]["2"]["miou"], abs=1e-9)


def test_missing_dataset_is_a_clear_error(env, capsys):
    missing = env["root"] / "no_such_dataset"
    rc = main.main(cli(env, "--ResFolderName", "missing", data=missing))
    err = capsys.readouterr().err
    assert rc != 0 and str(missing) in err and "error" in err
    assert not eval_dir(env, "missing").exists()


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_bad_checkpoint_is_a_clear_error(env, capsys, problem):
    path = env["root"] / f"{problem}.pth.tar"
    if problem == "corrupt":
        path.write_bytes(b"\x80\x02 definitely not a torch checkpoint")
    rc = main.main(cli(env, "--resume", str(path), "--ResFolderName", f"ckpt_{problem}"))
    err = capsys.readouterr().err
    assert rc != 0 and str(path) in err
    assert not eval_dir(env, f"ckpt_{problem}").exists()


def test_corrupt_image_names_the_file_and_writes_nothing(env, capsys, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(env["data"], data)
    path, city, seq, frame = gt_files(data)[1]
    bad = data / "leftImg8bit_sequence" / "val" / city / f"{city}_{seq}_{frame - 1:06d}_leftImg8bit.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated PNG
    rc = main.main(cli(env, "--resume", str(env["ckpt"]), "--eval-multi-step", "1", "--save-res", "1",
                       "--ResFolderName", "corrupt", data=data))
    err = capsys.readouterr().err
    assert rc != 0 and bad.name in err
    pred_parent = env["logs"] / "pred_img_res" / "synthetic" / "swiftnet_test"
    assert not (pred_parent / "corrupt").exists() and not list(pred_parent.glob(".corrupt*"))
    assert not eval_dir(env, "corrupt").exists()
