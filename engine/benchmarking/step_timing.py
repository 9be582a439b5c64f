"""Timing and counting what one frame costs: per-frame-type step medians over interleaved rounds,
FLOPs per frame type, and resident memory over a long stream. Used by ``--benchmark`` and the demo."""
from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from config.config import Config
from engine.benchmarking.throughput_report import measure_marked, memory_growth, parse_vmrss_mb, summarize_times
from engine.streaming.predictor import StepOutput, VideoPredictor
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
