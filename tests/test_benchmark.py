"""The benchmark: its arithmetic on hand-computed inputs, FLOP counting of known layers, and tiny
end-to-end runs of `main.py --benchmark 1` (no timing assertions: only that numbers are produced)."""
from __future__ import annotations

import itertools
import json
import math
import platform

import numpy as np
import pytest
import torch
from torch import nn

import main
from engine.benchmarking.throughput_report import (avg_flops_per_frame, contention_note, device_tag, flop_ratio_limit,
                                                   fps_for_interval, measure_marked, memory_growth, params_mb,
                                                   parse_cpu_model, parse_vmrss_mb, speedup, summarize_times,
                                                   throughput_table)
from engine.benchmarking.step_timing import count_flops, moving_frame, synthetic_texture

TINY = ["--benchmark", "1", "--bench-height", "64", "--bench-width", "128", "--bench-repeats", "1",
        "--bench-scales", "0.5", "0.75", "--bench-stream-frames", "5"]


# --- arithmetic -------------------------------------------------------------------------------------
def test_fps_and_speedup_by_hand():
    assert fps_for_interval(1.0, 0.1, 1) == pytest.approx(1.0)
    assert fps_for_interval(1.0, 0.1, 3) == pytest.approx(3 / 1.2)  # 2.5
    assert fps_for_interval(0.02, 0.005, 5) == pytest.approx(5 / 0.04)  # 125 FPS
    assert speedup(1.0, 0.1, 3) == pytest.approx(2.5)
    assert speedup(1.0, 0.1, 1) == pytest.approx(1.0)
    assert speedup(2.0, 2.0, 4) == pytest.approx(1.0)  # a non-keyframe as slow as a keyframe gains nothing


def test_flop_ratio_limit_and_average_with_the_paper_figures():
    assert flop_ratio_limit(58.5, 2.8, 3) == pytest.approx(175.5 / 64.1)
    assert flop_ratio_limit(58.5, 2.8, 3) == pytest.approx(2.738, abs=1e-3)
    assert flop_ratio_limit(58.5, 2.8, 1) == pytest.approx(1.0)
    assert flop_ratio_limit(10.0, 0.0, 4) == pytest.approx(4.0)  # free non-keyframes: the limit is l
    assert avg_flops_per_frame(58.5, 2.8, 3) == pytest.approx(64.1 / 3)  # the paper's "Avg FLOPs 21.3G"
    assert params_mb(11_797_071) == pytest.approx(47.188, abs=1e-3)  # SwiftNet-R18 "47.2M" in the paper


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_bad_interval_is_rejected(bad):
    with pytest.raises(ValueError, match="interval"):
        fps_for_interval(1.0, 0.1, bad)
    with pytest.raises(ValueError, match="interval"):
        flop_ratio_limit(1.0, 0.1, bad)


def test_throughput_table_matches_the_functions():
    table = throughput_table({"0.75": 1.0}, 0.1, {"0.75": 117e9}, 5.6e9, max_l=3)
    assert [r["l"] for r in table["0.75"]] == [1, 2, 3]
    row = table["0.75"][2]
    assert row["fps"] == pytest.approx(2.5) and row["speedup"] == pytest.approx(2.5)
    assert row["flop_ratio_limit"] == pytest.approx(175.5 / 64.1)
    assert row["avg_gmacs"] == pytest.approx(64.1 / 3)  # FLOPs / 2 = multiply-adds


def test_measure_marked_with_a_fake_clock():
    ticks = iter([0, 1, 3, 10, 12, 15, 20, 21, 27])  # 3 reads per run: start and two marks
    syncs = []

    def run(mark):
        mark()
        mark()

    runs = measure_marked(run, repeats=2, warmup=1, sync=lambda: syncs.append(1), clock=lambda: next(ticks))
    assert runs == [[2, 5], [1, 7]]  # the warm-up run (0, 1, 3) is dropped
    assert len(syncs) == 9  # before every clock read
    assert summarize_times([r[0] for r in runs]) == {"median_ms": 1500.0, "min_ms": 1000.0, "max_ms": 2000.0, "n": 2}


