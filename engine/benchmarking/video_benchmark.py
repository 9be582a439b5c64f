"""The ``--benchmark-video PATH`` job: the whole ``--inference`` job on one video, per keyframe interval, timed
inside the process; writes {results_dir}/bench_video_<device>.{md,json} and prints the markdown.

    python main.py --benchmark-video drive.mp4 --bench-key-intervals 1 3 4 --device cpu

Measured in one run, on one loaded model:
- start-up: process start → this mode (interpreter + imports), model load (build + weights + BatchNorm
  folding), kernel warm-up (numba kernels loaded from their cache or compiled, first tiny steps);
- step level (engine/benchmarking/step_timing.py): medians of ``step()`` + ``.labels`` per frame type on the video's
  first frames, hence frames/s and speedup over l=1 at the video's own size;
- per interval l: the job with the chosen outputs (``--save``, default colour + label PNGs + overlay
  video) and again with ``--save none``. Frame time = first frame read → last output file closed; the
  stage timers of engine/streaming/video_job.py split it (decode, networks, labels, colour/overlay, PNG/encode,
  the main thread's idle time). Outputs go to a temporary folder under --results-dir, removed after.
Weights: as ``--benchmark 1`` (engine/benchmarking/bench_model.py): seeded random ones when no
--segnet-weights / --resume file exists; the report says which.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import torch

from config.config import Config
from dataset.video import open_frames
from engine.benchmarking.bench_model import build_bench_model
from engine.benchmarking.machine import OtherLoad, load_average, machine_info, process_age_s
from engine.benchmarking.step_timing import NUM_TIMING_FRAMES, WARMUP, measure_frame_types
from engine.benchmarking.throughput_report import fps_for_interval, speedup
from engine.benchmarking.video_report import (IDLE_STAGES, MAIN_STAGES, contention, render_markdown, summary_rows,
                                              targets)
from engine.evaluation.save_results import parse_outputs
from engine.runs import preset_of
from engine.streaming.video_job import (MAX_PENDING, PREFETCH_DEPTH, WRITER_WORKERS, StageClock, make_predictor,
                                        run_to_folder, warm_up)
from utils.errors import UserError
from utils.logging import to_json, write_text


def _check_args(cfg: Config) -> tuple[Path, list[int]]:
    video = Path(cfg.benchmark_video)
    if not video.is_file():
        raise FileNotFoundError(f"--benchmark-video {video}: no such video file")
    intervals = [int(l) for l in cfg.bench_key_intervals]
    if not intervals or any(l < 1 for l in intervals):
        raise ValueError(f"--bench-key-intervals: expected integers >= 1, got {cfg.bench_key_intervals}")
    if cfg.bench_repeats < 1:
        raise ValueError(f"--bench-repeats must be >= 1, got {cfg.bench_repeats}")
    return video, sorted(set(intervals))


def _first_frames(video: Path, n: int) -> list:
    frames = []
    for _, frame in open_frames(video):
        frames.append(frame)
        if len(frames) == n:
            return frames
    raise UserError(f"--benchmark-video {video}: the step-level timing needs {n} frames, got {len(frames)}")


def _step_level(model, frames: list, cfg: Config, device: torch.device, intervals: list[int]) -> dict:
    """Step-level frames/s and speedup per interval from the per-frame-type medians (step + labels)."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    with OtherLoad() as other:
        times, _ = measure_frame_types(model, frames, [cfg.eval_scale], cfg, device, WARMUP.get(device.type, 1),
                                       sync)
    t_key = times["keyframe"][str(float(cfg.eval_scale))]["step_labels"]["median_ms"] / 1000
    t_non = times["nonkeyframe"]["step_labels"]["median_ms"] / 1000
    return {"keyframe_ms": 1000 * t_key, "nonkeyframe_ms": 1000 * t_non, "times_ms": times,
            "fps": {l: fps_for_interval(t_key, t_non, l) for l in intervals},
            "speedup": {l: speedup(t_key, t_non, l) for l in intervals}, "other_processes_cpu": other.fraction}


