"""--pseudo-labels 1 (engine/teacher/pseudo_labels.py, engine/teacher/cache.py): label-free training and agreement scoring.

The teacher is a hand-made keyframe net (``make_teacher``, used as ``--segnet module:tests.test_pseudo_labels:
make_teacher``): class c's logit is input channel c averaged over 8×8 cells, fed raw RGB 0–255 (mean 0, std 1).
On frames of vertical stripes 16 px wide, each a pure colour, its prediction is worked out by hand below.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import main as cli
from config.config import parse_args
from dataset.folder import FolderSequence
from dataset.transforms import ClipParams, ClipTransform
from engine.training.propagation import build_context, train_one_epoch
from engine.teacher.pseudo_labels import PseudoLabelled, crop_teacher, crop_view_targets
from engine.teacher.cache import TeacherCache, fill_teacher_cache, weights_fingerprint
from engine.training.loop import TrainState
from models.gsvnet import GSVNet
from models.keyframe_spec import parse_spec

SPEC = "module:tests.test_pseudo_labels:make_teacher"
RAW_RGB = ["--segnet-mean", "0", "0", "0", "--segnet-std", "1", "1", "1", "--segnet-input-range", "255"]
NAMES, COLORS = ["red", "green", "blue"], [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
CALLS = {"frames": 0}  # images the teacher net has seen


class StripeTeacher(nn.Module):
    """Logit of class c = input channel c (identity 1×1 conv), averaged over 8×8 cells: logits at 1/8."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.classify = nn.Conv2d(3, num_classes, 1)
        with torch.no_grad():
            self.classify.weight.copy_(torch.eye(num_classes, 3)[:, :, None, None])
            self.classify.bias.zero_()
        self.pool = nn.AvgPool2d(8)

    def forward(self, x):
        CALLS["frames"] += x.shape[0]
        return self.pool(self.classify(x))


def make_teacher(num_classes: int) -> nn.Module:
    return StripeTeacher(num_classes)


# ------------------------------------------------------------------ stripe clips, the teacher by hand
def stripe_frame(t: int, h: int, w: int) -> np.ndarray:
    """RGB uint8: column x is pure colour ((x + 8t) // 16) % 3 at 200 (the stripes move 8 px per frame)."""
    cls = ((np.arange(w) + 8 * t) // 16) % 3
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:, np.arange(w), cls] = 200
    return frame


