"""``--benchmark-video PATH``: the whole ``--inference`` job on one video, per keyframe interval, timed
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
Weights: as ``--benchmark 1`` (modes/benchmark.build_bench_model): seeded random ones when no
--segnet-weights / --resume file exists; the report says which.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from config.config import Config
from dataset.video import open_frames
from engine.benchmarking.throughput_report import fps_for_interval, speedup
from engine.runs import preset_of
from engine.evaluation.save_results import parse_outputs
from engine.benchmarking.step_timing import NUM_TIMING_FRAMES, WARMUP, measure_frame_types
from engine.streaming.video_job import (MAX_PENDING, PREFETCH_DEPTH, WRITER_WORKERS, StageClock, make_predictor,
                              run_to_folder, warm_up)
from modes.benchmark import build_bench_model, machine_info
from modes.job import run_job
from utils.errors import UserError
from utils.logging import to_json

SPEEDUP_TARGET = 0.90    # job speedup over l=1 / step-level speedup, default outputs
NO_SAVE_TARGET = 0.90    # --save none frames/s / step-level frames/s
STARTUP_TARGET_S = 3.0
OTHER_LOAD_LIMIT = 0.05  # share of the machine's CPU used by other processes above which a note warns
MAIN_STAGES = ("keyframe_net", "propagation", "labels")
IDLE_STAGES = ("wait_decode", "wait_writers", "drain")
WORKER_STAGES = ("decode", "colour", "overlay", "png", "encode")


def process_age_s() -> float | None:
    """Seconds since this process started (Linux /proc; None elsewhere). Field 22 of /proc/self/stat is
    the start time in clock ticks after boot; the command name before it may hold spaces, so split after ')'."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _cpu_seconds_busy() -> float | None:
    """CPU seconds all processes of the machine spent busy since boot (/proc/stat; None elsewhere)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


class OtherLoad:
    """Share of the machine's CPU time used by other processes while the block ran (0 = alone; 0.5 on 2
    cores = one core busy elsewhere): what the load average cannot tell apart from this process."""

    def __enter__(self) -> "OtherLoad":
        self.fraction = None
        self._busy, self._own, self._wall = _cpu_seconds_busy(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        busy = _cpu_seconds_busy()
        if busy is not None and self._busy is not None:
            others = busy - self._busy - (time.process_time() - self._own)
            self.fraction = max(0.0, others / ((os.cpu_count() or 1) * (time.perf_counter() - self._wall)))


def _contention(step: dict, jobs: list[dict]) -> str:
    """A note when other processes took more than OTHER_LOAD_LIMIT of the CPU during a timed part. (The load
    average cannot say: this process alone keeps it near 3 on 2 cores: two OpenMP threads, decoder, writer.)"""
    shares = [step["other_processes_cpu"]] + [j["other_processes_cpu"] for j in jobs]
    shares = [x for x in shares if x is not None]
    if not shares or max(shares) <= OTHER_LOAD_LIMIT:
        return ""
    return (f"other processes used up to {100 * max(shares):.0f} % of the CPU during a timed part: those figures "
            f"are inflated and the ratios unreliable; rerun on an idle machine")


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


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


def _summary_rows(jobs: list[dict], step: dict, intervals: list[int]) -> list[dict]:
    full = {j["l"]: j for j in jobs if j["outputs"] != ["none"]}
    bare = {j["l"]: j for j in jobs if j["outputs"] == ["none"]}
    base = full[1]["seconds"] / full[1]["frames"] if 1 in full else None  # seconds per frame at l=1
    rows = []
    for l in intervals:
        job_speedup = base / (full[l]["seconds"] / full[l]["frames"]) if base else None
        step_speedup = step["speedup"][l]
        rows.append({"l": l, "fps": full[l]["fps"], "speedup": job_speedup, "step_speedup": step_speedup,
                     "speedup_ratio": job_speedup / step_speedup if job_speedup else None,
                     "none_fps": bare[l]["fps"], "step_fps": step["fps"][l],
                     "none_ratio": bare[l]["fps"] / step["fps"][l]})
    return rows


def _targets(rows: list[dict], startup: dict) -> list[str]:
    lines = []
    for r in rows:
        if r["l"] > 1 and r["speedup_ratio"] is not None:
            ok = r["speedup_ratio"] >= SPEEDUP_TARGET
            lines.append(f"l={r['l']}: job speedup {r['speedup']:.2f}× = {100 * r['speedup_ratio']:.1f} % of the "
                         f"step-level {r['step_speedup']:.2f}× (target ≥ {100 * SPEEDUP_TARGET:.0f} %): "
                         f"{'met' if ok else 'MISSED'}")
        ok = r["none_ratio"] >= NO_SAVE_TARGET
        lines.append(f"l={r['l']}: --save none {r['none_fps']:.2f} frames/s = {100 * r['none_ratio']:.1f} % of the "
                     f"step-level {r['step_fps']:.2f} (target within {100 * (1 - NO_SAVE_TARGET):.0f} %): "
                     f"{'met' if ok else 'MISSED'}")
    total = startup.get("total_s")
    if total is not None:
        lines.append(f"start-up + model load {total:.2f} s (target ≤ {STARTUP_TARGET_S:.0f} s with a warm disk "
                     f"cache): {'met' if total <= STARTUP_TARGET_S else 'MISSED'}")
    return lines


def _fmt(x, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{100 * fraction:.0f} %"


def render_markdown(result: dict) -> str:
    m, v, s, st = result["machine"], result["video"], result["settings"], result["startup"]
    lines = [f"# GSVNet video job benchmark — {m['device_name']}", "",
             f"- machine: CPU {m['cpu_model']} ({m['cpu_count']} cores), torch {m['torch']}, {m['threads']} threads; "
             f"1-minute load average at start / end: {_fmt(m['load_average'][0])} / {_fmt(m['load_average'][1])}",
             f"- video: {v['path']} ({v['frames']} frames, {v['size'][1]}×{v['size'][0]}, {_fmt(v['fps'])} fps)",
             f"- networks: {s['segnet']} @{s['eval_scale']} + {s['flow']} flow, fusion {s['fusion']}; "
             f"outputs {', '.join(s['outputs']) or 'none'}; prefetch {s['prefetch_depth']}, "
             f"{s['writer_workers']} writer threads, {s['max_pending']} queued jobs",
             f"- weights: {result['weights']['note']}",
             f"- start-up: imports {_fmt(st['imports_s'])} s + model load {_fmt(st['model_load_s'])} s + kernel "
             f"warm-up {_fmt(st['kernel_warm_up_s'])} s = {_fmt(st['total_s'])} s"]
    if m.get("contention"):
        lines.append(f"- **note**: {m['contention']}")
    step = result["step_level"]
    lines += ["", f"Step level (same run, step + labels medians): keyframe {step['keyframe_ms']:.1f} ms, "
                  f"non-keyframe {step['nonkeyframe_ms']:.1f} ms (other processes' CPU meanwhile: "
                  f"{_percent(step['other_processes_cpu'])}).", "",
              "| l | job frames/s | job speedup | step speedup | job / step | --save none frames/s | "
              "step frames/s | none / step |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["summary"]:
        lines.append(f"| {r['l']} | {_fmt(r['fps'])} | {_fmt(r['speedup'])} | {_fmt(r['step_speedup'])} | "
                     f"{_fmt(None if r['speedup_ratio'] is None else 100 * r['speedup_ratio'], 1)} % | "
                     f"{_fmt(r['none_fps'])} | {_fmt(r['step_fps'])} | {_fmt(100 * r['none_ratio'], 1)} % |")
    stages = MAIN_STAGES + WORKER_STAGES + IDLE_STAGES
    lines += ["", "Per-stage time, ms per frame (each stage's own timer; worker stages run beside the main thread):",
              "", "| l | outputs | frame time s | " + " | ".join(stages) + " | main other | other processes' CPU |",
              "|---:|---|---:|" + "---:|" * (len(stages) + 2)]
    for j in result["jobs"]:
        per = [1000 * j["stages_s"].get(name, 0.0) / j["frames"] for name in stages]
        lines.append(f"| {j['l']} | {','.join(j['outputs'])} | {j['seconds']:.2f} | "
                     + " | ".join(f"{x:.1f}" for x in per) + f" | {1000 * j['main_other_s'] / j['frames']:.1f} | "
                     f"{_percent(j['other_processes_cpu'])} |")
    lines += ["", "Targets:", ""] + [f"- {t}" for t in result["targets"]]
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _benchmark(cfg: Config, device: torch.device) -> int:
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
    machine, load_start = machine_info(device), _load_average()
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
    machine["load_average"] = [load_start, _load_average()]
    machine["contention"] = _contention(step, jobs)
    rows = _summary_rows(jobs, step, intervals)
    result = {"machine": machine, "weights": weights,
              "video": {"path": str(video), "frames": jobs[0]["frames"], "size": list(source.size or (0, 0)),
                        "fps": source.fps},
              "settings": {"segnet": cfg.segnet, "flow": cfg.optical_flow_network, "eval_scale": cfg.eval_scale,
                           "fusion": cfg.fusion, "outputs": list(outputs), "key_intervals": intervals,
                           "prefetch_depth": PREFETCH_DEPTH, "writer_workers": WRITER_WORKERS,
                           "max_pending": MAX_PENDING, "bench_repeats": cfg.bench_repeats},
              "startup": startup, "step_level": step, "jobs": jobs, "summary": rows,
              "targets": _targets(rows, startup)}
    markdown = render_markdown(result)
    _write(out_dir / f"bench_video_{machine['tag']}.json", to_json(result, indent=2) + "\n")
    _write(out_dir / f"bench_video_{machine['tag']}.md", markdown + "\n")
    print(markdown)
    print(f"benchmark-video: wrote {out_dir / ('bench_video_' + machine['tag'])}.{{md,json}}")
    return 0


def run_video_benchmark(cfg: Config) -> int:
    """``--benchmark-video PATH``. Returns the exit code: 0, or 1 with a one-line error (missing video, bad
    --bench-key-intervals or --save, a weights file that does not fit)."""
    return run_job(cfg, _benchmark, distributed=False)