def _job(model, cfg: Config, device, video: Path, l: int, outputs: tuple, work: Path) -> dict:
    """One whole inference job at interval l into ``work``; its timing (the outputs are deleted)."""
    predictor = make_predictor(model, cfg, device, key_interval=l)
    warm_up(predictor)
    preset = preset_of(cfg)
    source = open_frames(video)
    items = ((name, frame, k == 0) for k, (name, frame) in enumerate(source))
    dest = work / f"l{l}_{'_'.join(outputs) or 'none'}"
    clock = StageClock()
    with OtherLoad() as other:
        result, _ = run_to_folder(items, predictor, dest, outputs, preset.palette, source.fps or 30.0, source.fps,
                                  what=str(video), clock=clock)
    shutil.rmtree(dest, ignore_errors=True)
    stages = result.stages
    main_busy = sum(stages.get(s, 0.0) for s in MAIN_STAGES)
    idle = sum(stages.get(s, 0.0) for s in IDLE_STAGES)
    return {"l": l, "outputs": list(outputs) or ["none"], "frames": result.frames,
            "num_keyframes": len(result.keyframes), "seconds": result.seconds, "fps": result.fps,
            "stages_s": stages, "main_idle_s": idle, "main_other_s": result.seconds - main_busy - idle,
            "other_processes_cpu": other.fraction}


def benchmark_video(cfg: Config, device: torch.device) -> int:
    """The ``--benchmark-video PATH`` job: start-up, step level and the whole job per interval, with and without
    outputs; writes {results_dir}/bench_video_<device>.{md,json} and prints the markdown. Returns 0."""
    imports_s = process_age_s()
    video, intervals = _check_args(cfg)
    outputs = parse_outputs(cfg.save, cfg.save_labelids)
    start = time.perf_counter()
    model, weights = build_bench_model(cfg, device)
    predictor = make_predictor(model, cfg, device, key_interval=max(intervals))
    loaded = time.perf_counter()
    warm_up(predictor)  # the first time in this process: numba kernels are loaded/compiled here
    startup = {"imports_s": imports_s, "model_load_s": loaded - start, "kernel_warm_up_s": time.perf_counter() - loaded}
    startup["total_s"] = None if imports_s is None else sum(startup.values())
    machine, load_start = machine_info(device), load_average()
    print(f"benchmark-video: {weights['note']}", flush=True)
    source = open_frames(video)
    step = _step_level(model, _first_frames(video, NUM_TIMING_FRAMES), cfg, device, intervals)
    out_dir = Path(cfg.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".bench_video_", dir=out_dir))
    jobs = []
    try:
        for l in intervals:
            for chosen in (outputs, ()):
                jobs.append(_job(model, cfg, device, video, l, chosen, work))
                print(f"benchmark-video: l={l} outputs={','.join(chosen) or 'none'}: "
                      f"{jobs[-1]['fps']:.2f} frames/s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    machine["load_average"] = [load_start, load_average()]
    machine["contention"] = contention(step, jobs)
    rows = summary_rows(jobs, step, intervals)
    result = {"machine": machine, "weights": weights,
              "video": {"path": str(video), "frames": jobs[0]["frames"], "size": list(source.size or (0, 0)),
                        "fps": source.fps},
              "settings": {"segnet": cfg.segnet.spec, "flow": cfg.optical_flow_network, "eval_scale": cfg.eval_scale,
                           "fusion": cfg.fusion, "outputs": list(outputs), "key_intervals": intervals,
                           "prefetch_depth": PREFETCH_DEPTH, "writer_workers": WRITER_WORKERS,
                           "max_pending": MAX_PENDING, "bench_repeats": cfg.bench_repeats},
              "startup": startup, "step_level": step, "jobs": jobs, "summary": rows,
              "targets": targets(rows, startup)}
    markdown = render_markdown(result)
    write_text(out_dir / f"bench_video_{machine['tag']}.json", to_json(result, indent=2) + "\n")
    write_text(out_dir / f"bench_video_{machine['tag']}.md", markdown + "\n")
    print(markdown)
    print(f"benchmark-video: wrote {out_dir / ('bench_video_' + machine['tag'])}.{{md,json}}")
    return 0
