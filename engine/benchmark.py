"""`--benchmark 1`: time and count FLOPs per frame type through ``VideoPredictor.step()`` (DESIGN.md §10).

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
import itertools
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from config.config import Config
from engine.bench_report import (PAPER, contention_note, device_tag, measure_marked, memory_growth, params_mb,
                                 parse_cpu_model, parse_vmrss_mb, render_markdown, summarize_times,
                                 throughput_table)
from engine.common import (build_model, keep_freed_memory, preset_of, resolve_device, resolve_resume,
                           seed_everything, segnet_weights_path)
from engine.inference import StepOutput, VideoPredictor
from models import cpu_kernels
from models.gsvnet import GSVNet

# Warm-up steps before each timed series (after the untimed FLOP-counting step). On CPU the first
# two or three steps at a new size are several times slower (oneDNN primitive creation, page faults
# of fresh buffers); on CUDA a few more let cuDNN autotuning (cudnn.benchmark) pick its kernels.
WARMUP = {"cpu": 2, "cuda": 5}
NEVER = 2 ** 62  # key_interval of the non-keyframe predictor: only its first step is a keyframe
NUM_TIMING_FRAMES = 4
NONKEY_PER_ROUND = 3  # non-keyframe steps per timing round (they are cheap; more samples for their median)


# --- inputs ---------------------------------------------------------------------------------------
def synthetic_texture(height: int, width: int) -> np.ndarray:
    """A smooth RGB pattern with a few sharp edges, periodic in both axes (H×W×3 uint8)."""
    y = np.arange(height, dtype=np.float32)[:, None] * (2 * np.pi / height)
    x = np.arange(width, dtype=np.float32)[None, :] * (2 * np.pi / width)
    channels = [128 + 55 * np.sin(3 * x + 2 * y + c) + 45 * np.cos(7 * x - 5 * y + 2 * c)
                + 25 * np.sign(np.sin(11 * x + 3 * c) * np.sin(6 * y)) for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


def moving_frame(texture: np.ndarray, index: int) -> np.ndarray:
    """Frame ``index`` of a smooth camera pan over the periodic texture.

    Motion scales with the frame (the texture's features do too): at 1024×2048, 4 px/frame to the
    right and a vertical bob of ±6 px with a period of 50 frames.
    """
    height, width = texture.shape[:2]
    dy = round(height / 170 * math.sin(2 * math.pi * index / 50))
    return np.roll(texture, shift=(dy, index * max(1, width // 512)), axis=(0, 1))


# --- model ----------------------------------------------------------------------------------------
def build_bench_model(cfg: Config, device: torch.device) -> tuple[GSVNet, dict]:
    """The Config's GSVNet with whatever weights exist; random init otherwise (timing does not care).

    An explicit --segnet-weights or --resume file that is missing is still an error.
    """
    preset = preset_of(cfg)
    resume = resolve_resume(cfg)
    seed_everything(cfg.seed)  # the same random weights every run: .labels time depends on the predictions
    try:
        model, _ = build_model(cfg, preset, device, load_segnet=True, resume=resume)
        default = segnet_weights_path(cfg)
        segnet_src = str(default) if default.is_file() else f"{resume} (segnet entry)"
    except FileNotFoundError:
        if cfg.segnet_weights:
            raise
        model, _ = build_model(cfg, preset, device, load_segnet=False, resume=resume)
        segnet_src = "random init (no weights file)"
    propagation_src = str(resume) if resume is not None else "random init (no --resume file)"
    note = (f"keyframe net: {segnet_src}; flow + GSV: {propagation_src}. "
            f"FLOPs and the network times do not depend on the weight values; the .labels time does "
            f"(only cells on class boundaries are interpolated), so it varies with weights and content.")
    return model.eval(), {"segnet": segnet_src, "propagation": propagation_src, "note": note}


def module_params(model: GSVNet) -> dict[str, dict]:
    """Parameter count and float32 MB of the keyframe net, flow net, GSV and their sum."""
    counts = {name: sum(p.numel() for p in getattr(model, attr).parameters())
              for name, attr in (("segnet", "segnet"), ("flow", "flow_net"), ("gsv", "gsv"))}
    counts["total"] = sum(counts.values())
    return {name: {"count": c, "mb": params_mb(c)} for name, c in counts.items()}


# --- measurements ---------------------------------------------------------------------------------
def count_flops(fn) -> tuple[int, dict[str, int]]:
    """FLOPs of ``fn()`` (FlopCounterMode: 2 per multiply-add) and per top-level module class."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    per_module = {name: int(sum(ops.values())) for name, ops in counter.get_flop_counts().items()
                  if name != "Global" and "." not in name}
    return int(counter.get_total_flops()), per_module


