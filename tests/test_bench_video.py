"""engine/benchmarking/ video_benchmark.py, video_report.py, machine.py: the summary arithmetic on hand-made
numbers, the process age, and a smoke run of ``main.py --benchmark-video`` on a tiny clip that writes both report
files with the expected keys."""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import main
from engine.benchmarking import machine, video_report


def job(l: int, frames: int, seconds: float, none: bool = False) -> dict:
    return {"l": l, "outputs": ["none"] if none else ["color", "label", "overlay"], "frames": frames,
            "seconds": seconds, "fps": frames / seconds}


def test_summary_rows_by_hand():
    jobs = [job(1, 10, 5.0), job(1, 10, 4.0, none=True), job(3, 10, 2.0), job(3, 10, 1.6, none=True)]
    step = {"fps": {1: 2.5, 3: 6.0}, "speedup": {1: 1.0, 3: 2.4}}
    one, three = video_report.summary_rows(jobs, step, [1, 3])
    assert one["speedup"] == pytest.approx(1.0) and one["none_ratio"] == pytest.approx(1.0)
    # l=3: 0.5 s -> 0.2 s per frame = 2.5×, against 2.4× at step level; --save none 6.25 vs 6.0 frames/s
    assert three["speedup"] == pytest.approx(2.5) and three["speedup_ratio"] == pytest.approx(2.5 / 2.4)
    assert three["none_fps"] == pytest.approx(6.25) and three["none_ratio"] == pytest.approx(6.25 / 6.0)
    lines = video_report.targets([one, three], {"total_s": 3.5})
    assert any("l=3: job speedup 2.50× = 104.2 %" in t and t.endswith("met") for t in lines)
    assert lines[-1].endswith("MISSED")  # 3.5 s > 3 s start-up
    # no l=1 job: no job speedup to compare
    assert video_report.summary_rows(jobs[2:], step, [3])[0]["speedup"] is None


def test_process_age():
    age = machine.process_age_s()
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert age is not None and 0 < age < uptime
    time.sleep(0.05)
    assert machine.process_age_s() >= age  # clock ticks: 10 ms steps


def test_benchmark_video_smoke(tmp_path, capsys):
    src = tmp_path / "tiny.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (96, 64))
    for t in range(7):
        writer.write(np.full((64, 96, 3), 30 * t, np.uint8))
    writer.release()
    results = tmp_path / "results"
    rc = main.main(["--benchmark-video", str(src), "--bench-key-intervals", "1", "3", "--bench-repeats", "1",
                    "--dataset", "synthetic", "--device", "cpu", "--results-dir", str(results),
                    "--log-folder", str(tmp_path / "logs")])
    out = capsys.readouterr().out
    assert rc == 0
    assert sorted(p.name for p in results.iterdir()) == ["bench_video_cpu.json", "bench_video_cpu.md"]
    result = json.loads((results / "bench_video_cpu.json").read_text())
    assert set(result) >= {"machine", "weights", "video", "settings", "startup", "step_level", "jobs", "summary",
                           "targets"}
    assert "random init" in result["weights"]["note"]
    assert result["video"]["frames"] == 7 and result["video"]["size"] == [64, 96]
    assert result["video"]["fps"] == pytest.approx(12.0)
    assert set(result["startup"]) == {"imports_s", "model_load_s", "kernel_warm_up_s", "total_s"}
    assert [(j["l"], j["outputs"], j["frames"], j["num_keyframes"]) for j in result["jobs"]] == [
        (1, ["color", "label", "overlay"], 7, 7), (1, ["none"], 7, 7),
        (3, ["color", "label", "overlay"], 7, 3), (3, ["none"], 7, 3)]
    assert set(result["jobs"][0]["stages_s"]) >= {"decode", "keyframe_net", "labels", "colour", "overlay", "png",
                                                  "encode", "wait_decode", "wait_writers", "drain"}
    assert "propagation" in result["jobs"][2]["stages_s"] and "png" not in result["jobs"][1]["stages_s"]
    assert [r["l"] for r in result["summary"]] == [1, 3] and result["summary"][0]["speedup"] == pytest.approx(1.0)
    assert set(result["step_level"]["fps"]) == {"1", "3"}
    assert "| 3 |" in out and "Targets:" in (results / "bench_video_cpu.md").read_text()


def test_missing_video_is_a_clear_error(tmp_path, capsys):
    rc = main.main(["--benchmark-video", str(tmp_path / "nope.mp4"), "--device", "cpu",
                    "--results-dir", str(tmp_path / "r")])
    assert rc == 1 and "nope.mp4" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_contention_note_and_other_load():
    step = {"other_processes_cpu": 0.0}
    assert video_report.contention(step, [{"other_processes_cpu": 0.05}, {"other_processes_cpu": None}]) == ""
    note = video_report.contention(step, [{"other_processes_cpu": 0.02}, {"other_processes_cpu": 0.3}])
    assert "up to 30 %" in note
    with machine.OtherLoad() as other:
        sum(range(2_000_000))
    assert other.fraction is not None and 0.0 <= other.fraction <= 1.0
