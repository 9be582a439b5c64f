"""Tests for utils/: metrics (hand-computed and independent implementation), checkpoint files,
run logs and visualisation."""
import argparse
import dataclasses
import json
import math
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from utils import checkpoint, metrics, visualize
from utils.logging import RunLogger, git_commit, write_json

# ---------------------------------------------------------------- metrics

# 2×3 image, 3 classes, one ignore pixel. Pixels (gt, pred): (0,0) (1,2) (255,1) / (2,2) (1,1) (0,1)
TARGET = np.array([[0, 1, 255], [2, 1, 0]], dtype=np.uint8)
PRED = np.array([[0, 2, 1], [2, 1, 1]], dtype=np.int64)
CM_EXPECTED = [[1, 1, 0],   # gt 0: predicted 0 once, 1 once
               [0, 1, 1],   # gt 1: predicted 1 once, 2 once
               [0, 0, 1]]   # gt 2: predicted 2 once


def test_confusion_matrix_hand_computed():
    cm = metrics.confusion_matrix(torch.from_numpy(PRED), torch.from_numpy(TARGET), 3)
    assert cm.dtype == torch.int64
    assert cm.tolist() == CM_EXPECTED
    # numpy inputs give the same torch result; a target id outside [0, C) is dropped like 255
    target = TARGET.copy()
    target[0, 2] = 7
    assert metrics.confusion_matrix(PRED, target, 3).tolist() == CM_EXPECTED


def test_iou_miou_pixel_accuracy_hand_computed():
    cm = torch.tensor(CM_EXPECTED)
    # class 0: TP 1, FP 0, FN 1; class 1: TP 1, FP 1, FN 1; class 2: TP 1, FP 1, FN 0
    torch.testing.assert_close(metrics.iou(cm), torch.tensor([1 / 2, 1 / 3, 1 / 2], dtype=torch.float64))
    assert metrics.miou(cm) == pytest.approx(4 / 9, abs=1e-12)
    assert metrics.pixel_accuracy(cm) == pytest.approx(3 / 5, abs=1e-12)


def test_absent_class_is_nan_and_excluded():
    cm = torch.zeros(4, 4, dtype=torch.int64)
    cm[:3, :3] = torch.tensor(CM_EXPECTED)  # class 3 in neither GT nor prediction
    values = metrics.iou(cm)
    assert math.isnan(values[3]) and not torch.isnan(values[:3]).any()
    assert metrics.miou(cm) == pytest.approx(4 / 9, abs=1e-12)  # not (4/3)/4 as the official code
    # a class only predicted (never in GT) has IoU 0 and does count
    cm[0, 3] = 1
    assert metrics.iou(cm)[3] == 0.0
    assert math.isnan(metrics.miou(torch.zeros(2, 2, dtype=torch.int64)))
    assert math.isnan(metrics.pixel_accuracy(torch.zeros(2, 2, dtype=torch.int64)))


def _numpy_reference(pred, target, n, ignore):
    cm = np.zeros((n, n), dtype=np.int64)
    for g, p in zip(target.ravel(), pred.ravel()):
        if g != ignore and 0 <= g < n:
            cm[g, p] += 1
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    return cm, iou


def test_matches_independent_numpy_implementation():
    rng = np.random.default_rng(0)
    n = 6
    for shape in [(2, 17, 23), (40, 31)]:
        target = rng.integers(0, n, size=shape).astype(np.uint8)
        target[rng.random(shape) < 0.15] = 255
        target[target == 4] = 255  # class 4 absent from GT ...
        pred = rng.integers(0, n, size=shape)
        pred[pred == 4] = 5        # ... and from prediction -> NaN
        cm_ref, iou_ref = _numpy_reference(pred, target, n, 255)
        cm = metrics.confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), n)
        np.testing.assert_array_equal(cm.numpy(), cm_ref)
        np.testing.assert_allclose(metrics.iou(cm).numpy(), iou_ref, rtol=0, atol=1e-12)
        assert metrics.miou(cm) == pytest.approx(np.nanmean(iou_ref), abs=1e-12)


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.confusion_matrix(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="pred"):
        metrics.confusion_matrix(torch.tensor([3]), torch.tensor([0]), 3)
    with pytest.raises(TypeError, match="integer"):
        metrics.confusion_matrix(torch.zeros(2), torch.zeros(2, dtype=torch.long), 3)