def _flops_entry(flops: int, per_module: dict[str, int]) -> dict:
    return {"flops": flops, "gflops": flops / 1e9, "gmacs": flops / 2e9,
            "per_module_gmacs": {k: v / 2e9 for k, v in per_module.items()}}


def _checked_step(predictor: VideoPredictor, frame: np.ndarray, expect_key: bool) -> StepOutput:
    out = predictor.step(frame)
    if out.is_keyframe != expect_key:
        raise RuntimeError(f"benchmark: expected a {'key' if expect_key else 'non-key'}frame step, got the other")
    return out


def time_interleaved(series: dict[str, tuple], repeats: int, warmup: int, sync) -> dict[str, dict]:
    """Medians of step() and of step() + .labels for several frame types, timed in interleaved rounds.

    series: name -> (predictor, frames, expect_key, steps_per_round). Each round runs every series in
    turn, so a slow phase of a shared host hits all frame types alike instead of whichever was being
    timed (on the project's VM the same step varies by ±15 % over a minute), and non-keyframes run
    right after keyframes, as they do in a stream.
    """
    sources = {name: itertools.cycle(frames) for name, (_, frames, _, _) in series.items()}

    def run(mark) -> None:
        for name, (predictor, _, expect_key, per_round) in series.items():
            for _ in range(per_round):
                out = _checked_step(predictor, next(sources[name]), expect_key)
                mark()
                _ = out.labels
                mark()

    runs = measure_marked(run, repeats, warmup, sync, time.perf_counter)
    phases = np.diff(np.asarray(runs), axis=1, prepend=0.0)     # repeats × marks: cumulative -> per phase
    result, column = {}, 0
    for name, (_, _, _, per_round) in series.items():
        steps = phases[:, column:column + 2 * per_round:2].ravel()
        labels = phases[:, column + 1:column + 2 * per_round:2].ravel()
        result[name] = {"step": summarize_times(steps.tolist()), "step_labels": summarize_times((steps + labels).tolist())}
        column += 2 * per_round
    return result


def time_steps(predictor: VideoPredictor, frames: list[np.ndarray], expect_key: bool, repeats: int,
               warmup: int, sync) -> dict:
    """Medians of step() and of step() + .labels of one predictor over the cycled ``frames``."""
    return time_interleaved({"steps": (predictor, frames, expect_key, 1)}, repeats, warmup, sync)["steps"]


def time_upsample(logits: torch.Tensor, size: tuple[int, int], repeats: int, warmup: int, sync) -> dict:
    """The .labels access alone (full-resolution upsample + argmax + copy to host) on fixed logits."""
    def run(mark) -> None:
        _ = StepOutput(logits=logits, is_keyframe=True, frame_size=size).labels
        mark()

    return summarize_times([r[0] for r in measure_marked(run, repeats, warmup, sync, time.perf_counter)])