def test_measure_marked_rejects_runs_without_marks():
    clock = itertools.count()
    with pytest.raises(RuntimeError, match="mark"):
        measure_marked(lambda mark: None, repeats=1, warmup=0, sync=lambda: None, clock=lambda: next(clock))
    with pytest.raises(ValueError, match="repeats"):
        measure_marked(lambda mark: mark(), repeats=0, warmup=0, sync=lambda: None, clock=lambda: 0.0)


def test_memory_growth_compares_the_same_phase_of_the_key_cycle():
    # keyframes (every 3rd frame, last one at index 9) peak higher; no growth at equal phase
    values = [130, 100, 100, 130, 100, 100, 130, 100, 100, 130]
    g = memory_growth(values, period=3)
    assert g["ref_frame"] == 3 and g["growth_mb"] == 0 and g["flat"]
    assert (g["first_mb"], g["last_mb"], g["max_mb"]) == (130, 130, 130)
    leaky = [100 + 20 * i for i in range(10)]
    g = memory_growth(leaky, period=1)
    assert g["ref_frame"] == 1 and g["growth_mb"] == 160 and not g["flat"]
    assert memory_growth([5.0], period=3)["growth_mb"] == 0


def test_parsers_and_device_tag():
    assert parse_vmrss_mb("Name:\tpython\nVmPeak:\t 999 kB\nVmRSS:\t  204800 kB\n") == 200.0
    assert parse_vmrss_mb("Name:\tpython\n") is None
    assert parse_cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags : x\n") == "AMD EPYC 7B13"
    assert parse_cpu_model("processor : 0\n") is None
    assert contention_note([1.2, 2.4], cpu_count=2) == ""  # the benchmark's own 2 threads
    assert "load average reached 4.5" in contention_note([4.5, None], cpu_count=2)
    assert contention_note([None, None], cpu_count=2) == ""
    assert device_tag("cpu") == "cpu"
    assert device_tag("cuda", "NVIDIA GeForce GTX 1080 Ti") == "nvidia_geforce_gtx_1080_ti"


# --- FLOP counting and inputs ---------------------------------------------------------------------
def test_count_flops_of_known_layers_is_twice_the_multiply_adds():
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    x = torch.zeros(1, 3, 5, 6)
    total, per_module = count_flops(lambda: conv(x))
    assert total == 2 * (4 * 5 * 6) * (3 * 3 * 3)  # outputs × (C_in · k²) MACs = 3240
    assert per_module == {"Conv2d": total}
    strided = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(4 * 3 * 3, 7))
    total, _ = count_flops(lambda: strided(torch.zeros(2, 3, 5, 6)))
    assert total == 2 * (2 * 4 * 3 * 3 * 27 + 2 * 36 * 7)


def test_synthetic_sequence_pans_smoothly():
    texture = synthetic_texture(1024, 2048)
    assert texture.shape == (1024, 2048, 3) and texture.dtype == np.uint8 and texture.std() > 10
    f0, f1, f2 = (moving_frame(texture, i) for i in range(3))
    np.testing.assert_array_equal(f0, texture)
    # 4 px right per frame; the vertical bob is round(1024/170 * sin(2πi/50)) = 1 px at frames 1 and 2
    np.testing.assert_array_equal(f1, np.roll(texture, (1, 4), axis=(0, 1)))
    np.testing.assert_array_equal(f2, np.roll(texture, (1, 8), axis=(0, 1)))
    assert np.abs(f1.astype(np.int16) - f0).mean() < 10  # neighbouring frames stay similar
    assert moving_frame(synthetic_texture(16, 32), 3).shape == (16, 32, 3)


# --- end to end -----------------------------------------------------------------------------------
def _positive_finite(tree, path="") -> None:
    if isinstance(tree, dict):
        for k, v in tree.items():
            _positive_finite(v, f"{path}.{k}")
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            _positive_finite(v, f"{path}[{i}]")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        assert math.isfinite(tree) and tree > 0, f"{path} = {tree}"