def teacher_labels_by_hand(t: int, h: int, w: int) -> np.ndarray:
    """The teacher at key scale 1 on stripe_frame(t): cell j (8 columns) is one-hot for class ((j + t) // 2) % 3,
    and upsampling two one-hot cells bilinearly (align_corners=True) then taking the argmax picks the nearer
    cell: column x -> cell round(x·(w/8 − 1)/(w − 1)) (never a tie: (w/8 − 1)·2x is even, (w − 1)(2i + 1)
    odd)."""
    cells = w // 8
    nearest = [round(x * (cells - 1) / (w - 1)) for x in range(w)]
    row = np.array([((j + t) // 2) % 3 for j in nearest], np.uint8)
    return np.repeat(row[None], h, axis=0)


def write_tree(root: Path, clips: dict[str, tuple[int, int, int]], masks: tuple[str, ...] = ()) -> Path:
    """classes.json + one folder per "split/clip" -> (frames, h, w) of stripe frames; masks (the hand-made
    teacher's labels, as ground truth) only for the clips named in ``masks``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps({"names": NAMES, "colors": COLORS}))
    for name, (n, h, w) in clips.items():
        (root / name / "origin").mkdir(parents=True)
        for t in range(n):
            cv2.imwrite(str(root / name / "origin" / f"{t:05d}.png"), stripe_frame(t, h, w)[:, :, ::-1])
            if name in masks:
                (root / name / "mask").mkdir(exist_ok=True)
                cv2.imwrite(str(root / name / "mask" / f"{t:05d}.png"), teacher_labels_by_hand(t, h, w))
    return root


def teacher_model() -> GSVNet:
    return GSVNet.build(parse_spec(SPEC), num_classes=3, segnet_mean=[0, 0, 0], segnet_std=[1, 1, 1], segnet_input_range=255)


@pytest.fixture()
def weights(tmp_path) -> Path:
    path = tmp_path / "teacher.pth"
    torch.save(make_teacher(3).state_dict(), path)
    return path


# ------------------------------------------------------------------ the cache
def test_fingerprint_follows_weights_and_normalisation_not_memory_layout():
    model = teacher_model()
    first = weights_fingerprint(model)
    model.to_channels_last()
    assert weights_fingerprint(model) == first
    other = GSVNet.build(parse_spec(SPEC), num_classes=3, segnet_mean=[1, 0, 0], segnet_std=[1, 1, 1], segnet_input_range=255)
    assert weights_fingerprint(other) != first
    with torch.no_grad():
        model.segnet.classify.bias[0] += 1e-3
    assert weights_fingerprint(model) != first


def test_teacher_pass_computes_each_frame_once(tmp_path):
    root = write_tree(tmp_path / "data", {"train/a": (5, 16, 32), "train/b": (4, 24, 32)})
    datasets = [FolderSequence(root, "train", k, with_label=False, labelled_only=False) for k in (1, 2)]
    frames = [ds.clip_paths(i)[-1] for ds in datasets for i in range(len(ds))]
    assert len(frames) == 7 + 5 and len(set(frames)) == 7  # a1..a4, b1..b3 (k=2's are all among k=1's)
    cache = TeacherCache(tmp_path / "cache", weights_fingerprint(teacher_model()), 0.75)
    model, CALLS["frames"] = teacher_model(), 0
    assert fill_teacher_cache(model, cache, frames, device=torch.device("cpu"), batch_size=3, progress=False) == 7
    assert CALLS["frames"] == 7 and len(list(cache.folder.glob("*.png"))) == len(list(cache.folder.glob("*.pt"))) == 7
    assert fill_teacher_cache(model, cache, frames, device=torch.device("cpu"), progress=False) == 0
    assert CALLS["frames"] == 7
    changed = root / "train" / "a" / "origin" / "00003.png"
    cv2.imwrite(str(changed), stripe_frame(0, 16, 32))
    os.utime(changed, ns=(1, 1))  # an edited frame file is a new entry
    assert fill_teacher_cache(model, cache, frames, device=torch.device("cpu"), progress=False) == 1
    assert CALLS["frames"] == 8
    other_scale = TeacherCache(tmp_path / "cache", weights_fingerprint(model), 1.0)
    assert not any(other_scale.has(f) for f in frames)


def test_pseudo_label_is_the_teachers_prediction_and_moves_with_the_crop(tmp_path):
    root = write_tree(tmp_path / "data", {"val/v": (4, 24, 64)})
    base = FolderSequence(root, "val", 1, with_label=False, labelled_only=False)
    model = teacher_model()
    cache = TeacherCache(tmp_path / "cache", weights_fingerprint(model), 1.0)
    fill_teacher_cache(model, cache, [base.clip_paths(i)[-1] for i in range(len(base))], device=torch.device("cpu"),
                       progress=False)
    ds = PseudoLabelled(base, cache, with_logits=True)
    for i, t in enumerate((1, 2, 3)):
        sample = ds[i]
        assert sample["label"].dtype == torch.int64
        assert np.array_equal(sample["label"].numpy(), teacher_labels_by_hand(t, 24, 64))
        cells = torch.zeros(3, 3, 8)  # raw logits, 1/8 of 24×64: 200 on the cell's stripe class
        for j in range(8):
            cells[((j + t) // 2) % 3, :, j] = 200
        torch.testing.assert_close(sample["teacher"], cells, rtol=0, atol=0)
    crop = ClipTransform((16, 40), scales=(1.0,))
    params = ClipParams((24, 64), top=5, left=9, flip=True)
    crop.sample_params = lambda h, w: params
    sample = PseudoLabelled(base, cache, crop, with_logits=True)[0]
    assert np.array_equal(sample["label"].numpy(), teacher_labels_by_hand(1, 24, 64)[5:21, 9:49][:, ::-1])
    assert np.array_equal(sample["frames"][-1].permute(1, 2, 0).numpy(), stripe_frame(1, 24, 64)[5:21, 9:49][:, ::-1])
    assert sample["teacher"].shape == (3, 4, 10)


def _upsampled(logits: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(logits[None], size=size, mode="bilinear", align_corners=True)[0]


@pytest.mark.parametrize("flip", [False, True])
def test_crop_teacher_samples_the_upsampled_logits_at_the_crop_pixels(flip):
    """At scale 1 with a 16×16 crop the 4×4 output stands for crop pixels 0, 5, 10, 15 of each axis (aligned
    corners), i.e. frame pixels top + 5i and left + 5j (mirrored with the flip); an independent upsample
    of the whole map gives the expected values there."""
    logits = torch.randn(3, 10, 14, generator=torch.Generator().manual_seed(0))
    full = _upsampled(logits, (40, 56))
    out = crop_teacher(logits, (40, 56), ClipParams((40, 56), top=3, left=5, flip=flip), (16, 16))
    rows = 3 + 5 * torch.arange(4)
    cols = 5 + (15 - 5 * torch.arange(4) if flip else 5 * torch.arange(4))
    torch.testing.assert_close(out, full[:, rows][:, :, cols], rtol=0, atol=1e-5)
    same = crop_teacher(logits, (40, 56), ClipParams((40, 56), top=0, left=0), (40, 56))
    torch.testing.assert_close(same, logits, rtol=0, atol=1e-5)  # the whole frame at the teacher's density


def test_crop_teacher_pads_with_zero_logits():
    logits = torch.rand(3, 10, 14) + 1
    out = crop_teacher(logits, (40, 56), ClipParams((8, 8), top=0, left=0), (16, 16))  # crop 5 px apart, frame 8 px
    assert (out[:, 2:] == 0).all() and (out[:, :, 2:] == 0).all() and (out[:, :2, :2] > 0).all()


# ------------------------------------------------------------------ training: the teacher never runs per step
def cli_args(root: Path, logs: Path, weights: Path, *extra: str) -> list[str]:
    return ["--dataset", "folder", "--data-path", str(root), "--log-folder", str(logs), "--segnet", SPEC,
            "--segnet-weights", str(weights), *RAW_RGB, "--batch-size", "2", "--num-worker", "0", "--device", "cpu",
            "--pseudo-labels", "1", *extra]


def test_whole_frame_training_reads_every_target_from_the_cache(tmp_path, weights):
    root = write_tree(tmp_path / "data", {"train/a": (5, 32, 48), "val/v": (4, 32, 48)})
    cfg = parse_args(cli_args(root, tmp_path / "logs", weights, "--multi-step", "1", "3", "--eval-multi-step", "1",
                              "--epoch", "2", "--use-crop", "0"))
    CALLS["frames"] = 0
    ctx, state, _ = build_context(cfg, torch.device("cpu"))
    assert CALLS["frames"] == 4  # the teacher pass: a1..a4, once each (k=3's a3, a4 are among them)
    batch = next(iter(ctx.loaders[1]))
    assert batch["label"].shape == (2, 32, 48) and batch["teacher"].shape == (2, 3, 3, 4)  # raw: 24×36 (key scale 0.75) / 8
    samples = sum(len(dl.dataset) for dl in ctx.loaders.values())
    assert samples == 4 + 2  # even per distance: no batch of 1 (BatchNorm in training needs 2)
    for epoch in range(2):
        before = CALLS["frames"]
        train_one_epoch(ctx, epoch, state)
        assert CALLS["frames"] - before == samples  # one keyframe per clip; no teacher forward


def test_crop_training_takes_its_targets_from_the_crop_itself(tmp_path, weights):
    """--use-crop 1: the keyframe net runs on each augmented target frame (crop_view_targets), so every clip
    costs two keyframe-net forwards; the cached targets only mark the padding."""
    root = write_tree(tmp_path / "data", {"train/a": (5, 32, 48), "val/v": (4, 32, 48)})
    cfg = parse_args(cli_args(root, tmp_path / "logs", weights, "--multi-step", "1", "3", "--eval-multi-step", "1",
                              "--epoch", "1", "--crop-height", "24", "--crop-width", "32"))
    ctx, state, _ = build_context(cfg, torch.device("cpu"))
    batch = next(iter(ctx.loaders[1]))
    assert batch["label"].shape == (2, 24, 32) and "teacher" not in batch  # no cropped cached logits loaded
    samples = sum(len(dl.dataset) for dl in ctx.loaders.values())
    before = CALLS["frames"]
    train_one_epoch(ctx, 0, state)
    assert CALLS["frames"] - before == 2 * samples


def test_crop_view_targets_are_the_keyframe_prediction_of_the_crop_with_padding_kept():
    model = teacher_model()
    frame = torch.from_numpy(stripe_frame(2, 16, 40)).permute(2, 0, 1).float()[None]   # a crop of a stripe clip
    cached = torch.zeros(1, 16, 40, dtype=torch.int64)
    cached[:, 12:, :] = 255                                                               # padding rows
    labels, logits = crop_view_targets(model, frame, cached, 1.0, 255, with_logits=True)
    expected = torch.from_numpy(teacher_labels_by_hand(2, 16, 40)).long()[None]
    expected[:, 12:, :] = 255
    assert labels.dtype == torch.int64 and torch.equal(labels, expected)
    assert logits.shape == (1, 3, 2, 5)
    assert crop_view_targets(model, frame, cached, 1.0, 255, with_logits=False)[1] is None


def test_refused_combinations():
    with pytest.raises(SystemExit, match="pseudo-labels"):
        parse_args(["--pseudo-labels", "1", "--train-segnet", "1"])


# ------------------------------------------------------------------ evaluation: agreement
def test_keyframe_net_agrees_with_itself_and_reference_is_recorded(tmp_path, weights, capsys):
    root = write_tree(tmp_path / "data", {"val/v": (5, 32, 48)}, masks=("val/v",))
    logs = tmp_path / "logs"
    common = ["--evaluate", "1", "--temporal-consistency", "0", "--fusion", "copy", "--eval-multi-step", "2",
              "--checkname", "e"]
    assert cli.main(cli_args(root, logs, weights, *common, "--keyframe-only", "1", "--ResFolderName", "kf")) == 0
    assert "AGREEMENT with the keyframe net" in capsys.readouterr().out
    assert cli.main(cli_args(root, logs, weights, *common, "--ResFolderName", "copy")) == 0
    capsys.readouterr()
    assert cli.main(cli_args(root, logs, weights, *common, "--ResFolderName", "gt", "--pseudo-labels", "0")) == 0
    assert "AGREEMENT" not in capsys.readouterr().out
    run = next((logs / "run" / "folder").iterdir())
    kf, copy, gt = (json.loads((run / f"eval_{n}" / "metrics.json").read_text()) for n in ("kf", "copy", "gt"))
    assert kf["reference"] == copy["reference"] == "teacher" and gt["reference"] == "ground_truth"
    assert kf["num_samples"] == {"0": 5} and copy["num_samples"] == {"0": 5, "2": 3}  # every frame, no mask read
    assert kf["per_distance"]["0"]["miou"] == 100.0 and copy["per_distance"]["0"]["miou"] == 100.0
    assert copy["per_distance"]["2"]["miou"] < 100.0  # the reference is the scored frame's, not the keyframe's
    assert gt["num_samples"] == {"0": 5, "2": 3}


# ------------------------------------------------------------------ end to end on clip folders without masks
@pytest.mark.slow
def test_label_free_training_and_evaluation_on_unlabelled_clip_folders(tmp_path, weights, capsys):
    """Two train clips of 12 frames (64×96, and 60×96: height not a multiple of 8), one val clip, no mask/."""
    root = write_tree(tmp_path / "data", {"train/a": (12, 64, 96), "train/b": (12, 60, 96), "val/v": (12, 60, 96)})
    logs = tmp_path / "logs"
    assert cli.main(cli_args(root, logs, weights, "--checkname", "free", "--epoch", "1", "--max-iters", "2",
                             "--multi-step", "1", "2", "--eval-multi-step", "1", "2", "--pretrain-flow", "dis",
                             "--pretrain-flow-iters", "2")) == 0
    run = logs / "run" / "folder" / next(p.name for p in (logs / "run" / "folder").iterdir())
    val = json.loads((run / "metrics.json").read_text())
    assert val["reference"] == "teacher" and val["num_samples"] == {"0": 12, "1": 11, "2": 10}
    assert "agreement with the keyframe net" in capsys.readouterr().out
    cache = next((run / "teacher_cache").iterdir()) / "scale_0.75"
    assert len(list(cache.glob("*.png"))) == 11 + 11 + 12  # train frames with >= 1 predecessor, every val frame
    assert cli.main(cli_args(root, logs, weights, "--checkname", "free", "--evaluate", "1", "--resume", "1",
                             "--eval-multi-step", "1", "2", "--ResFolderName", "e")) == 0
    out = capsys.readouterr().out
    metrics = json.loads((run / "eval_e" / "metrics.json").read_text())
    assert metrics["reference"] == "teacher" and metrics["per_distance"]["0"]["miou"] == 100.0
    assert metrics["temporal_consistency"]["flow"] == "dis" and metrics["temporal_consistency"]["frames"] == 12
    assert "mvc8" not in metrics and "AGREEMENT" in out
    assert len(list(cache.glob("*.png"))) == 34  # --evaluate at the same scale reuses the entries


@pytest.mark.parametrize("dense, train_frames", [(False, 2), (True, 10)])
def test_training_smoke_on_the_synthetic_data_ignoring_its_labels(synthetic_data, tmp_path, weights, dense,
                                                                   train_frames):
    """2 train snippets of 6 frames, annotated at 4: the annotated frames' clips, or (--dense-labels 1) every frame
    with a predecessor; labels never scored against (the teacher has 19 classes here, 3 of them coloured)."""
    torch.save(make_teacher(19).state_dict(), weights)
    logs = tmp_path / "logs"
    assert cli.main(["--dataset", "synthetic", "--data-path", str(synthetic_data()), "--log-folder", str(logs),
                     "--segnet", SPEC, "--segnet-weights", str(weights), *RAW_RGB, "--pseudo-labels", "1",
                     "--dense-labels", str(int(dense)), "--batch-size", "2", "--num-worker", "0", "--device", "cpu",
                     "--crop-height", "64", "--crop-width", "128", "--multi-step", "1", "--eval-multi-step", "1",
                     "--max-iters", "1", "--epoch", "1", "--checkname", "s"]) == 0
    run = next((logs / "run" / "synthetic").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["reference"] == "teacher" and metrics["per_distance"]["0"]["miou"] == 100.0
    assert metrics["num_samples"] == {"0": 1, "1": 1}  # the val snippet's annotated frame
    entries = list(next((run / "teacher_cache").iterdir()).glob("scale_0.75/*.png"))
    assert len(entries) == train_frames + 1
