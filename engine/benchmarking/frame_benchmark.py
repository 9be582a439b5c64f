"""The ``--benchmark 1`` job: time and count FLOPs per frame type through ``VideoPredictor.step()``
(docs/evaluation.md#throughput), for any keyframe net ``--segnet`` names (parameters per part: keyframe net, flow
net, GSV).

Frame types: a keyframe at each ``--bench-scales`` scale (a predictor with key_interval=1, so every
step is a keyframe) and a non-keyframe (a predictor whose interval never ends, after one untimed
keyframe), timed in interleaved rounds (time_interleaved). Each timed step is followed by the
``.labels`` access (full-resolution upsample + argmax), with a clock read in between, so one run gives
both "step" and "step + labels". Everything the
predictor does is timed, including moving the uint8 frame to the device; nothing else is.
The throughput for interval l is derived from these medians (throughput_report.throughput_table).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from config.config import Config
from engine.benchmarking.backend_timing import backend_rows, compare_backends
from engine.benchmarking.bench_model import build_bench_model, module_params, optimisations_note
from engine.benchmarking.machine import load_average, machine_info
from engine.benchmarking.step_timing import (NONKEY_PER_ROUND, NUM_TIMING_FRAMES, WARMUP, measure_frame_types,
                                             moving_frame, stream_memory, synthetic_texture)
from engine.benchmarking.throughput_report import PAPER, contention_note, render_markdown, throughput_table
from utils.allocator import heap_is_kept
from utils.logging import write_text


def _check_args(cfg: Config) -> None:
    if cfg.bench_height < 8 or cfg.bench_width < 8:
        raise ValueError(f"--bench-height/--bench-width must be >= 8 (the 1/8 grid), got "
                         f"{cfg.bench_height}×{cfg.bench_width}")
    if cfg.bench_repeats < 1 or cfg.bench_stream_frames < 0:
        raise ValueError(f"--bench-repeats must be >= 1 and --bench-stream-frames >= 0, got "
                         f"{cfg.bench_repeats}, {cfg.bench_stream_frames}")
    if not cfg.bench_scales or any(not 0 < s <= 2 for s in cfg.bench_scales):
        raise ValueError(f"--bench-scales must be in (0, 2], got {cfg.bench_scales}")


@contextlib.contextmanager
def _cudnn_autotune(enabled: bool):
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled or previous
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def benchmark_frame_types(cfg: Config, device: torch.device) -> int:
    """The ``--benchmark 1`` job: measure, write {results_dir}/bench_<device>.{md,json}, print the markdown.
    Returns 0."""
    _check_args(cfg)
    if cfg.backend == "onnxruntime" and device.type != "cpu":
        raise ValueError("--backend onnxruntime: the benchmark compares both backends on the CPU; pass --device cpu")
    model, weights = build_bench_model(cfg, device)
    machine, load_start = machine_info(device), load_average()
    print(f"benchmark: {weights['note']}", flush=True)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    warmup = WARMUP.get(device.type, 1)
    texture = synthetic_texture(cfg.bench_height, cfg.bench_width)
    frames = [moving_frame(texture, i) for i in range(NUM_TIMING_FRAMES)]
    scales = [float(s) for s in cfg.bench_scales]
    with _cudnn_autotune(device.type == "cuda"):
        times, flops = measure_frame_types(model, frames, scales, cfg, device, warmup, sync)
        stream = stream_memory(model, texture, cfg, device, sync) if cfg.bench_stream_frames > 0 else None
    backends = (compare_backends(model, frames, cfg.key_scale, cfg.export_dir, cfg.bench_repeats, warmup)
                if cfg.backend == "onnxruntime" else None)
    t_key = {k: v["step_labels"]["median_ms"] / 1000 for k, v in times["keyframe"].items()}
    t_non = times["nonkeyframe"]["step_labels"]["median_ms"] / 1000
    ratios = {k: {"step": times["nonkeyframe"]["step"]["median_ms"] / v["step"]["median_ms"],
                  "step_labels": times["nonkeyframe"]["step_labels"]["median_ms"] / v["step_labels"]["median_ms"]}
              for k, v in times["keyframe"].items()}
    machine["load_average"] = [load_start, load_average()]
    machine["contention"] = contention_note(machine["load_average"], machine["cpu_count"] or 1)
    note = ""
    result = {
        "machine": machine, "weights": weights, "times_ms": times, "flops": flops, "ratios": ratios,
        "settings": {"frame_size": [cfg.bench_height, cfg.bench_width], "batch": 1, "dtype": "float32",
                     "repeats": cfg.bench_repeats, "warmup": warmup, "nonkey_per_round": NONKEY_PER_ROUND,
                     "scales": scales, "segnet": cfg.segnet.spec,
                     "flow": cfg.optical_flow_network, "intra": cfg.intra, "key_scale": cfg.key_scale,
                     "cudnn_benchmark": device.type == "cuda", "note": note,
                     "optimisations": optimisations_note(device, heap_is_kept())},
        "params": module_params(model),
        "throughput": throughput_table(t_key, t_non, {k: v["flops"] for k, v in flops["keyframe"].items()},
                                       flops["nonkeyframe"]["flops"]),
        "stream": stream, "paper": PAPER, "backends": backends,
    }
    out_dir = Path(cfg.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = "\n".join([render_markdown(result), *backend_rows(backends)])
    write_text(out_dir / f"bench_{machine['tag']}.json", json.dumps(result, indent=2))
    write_text(out_dir / f"bench_{machine['tag']}.md", markdown + "\n")
    print(markdown)
    print(f"benchmark: wrote {out_dir / ('bench_' + machine['tag'])}.{{md,json}}")
    return 0
