"""`--benchmark 1`: time and count FLOPs per frame type through ``VideoPredictor.step()`` (docs/evaluation.md#throughput),
for any keyframe net ``--segnet`` names (parameters per part: keyframe net, flow net, GSV).

Frame types: a keyframe at each ``--bench-scales`` scale (a predictor with key_interval=1, so every
step is a keyframe) and a non-keyframe (a predictor whose interval never ends, after one untimed
keyframe), timed in interleaved rounds (time_interleaved). Each timed step is followed by the
``.labels`` access (full-resolution upsample + argmax), with a clock read in between, so one run gives
both "step" and "step + labels". Everything the
predictor does is timed, including moving the uint8 frame to the device; nothing else is.
The throughput for interval l is derived from these medians (bench_report.throughput_table).
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
from pathlib import Path

import torch

from config.config import Config
from engine.benchmarking.backend_timing import backend_rows, compare_backends
from engine.benchmarking.throughput_report import PAPER, contention_note, device_tag, params_mb, parse_cpu_model, render_markdown, throughput_table
from engine.model_builder import build_model
from engine.runs import preset_of, resolve_resume, segnet_weights_path
from utils.allocator import keep_freed_memory
from utils.device import resolve_device
from utils.seed import seed_everything
from models import cpu_kernels
from models.gsvnet import GSVNet
from models.keyframe_net import parse_spec
from engine.benchmarking.step_timing import NONKEY_PER_ROUND, NUM_TIMING_FRAMES, WARMUP, measure_frame_types, moving_frame, stream_memory, synthetic_texture

# --- model ----------------------------------------------------------------------------------------
def build_bench_model(cfg: Config, device: torch.device) -> tuple[GSVNet, dict]:
    """The Config's GSVNet (any keyframe-net spec) with whatever weights exist; random init otherwise
    (timing does not care). An explicit --segnet-weights or --resume file that is missing is still an error.
    """
    preset = preset_of(cfg)
    resume = resolve_resume(cfg)
    seed_everything(cfg.seed)  # the same random weights every run: .labels time depends on the predictions
    model, parts = build_model(cfg, preset, device, resume=resume, missing_segnet="quiet")
    default = segnet_weights_path(cfg)
    if default is not None and default.exists():
        segnet_src = str(default)
    elif parts is not None and parts["segnet"] is not None:
        segnet_src = f"{resume} (segnet entry)"
    elif parse_spec(cfg.segnet).kind == "hf":
        segnet_src = f"{parse_spec(cfg.segnet).target} (the hf folder's own weights)"
    else:
        segnet_src = "random init (no weights file)"
    propagation_src = str(resume) if resume is not None else "random init (no --resume file)"
    note = (f"keyframe net {model.segnet_name}: {segnet_src}; flow + GSV: {propagation_src}. "
            f"FLOPs and the network times do not depend on the weight values; the .labels time does "
            f"(only cells on class boundaries are interpolated), so it varies with weights and content.")
    return model.eval(), {"segnet": segnet_src, "propagation": propagation_src, "note": note}


def module_params(model: GSVNet) -> dict[str, dict]:
    """Parameter count and float32 MB of the keyframe net, flow net, GSV and their sum."""
    counts = {name: sum(p.numel() for p in getattr(model, attr).parameters())
              for name, attr in (("segnet", "segnet"), ("flow", "flow_net"), ("gsv", "gsv"))}
    counts["total"] = sum(counts.values())
    return {name: {"count": c, "mb": params_mb(c)} for name, c in counts.items()}


# --- report ---------------------------------------------------------------------------------------
def machine_info(device: torch.device) -> dict:
    try:
        cpu = parse_cpu_model(Path("/proc/cpuinfo").read_text())
    except OSError:
        cpu = None
    cuda_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"platform": platform.platform(), "cpu_model": cpu or platform.processor() or "unknown",
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": str(device), "device_name": cuda_name or "cpu",
            "cuda": torch.version.cuda if cuda_name else None, "tag": device_tag(device.type, cuda_name)}


def optimisations_note(device: torch.device, malloc_tuned: bool) -> str:
    kernels = ("compiled CPU kernels (numba) for labels, frame shrink, warp, edge map"
               if device.type == "cpu" and cpu_kernels.available() else "PyTorch ops only")
    return (f"BatchNorm folded into the convolutions; channels-last; {kernels}; "
            f"glibc heap kept between frames: {'yes' if malloc_tuned else 'no'}")


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this platform
        return None


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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


def run_benchmark(cfg: Config) -> int:
    """Measure, write {results_dir}/bench_<device>.{md,json}, print the markdown. Returns 0."""
    _check_args(cfg)
    malloc_tuned = keep_freed_memory()  # as main.py does; idempotent
    device = resolve_device(cfg.device)
    if cfg.backend == "onnxruntime" and device.type != "cpu":
        raise ValueError("--backend onnxruntime: the benchmark compares both backends on the CPU; pass --device cpu")
    model, weights = build_bench_model(cfg, device)
    machine, load_start = machine_info(device), _load_average()
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
    machine["load_average"] = [load_start, _load_average()]
    machine["contention"] = contention_note(machine["load_average"], machine["cpu_count"] or 1)
    note = ""
    result = {
        "machine": machine, "weights": weights, "times_ms": times, "flops": flops, "ratios": ratios,
        "settings": {"frame_size": [cfg.bench_height, cfg.bench_width], "batch": 1, "dtype": "float32",
                     "repeats": cfg.bench_repeats, "warmup": warmup, "nonkey_per_round": NONKEY_PER_ROUND, "scales": scales, "segnet": cfg.segnet,
                     "flow": cfg.optical_flow_network, "intra": cfg.intra, "key_scale": cfg.key_scale,
                     "cudnn_benchmark": device.type == "cuda", "note": note,
                     "optimisations": optimisations_note(device, malloc_tuned)},
        "params": module_params(model),
        "throughput": throughput_table(t_key, t_non, {k: v["flops"] for k, v in flops["keyframe"].items()},
                                       flops["nonkeyframe"]["flops"]),
        "stream": stream, "paper": PAPER, "backends": backends,
    }
    out_dir = Path(cfg.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = "\n".join([render_markdown(result), *backend_rows(backends)])
    _write(out_dir / f"bench_{machine['tag']}.json", json.dumps(result, indent=2))
    _write(out_dir / f"bench_{machine['tag']}.md", markdown + "\n")
    print(markdown)
    print(f"benchmark: wrote {out_dir / ('bench_' + machine['tag'])}.{{md,json}}")
    return 0
