"""CamVid picks its best model on val at BOTH training call sites (keyframe-net and propagation training).

The tiny CamVid tree below has train and val frames only, no test split: a validation during training
that scored the split of ``--evaluate`` (CamVid: test) instead of ``eval_split(preset, "select")`` (val)
would fail to find it. So dropping ``purpose="select"`` at either call site fails these runs.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import main as cli

H, W = 48, 64
TRAIN = ["0006R0_f00930", "0006R0_f00960"]       # split_of -> train
VAL = ["0016E5_07959", "0016E5_07961"]           # split_of -> val (07959..08159)


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def camvid_without_test(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in TRAIN + VAL:
        label = (np.arange(W)[None, :].repeat(H, 0) * 11 // W).astype(np.uint8)   # 11 vertical bands
        _write(root / "label_id" / f"{name}_L.png", label)
        prefix, number = name[:-5], int(name[-5:])
        for k in range(3):  # the labelled frame and its two predecessors
            sequence = name.split("_")[0]
            frame = (label[..., None] * 20 + rng.integers(0, 30, (H, W, 3))).astype(np.uint8)
            _write(root / "frames" / sequence / f"{prefix}{number - k:05d}.png", frame)
    return root


def _args(root: Path, logs: Path, name: str, *extra: str) -> list[str]:
    return ["--dataset", "camvid", "--data-path", str(root), "--log-folder", str(logs), "--checkname", name,
            "--device", "cpu", "--num-worker", "0", "--batch-size", "2", "--epoch", "1", "--max-iters", "1",
            "--crop-height", "32", "--crop-width", "48", "--seed", "0", *extra]


@pytest.mark.slow
def test_both_trainers_validate_on_val_when_camvid_has_no_test_split(tmp_path, capsys):
    root = camvid_without_test(tmp_path / "camvid")
    logs = tmp_path / "logs"
    assert cli.main(_args(root, logs, "key", "--train-segnet", "1")) == 0, capsys.readouterr().err
    segnet = logs / "run" / "camvid" / "swiftnet_key" / "segnet_best.pt"
    assert segnet.is_file()
    assert cli.main(_args(root, logs, "prop", "--segnet-weights", str(segnet), "--multi-step", "1",
                          "--eval-multi-step", "1", "--use-crop", "1")) == 0, capsys.readouterr().err
    assert (logs / "run" / "camvid" / "swiftnet_prop" / "model_best.pth.tar").is_file()
    # and the split of --evaluate really is test: it is missing here, and --evaluate names it
    code = cli.main(_args(root, logs, "prop", "--evaluate", "1", "--eval-multi-step", "1",
                          "--resume", str(logs / "run" / "camvid" / "swiftnet_prop" / "model_best.pth.tar"),
                          "--segnet-weights", str(segnet), "--temporal-consistency", "0"))
    assert code == 1 and "test" in capsys.readouterr().err
