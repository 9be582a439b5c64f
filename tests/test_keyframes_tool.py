"""`--time-budget` in both training stages, and tools/keyframes.py (`make keyframes`): its report writers
from a hand-made results dict, and a --quick run end to end (slow).

Training runs on the tiny synthetic set (64×128, 2 train + 1 val snippets of 6 frames, annotation at 4).
"""
from __future__ import annotations

from pathlib import Path

import pytest

import main as cli
from engine.training.lr_schedule import poly_factor
from engine.training.loop import TimeBudget
from tools import keyframes
from utils.checkpoint import load_file

RUN = ("run", "synthetic")


@pytest.fixture(scope="module")
def data(synthetic_data) -> Path:
    return synthetic_data()  # the default tiny set (conftest.TINY)


def args(data: Path, logs: Path, name: str, *extra: str) -> list[str]:
    return ["--dataset", "synthetic", "--data-path", str(data), "--log-folder", str(logs), "--checkname", name,
            "--batch-size", "2", "--num-worker", "0", "--use-crop", "0", "--max-eval-samples", "1",
            "--device", "cpu", "--epoch", "50", *extra]


def test_poly_factor_follows_the_budget_when_it_runs_out_first():
    assert poly_factor(10, 100) == pytest.approx(0.9 ** 0.9)
    assert poly_factor(10, 100, time_fraction=0.5) == pytest.approx(0.5 ** 0.9)  # time ahead of iterations
    assert poly_factor(60, 100, time_fraction=0.5) == pytest.approx(0.4 ** 0.9)  # iterations ahead of time
    assert poly_factor(0, 100, time_fraction=1.5) == 0.0


def test_time_budget_counts_only_inside_counting():
    unlimited = TimeBudget(0)
    with unlimited.counting():
        pass
    assert not unlimited.exhausted() and unlimited.fraction() == 0.0
    budget = TimeBudget(1e-9)
    assert not budget.exhausted()  # nothing counted yet: validation time outside counting() is free
    with budget.counting():
        assert budget.exhausted() and budget.stopped
    assert budget.spent > 0 and budget.fraction() > 1


def test_time_budget_stops_keyframe_training_after_first_iteration(data, tmp_path, capsys):
    # dense labels: 12 training frames = 6 batches per epoch, 300 iterations without the budget
    logs = tmp_path / "logs"
    assert cli.main(args(data, logs, "seg", "--train-segnet", "1", "--dense-labels", "1",
                         "--time-budget", "0.001")) == 0
    folder = logs.joinpath(*RUN, "swiftnet_seg")
    ckpt = load_file(folder / "segnet_checkpoint.pth.tar")
    assert ckpt["step"] == 1 and ckpt["epoch"] == 1  # one iteration, then validated and saved as an epoch
    assert ckpt["current_pred"] is not None
    assert (folder / "segnet.pt").is_file() and (folder / "segnet_best.pt").is_file()
    assert "time budget reached" in capsys.readouterr().out


def test_time_budget_stops_propagation_training_and_validates(data, segnet_file, tmp_path, capsys):
    logs = tmp_path / "logs"
    argv = args(data, logs, "prop", "--segnet-weights", str(segnet_file), "--multi-step", "1", "--batch-size", "1",
                "--eval-multi-step", "1", "--eval-interval", "10", "--time-budget", "0.001")
    assert cli.main(argv) == 0
    folder = logs.joinpath(*RUN, "swiftnet_prop")
    ckpt = load_file(folder / "checkpoint.pth.tar")
    assert ckpt["step"] == 1 and ckpt["epoch"] == 1  # 2 clips = 2 batches per epoch, 100 without the budget
    assert (folder / "model_best.pth.tar").is_file()  # validated although --eval-interval 10 had not come
    assert (folder / "metrics.json").is_file()
    assert "time budget reached" in capsys.readouterr().out


def hand_made_rows() -> tuple[list[dict], dict]:
    def row(label, key_ms, nonkey_ms, miou):
        return {"label": label, "spec": label.lower(), "frame_size": "1024×2048", "keyframe_miou": miou,
                "l3": [miou - 1.3, miou - 2.5], "l4": [miou - 2.0, miou - 4.0],
                "k4": {"gsv": miou - 4.5, "warp": miou - 5.5, "copy": miou - 9.5},
                "key_ms": key_ms, "nonkey_ms": nonkey_ms,
                "fps": {"1": 1000 / key_ms, "3": 3000 / (key_ms + 2 * nonkey_ms),
                        "4": 4000 / (key_ms + 3 * nonkey_ms)},
                "speedup": {"3": 3 * key_ms / (key_ms + 2 * nonkey_ms), "4": 4 * key_ms / (key_ms + 3 * nonkey_ms)},
                "limit": {"3": 2.75, "4": 3.51}, "key_gmacs": 58.26, "nonkey_gmacs": 2.7,
                "segnet_params": 11_797_071, "total_params": 12_193_558, "segnet_iters": 123, "segnet_epochs": 4,
                "prop_iters": 77, "segnet_stage_s": 190.0, "prop_stage_s": 130.0}
    rows = [row("HeavyNet", 350.0, 20.0, 47.8), row("LightNet", 40.0, 20.0, 41.3)]
    meta = {"date": "2031-02-03", "cpu": "Test CPU 9000", "threads": 2, "torch": "2.14.1", "data": "data/synthetic",
            "budget_s": 180.0, "prop_budget_s": 120.0, "frame_size": "1024×2048", "quick": False,
            "commands": ["python main.py --train-segnet 1 --time-budget 180"], "seconds": {"total": 1234.0}}
    return rows, meta


def test_report_writers_from_hand_made_results(tmp_path):
    rows, meta = hand_made_rows()
    md = keyframes.write_markdown(rows, meta, tmp_path / "keyframes.md").read_text()
    for text in ("47.8", "46.5 / 45.3", "45.8 / 43.8", "43.3 / 42.3 / 38.3", "123 (4)", "| 77 |", "350.0",
                 "20.0 (5.7 %)", "2.69× (2.75×)", "11.80 M", "58.26 / 2.70", "**180 s**", "**120 s**",
                 "Test CPU 9000", "2031-02-03", "--time-budget 180", "1024×2048"):
        assert text in md, text
    assert "gains least with LightNet" in md  # 40 ms keyframe: 1.50× at l = 3 vs HeavyNet's 2.69×
    assert "for -1.3 points of avg mIoU" in md and "the same 77 end-to-end iterations" in md
    png = keyframes.write_plot(rows, meta, tmp_path / "keyframes.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_override_replaces_or_appends_flags():
    assert keyframes.override(["--epoch", "5", "--amp", "1"], epoch=9, time_budget=1.5) == \
        ["--epoch", "9", "--amp", "1", "--time-budget", "1.5"]


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    out = tmp_path / "results"
    assert keyframes.main(["--quick", "--logs", str(tmp_path / "logs"), "--out", str(out),
                           "--nets", "swiftnet", "torchvision:lraspp_mobilenet_v3_large"]) == 0
    md = (out / "keyframes.md").read_text()
    assert "SwiftNet-R18" in md and "LR-ASPP MobileNetV3-L" in md and "--quick run" in md
    assert md.count("--time-budget 2\n") == 4  # two keyframe nets + their two propagation stages
    assert (out / "keyframes.png").stat().st_size > 0