def measure_frame_types(model: GSVNet, frames: list[np.ndarray], scales: list[float], cfg: Config,
                        device: torch.device, warmup: int, sync) -> tuple[dict, dict]:
    """(times_ms, flops) per frame type: keyframe at each scale, non-keyframe, upsample+argmax."""
    flops: dict = {"keyframe": {}}
    series: dict[str, tuple] = {}
    for scale in scales:
        key = str(float(scale))
        predictor = VideoPredictor(model, key_interval=1, key_scale=scale, device=device)
        flops["keyframe"][key] = _flops_entry(*count_flops(lambda: _checked_step(predictor, frames[0], True)))
        print(f"benchmark: keyframe @{key}: {flops['keyframe'][key]['gmacs']:.2f} GMACs", flush=True)
        series[key] = (predictor, frames, True, 1)
    predictor = VideoPredictor(model, key_interval=NEVER, key_scale=cfg.key_scale, device=device)
    logits = _checked_step(predictor, frames[0], True).logits
    flops["nonkeyframe"] = _flops_entry(*count_flops(lambda: _checked_step(predictor, frames[1], False)))
    print(f"benchmark: non-keyframe: {flops['nonkeyframe']['gmacs']:.2f} GMACs; timing all frame types in "
          f"{cfg.bench_repeats} interleaved rounds ...", flush=True)
    series["nonkeyframe"] = (predictor, frames[2:] + frames[:2], False, NONKEY_PER_ROUND)
    timed = time_interleaved(series, cfg.bench_repeats, warmup, sync)
    times: dict = {"keyframe": {key: timed[key] for key in flops["keyframe"]}, "nonkeyframe": timed["nonkeyframe"]}
    times["upsample_argmax"] = time_upsample(logits, frames[0].shape[:2], cfg.bench_repeats, warmup, sync)
    return times, flops


def read_rss_mb() -> float | None:
    try:
        return parse_vmrss_mb(Path("/proc/self/status").read_text())
    except OSError:
        return None


def stream_memory(model: GSVNet, texture: np.ndarray, cfg: Config, device: torch.device, sync) -> dict:
    """Stream --bench-stream-frames frames through one predictor (.labels every frame); memory per frame."""
    n, interval = cfg.bench_stream_frames, cfg.key_interval
    predictor = VideoPredictor(model, key_interval=interval, key_scale=cfg.key_scale, device=device)
    on_cuda = device.type == "cuda"
    rss, cuda_peak, seconds = [], [], []
    for i in tqdm(range(n), desc="benchmark stream", unit="frame"):
        frame = moving_frame(texture, i)
        if on_cuda:
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        _ = predictor.step(frame).labels
        sync()
        seconds.append(time.perf_counter() - start)
        rss.append(read_rss_mb())
        if on_cuda:
            cuda_peak.append(torch.cuda.max_memory_allocated(device) / 2 ** 20)
    series = {}
    if all(v is not None for v in rss):
        series["rss"] = rss
    if on_cuda:
        series["cuda_max_allocated"] = cuda_peak
    steady = seconds[interval:] if n > interval else seconds  # the first interval pays the warm-up
    return {"frames": n, "key_interval": interval, "fps": len(steady) / sum(steady),
            "memory": {name: memory_growth(s, interval) for name, s in series.items()}, "series_mb": series}


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
    t_key = {k: v["step_labels"]["median_ms"] / 1000 for k, v in times["keyframe"].items()}
    t_non = times["nonkeyframe"]["step_labels"]["median_ms"] / 1000
    ratios = {k: {"step": times["nonkeyframe"]["step"]["median_ms"] / v["step"]["median_ms"],
                  "step_labels": times["nonkeyframe"]["step_labels"]["median_ms"] / v["step_labels"]["median_ms"]}
              for k, v in times["keyframe"].items()}
    machine["load_average"] = [load_start, _load_average()]
    machine["contention"] = contention_note(machine["load_average"], machine["cpu_count"] or 1)
    note = "--compile is not applied: the benchmark times the eager VideoPredictor." if cfg.compile else ""
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
        "stream": stream, "paper": PAPER,
    }
    out_dir = Path(cfg.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(result)
    _write(out_dir / f"bench_{machine['tag']}.json", json.dumps(result, indent=2))
    _write(out_dir / f"bench_{machine['tag']}.md", markdown + "\n")
    print(markdown)
    print(f"benchmark: wrote {out_dir / ('bench_' + machine['tag'])}.{{md,json}}")
    return 0