def test_summarize_pooled_avg_min_percent_and_none():
    cms = {0: torch.tensor([[3, 1], [0, 4]]),   # IoU a 3/4, b 4/5 -> 77.5
           1: torch.tensor([[1, 1], [1, 1]]),   # 1/3, 1/3 -> 33.33
           2: torch.tensor([[2, 0], [0, 0]])}   # a 1, b absent -> 100, None
    m = metrics.summarize(cms, ["a", "b"])
    assert set(m) == {"per_distance", "intervals", "min_over_distances", "class_names"}
    assert m["class_names"] == ["a", "b"]
    assert m["per_distance"]["0"]["miou"] == pytest.approx(77.5)
    assert m["per_distance"]["0"]["iou"] == pytest.approx({"a": 75.0, "b": 80.0})
    assert m["per_distance"]["1"]["miou"] == pytest.approx(100 / 3)
    assert m["per_distance"]["2"] == {"miou": 100.0, "iou": {"a": 100.0, "b": None}}
    iv = m["intervals"]
    assert list(iv) == ["1", "2", "3"]  # distance 3 was not evaluated
    assert iv["1"] == pytest.approx({"avg_miou": 77.5, "min_miou": 77.5})
    # l=2 pooled [[4,2],[1,5]]: a 4/7, b 5/8
    assert iv["2"] == pytest.approx({"avg_miou": 100 * (4 / 7 + 5 / 8) / 2, "min_miou": 100 / 3})
    # l=3 pooled [[6,2],[1,5]]: a 6/9, b 5/8; min = k=2, which is not the worst distance
    assert iv["3"] == pytest.approx({"avg_miou": 100 * (2 / 3 + 5 / 8) / 2, "min_miou": 100.0})
    assert m["min_over_distances"]["distance"] == 1
    assert m["min_over_distances"]["miou"] == pytest.approx(100 / 3)
    json.dumps(m, allow_nan=False)  # valid strict JSON
    table = metrics.format_table(m, per_class=True)
    assert "77.5" in table and "33.3" in table and "k=1" in table and "59.8" in table


def test_summarize_gaps_and_undefined():
    zero = torch.zeros(2, 2, dtype=torch.int64)
    m = metrics.summarize({0: zero, 2: torch.tensor([[1, 0], [0, 1]])}, ["a", "b"])
    assert m["per_distance"]["0"] == {"miou": None, "iou": {"a": None, "b": None}}
    assert list(m["intervals"]) == ["1"]  # l=2 needs k=1
    assert m["intervals"]["1"] == {"avg_miou": None, "min_miou": None}
    assert m["min_over_distances"] == {"distance": 2, "miou": 100.0}
    with pytest.raises(ValueError, match="class_names"):
        metrics.summarize({0: zero}, ["a", "b", "c"])

# ---------------------------------------------------------------- checkpoint


def test_save_atomic_round_trip_creates_dirs(tmp_path):
    path = tmp_path / "a" / "b" / "ckpt.pth.tar"
    checkpoint.save_atomic({"w": torch.arange(3), "epoch": 2}, path)
    out = checkpoint.load_file(path)
    assert out["epoch"] == 2 and torch.equal(out["w"], torch.arange(3))
    assert os.listdir(path.parent) == ["ckpt.pth.tar"]


def test_save_atomic_interrupted_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth.tar"
    checkpoint.save_atomic({"epoch": 1}, path)

    def torch_save_that_dies(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torch_save_that_dies)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_atomic({"epoch": 2}, path)
    monkeypatch.undo()
    assert checkpoint.load_file(path) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["checkpoint.pth.tar"]  # no stray temp file