def test_tiny_benchmark_writes_json_and_markdown(tmp_path, capsys):
    assert main.main(TINY + ["--results-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bench_cpu.json").read_text())
    markdown = (tmp_path / "bench_cpu.md").read_text()
    assert "## Throughput for keyframe interval l" in capsys.readouterr().out
    assert {"machine", "settings", "weights", "times_ms", "flops", "ratios", "params", "throughput", "stream",
            "paper"} <= set(result)
    assert set(result["times_ms"]["keyframe"]) == {"0.5", "0.75"} == set(result["throughput"])
    assert set(result["times_ms"]["nonkeyframe"]) == {"step", "step_labels"}
    stream = result["stream"]
    for name in ("times_ms", "flops", "ratios", "params", "throughput"):
        _positive_finite(result[name], name)
    _positive_finite({k: v for k, v in stream.items() if k != "memory"}, "stream")
    rss = stream["memory"]["rss"]  # growth may be zero or negative; the levels are positive
    _positive_finite({k: rss[k] for k in ("first_mb", "last_mb", "max_mb", "ref_mb")}, "rss")
    assert math.isfinite(rss["growth_mb"]) and isinstance(rss["flat"], bool)
    assert [r["l"] for r in result["throughput"]["0.75"]] == [1, 2, 3, 4, 5]
    # FLOPs split by module: a keyframe is the keyframe net alone, a non-keyframe is flow net + GSV
    key = result["flops"]["keyframe"]["0.75"]
    assert set(key["per_module_gmacs"]) == {"SwiftNet"} and key["gflops"] == pytest.approx(2 * key["gmacs"])
    non = result["flops"]["nonkeyframe"]
    assert set(non["per_module_gmacs"]) == {"FlowLight", "GSV"}
    assert sum(non["per_module_gmacs"].values()) == pytest.approx(non["gmacs"])
    assert result["flops"]["keyframe"]["0.5"]["gmacs"] < key["gmacs"]
    assert result["params"]["segnet"]["count"] == 11_797_071  # SwiftNet-R18, docs/evaluation.md#reference-figures
    assert stream["frames"] == 5 and len(stream["series_mb"]["rss"]) == 5 and "rss" in stream["memory"]
    assert len(result["machine"]["load_average"]) == 2
    assert result["machine"]["cpu_count"] >= 1 and "random init" in result["weights"]["segnet"]
    for heading in ("Per-frame-type time", "Parameters", "Streaming memory", "| keyframe @0.75 |",
                    "inference optimisations: BatchNorm folded"):
        assert heading in markdown
    if platform.libc_ver()[0] == "glibc":  # the allocator setting main.py applies is recorded as applied
        assert "glibc heap kept between frames: yes" in result["settings"]["optimisations"]


def test_tiny_benchmark_bisenet_flownet(tmp_path):
    argv = ["--benchmark", "1", "--segnet", "bisenet", "--optical-flow-network", "flownet", "--bench-height",
            "64", "--bench-width", "128", "--bench-repeats", "1", "--bench-scales", "0.5",
            "--results-dir", str(tmp_path)]
    assert main.main(argv) == 0
    result = json.loads((tmp_path / "bench_cpu.json").read_text())
    assert result["stream"] is None and set(result["flops"]["keyframe"]["0.5"]["per_module_gmacs"]) == {"BiSeNet"}
    assert set(result["flops"]["nonkeyframe"]["per_module_gmacs"]) == {"FlowNetS", "GSV"}
    _positive_finite(result["throughput"], "throughput")


@pytest.mark.parametrize("flags, match", [(["--bench-repeats", "0"], "--bench-repeats"),
                                          (["--bench-height", "4"], "--bench-height"),
                                          (["--bench-scales", "0"], "--bench-scales")])
def test_bad_benchmark_flags_are_named(tmp_path, flags, match, monkeypatch):
    monkeypatch.setenv("GSVNET_TRACEBACK", "1")  # the job wrapper re-raises the user error it would print
    with pytest.raises(ValueError, match=match):
        main.main(["--benchmark", "1", "--results-dir", str(tmp_path)] + flags)


def test_missing_explicit_segnet_weights_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GSVNET_TRACEBACK", "1")  # the job wrapper re-raises the user error it would print
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        main.main(TINY + ["--segnet-weights", str(tmp_path / "nope.pt"), "--results-dir", str(tmp_path)])