@pytest.mark.parametrize("zipfile", [False, True])
def test_load_file_accepts_namespace_in_both_formats(tmp_path, zipfile):
    path = tmp_path / "official.pth.tar"
    args = argparse.Namespace(segnet="swiftnet", lr=1e-3, eval_multi_step=[1, 2])
    torch.save({"args": args, "state_dict": {"grm.w": torch.ones(2, 2)}, "epoch": 5}, path,
               _use_new_zipfile_serialization=zipfile)
    out = checkpoint.load_file(path)
    assert out["args"] == args and out["epoch"] == 5
    torch.testing.assert_close(out["state_dict"]["grm.w"], torch.ones(2, 2))


def test_load_file_real_legacy_third_party_checkpoint():
    path = Path(__file__).parent / "data" / "gsvnet_swnet_seq_checkpoint.pth.tar"
    if not path.exists():
        pytest.skip("tests/data/gsvnet_swnet_seq_checkpoint.pth.tar not present")
    out = checkpoint.load_file(path)
    assert set(out) == {"epoch", "state_dict", "state_dict_of"}
    assert all(isinstance(v, torch.Tensor) for v in out["state_dict"].values())


class MakesADirectoryWhenUnpickled:
    """Stands for any object whose unpickling runs code."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_load_file_refuses_arbitrary_objects(tmp_path):
    marker = tmp_path / "code_ran"
    bad = tmp_path / "evil.pth"
    torch.save({"x": MakesADirectoryWhenUnpickled(str(marker))}, bad)
    with pytest.raises(ValueError, match=r"evil\.pth: refused.*allow-list"):
        checkpoint.load_file(bad)
    assert not marker.exists()
    plain = tmp_path / "custom_class.pth"
    torch.save({"cfg": _Inner()}, plain,
               _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="custom_class.pth"):
        checkpoint.load_file(plain)


def test_load_file_missing_and_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        checkpoint.load_file(tmp_path / "nope.pt")
    junk = tmp_path / "notes.txt"
    junk.write_text("hello, I am not a checkpoint")
    with pytest.raises(ValueError, match="notes.txt"):
        checkpoint.load_file(junk)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pt"):
        checkpoint.load_file(empty)


@dataclasses.dataclass
class _Inner:
    sizes: tuple = (1, 2)


@dataclasses.dataclass
class _Cfg:
    data_path: Path = Path("data/x")
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    lr: float = 0.01
    device: torch.device = torch.device("cpu")


def test_to_plain_and_our_checkpoints_need_no_allow_list(tmp_path):
    plain = checkpoint.to_plain({"cfg": _Cfg(), "args": argparse.Namespace(k=np.int64(3)),
                                 "t": torch.tensor(2.5)})
    assert plain == {"cfg": {"data_path": "data/x", "inner": {"sizes": [1, 2]}, "lr": 0.01,
                             "device": "cpu"}, "args": {"k": 3}, "t": 2.5}
    json.dumps(plain)
    path = tmp_path / "ours.pt"
    checkpoint.save_atomic({"config": plain}, path)
    assert torch.load(path, weights_only=True)["config"] == plain

# ---------------------------------------------------------------- logging


def test_write_json_atomic_strict(tmp_path):
    path = write_json(tmp_path / "sub" / "metrics.json", {"miou": float("nan"), "cfg": _Cfg()})
    assert json.loads(path.read_text()) == {"miou": None, "cfg": {
        "data_path": "data/x", "inner": {"sizes": [1, 2]}, "lr": 0.01, "device": "cpu"}}
    assert os.listdir(path.parent) == ["metrics.json"]


def test_run_logger_jsonl_tensorboard_and_disabled(tmp_path):
    with RunLogger(tmp_path / "run", tb_dir=tmp_path / "tb") as log:
        log.log(event="start", config={"lr": 0.1})
        log.scalars({"loss/train": torch.tensor(0.5), "val/miou": 70.25}, step=3, epoch=1)
        log.image("val/strip", np.zeros((4, 5, 3), dtype=np.uint8), step=3)
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    records = [json.loads(s) for s in lines]
    assert records[0]["event"] == "start" and records[0]["config"] == {"lr": 0.1}
    assert records[1]["step"] == 3 and records[1]["epoch"] == 1
    assert records[1]["loss/train"] == 0.5 and records[1]["val/miou"] == 70.25
    assert all(isinstance(r["time"], float) for r in records)
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())

    off = RunLogger(tmp_path / "rank1", tb_dir=tmp_path / "tb1", enabled=False)
    off.log(event="x")
    off.scalars({"a": 1.0}, step=0)
    off.close()
    assert not (tmp_path / "rank1").exists() and not (tmp_path / "tb1").exists()


def test_git_commit_never_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no git executable at all
    assert git_commit(tmp_path) is None
    fake = tmp_path / "bin" / "git"  # a stand-in executable: tests run no real git command
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 0123456789abcdef0123456789abcdef01234567\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(fake.parent))
    assert git_commit(tmp_path) == "0123456789abcdef0123456789abcdef01234567"
    fake.write_text("#!/bin/sh\necho 'fatal: not a git repository' >&2\nexit 128\n")
    assert git_commit(tmp_path) is None

# ---------------------------------------------------------------- visualize

PALETTE = [(10, 20, 30), (200, 100, 0)]


def test_colorize_and_overlay_values():
    labels = np.array([[0, 1], [255, 1]])
    rgb = visualize.colorize(labels, PALETTE)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb.tolist() == [[[10, 20, 30], [200, 100, 0]], [[0, 0, 0], [200, 100, 0]]]
    assert visualize.colorize(torch.from_numpy(labels), PALETTE).tolist() == rgb.tolist()
    frame = np.full((2, 2, 3), 100, dtype=np.uint8)
    out = visualize.overlay(frame, labels, PALETTE, alpha=0.5)
    # 0.5*100 + 0.5*(10,20,30) = (55,60,65); 0.5*100 + 0.5*(200,100,0) = (150,100,50); ignore keeps frame
    assert out.tolist() == [[[55, 60, 65], [150, 100, 50]], [[100, 100, 100], [150, 100, 50]]]
    out = visualize.overlay(frame, labels, PALETTE, alpha=0.25)  # 75 + 50 = 125 for 200
    assert out[0, 1].tolist() == [125, 100, 75]
    with pytest.raises(ValueError, match="frame_rgb"):
        visualize.overlay(frame[:1], labels, PALETTE)


def test_grid_layout_and_captions():
    a = np.full((2, 3, 3), 10, dtype=np.uint8)
    b = np.full((4, 2), 20, dtype=np.uint8)  # gray, taller
    strip = visualize.hstack([a, b], gap=1)
    assert strip.shape == (4, 3 + 1 + 3, 3)
    assert (strip[:2, :3] == 10).all() and (strip[2:, :3] == 255).all()
    assert (strip[:, 3] == 255).all() and (strip[:, 4:6] == 20).all() and (strip[:, 6] == 255).all()
    g = visualize.grid([a, a, a], ncols=2, gap=0)
    assert g.shape == (4, 6, 3) and (g[2:, 3:] == 255).all() and (g[2:, :3] == 10).all()
    cap = visualize.grid([np.zeros((30, 80, 3), np.uint8)] * 2, captions=["key", "k=1"], gap=0,
                         caption_height=20)
    assert cap.shape == (50, 160, 3)
    assert (cap[:20] < 255).any()  # text drawn in the band
    assert (cap[20:] == 0).all()   # images untouched


def test_save_png_rgb_order_and_label_png(tmp_path):
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red
    path = visualize.save_png(tmp_path / "x" / "y" / "red.png", rgb)
    assert cv2.imread(str(path))[0, 0].tolist() == [0, 0, 255]  # BGR on disk
    labels = np.array([[7, 26], [255, 0]], dtype=np.uint8)
    lp = visualize.save_label_png(tmp_path / "k1" / "a_000000_000019_leftImg8bit.png", labels)
    back = cv2.imread(str(lp), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint8 and back.shape == (2, 2) and (back == labels).all()
    with pytest.raises(ValueError, match="0–255"):
        visualize.save_label_png(tmp_path / "bad.png", np.array([[300, 0]]))
    assert len(visualize.default_palette(19)) == 19 and len(set(visualize.default_palette(7))) == 7
