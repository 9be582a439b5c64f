"""Pure parts of the benchmark (docs/evaluation.md#throughput): throughput arithmetic, timing bookkeeping, memory
growth, parsers of /proc files and the markdown report. Nothing here touches a model or a device.

Conventions: times in seconds unless a name says ``_ms``; FLOPs as counted by
``torch.utils.flop_counter`` (2 per multiply-add), so GMACs = GFLOPs / 2 — the paper's "FLOPs" are GMACs.
"""
from __future__ import annotations

import math
import re
import statistics
from typing import Callable, Sequence

MAX_INTERVAL = 5
# A stream is "flat" when memory grows by no more than this between frame 10% and the end: the
# allocator's own jitter is a few MB, while a leaked 1/8-logit or full-resolution tensor per frame
# would add hundreds of MB over a few hundred frames.
FLAT_TOLERANCE_MB = 16.0
FLAT_TOLERANCE_FRACTION = 0.05

# Paper / official README figures (docs/evaluation.md#reference-figures; GTX 1080Ti, 1024×2048 frames, scale 0.75).
PAPER = {
    "frame_size": [1024, 2048],
    "gmacs_keyframe": {"swiftnet": {"0.75": 58.5, "0.5": 26.0}, "bisenet": {"0.75": 58.0}},
    "gmacs_nonkeyframe": 2.8,
    "gmacs_avg_l3_swiftnet": 21.3,
    "params_mb": {"swiftnet": 47.2, "bisenet": 49.0, "gsvnet_swiftnet_total": 50.4},
    "fps": {"gsvnet_swiftnet_l3": 125, "gsvnet_bisenet_l3": 123, "swiftnet_r18": 63},
    "note": "Paper FLOPs are multiply-adds (GMACs); '# of Parameters' is MB of float32; FPS on a GTX 1080Ti.",
}


def _check_interval(l: int) -> None:
    if int(l) != l or l < 1:
        raise ValueError(f"keyframe interval l must be an integer >= 1, got {l!r}")


def fps_for_interval(t_key: float, t_nonkey: float, l: int) -> float:
    """Frames per second of one keyframe followed by l−1 non-keyframes: l / (t_key + (l−1)·t_nonkey)."""
    _check_interval(l)
    if t_key <= 0 or t_nonkey <= 0:
        raise ValueError(f"times must be positive, got t_key={t_key}, t_nonkey={t_nonkey}")
    return l / (t_key + (l - 1) * t_nonkey)


def speedup(t_key: float, t_nonkey: float, l: int) -> float:
    """FPS(l) / FPS(1): the gain of interval l over segmenting every frame with the keyframe net."""
    return fps_for_interval(t_key, t_nonkey, l) / fps_for_interval(t_key, t_nonkey, 1)


def flop_ratio_limit(f_key: float, f_nonkey: float, l: int) -> float:
    """The speedup FLOPs alone would give: l·F_key / (F_key + (l−1)·F_nonkey)."""
    _check_interval(l)
    if f_key <= 0 or f_nonkey < 0:
        raise ValueError(f"FLOPs must be positive, got f_key={f_key}, f_nonkey={f_nonkey}")
    return l * f_key / (f_key + (l - 1) * f_nonkey)


def avg_flops_per_frame(f_key: float, f_nonkey: float, l: int) -> float:
    """Mean FLOPs per frame over one interval (the paper's "Avg FLOPs": 21.3 G at l=3)."""
    _check_interval(l)
    return (f_key + (l - 1) * f_nonkey) / l


def params_mb(count: int) -> float:
    """Size of ``count`` float32 parameters in MB (10^6 bytes), the unit of the paper's table."""
    return count * 4 / 1e6


def measure_marked(fn: Callable[[Callable[[], None]], None], repeats: int, warmup: int,
                   sync: Callable[[], None], clock: Callable[[], float]) -> list[list[float]]:
    """Run ``fn(mark)`` warmup + repeats times; return, per timed repeat, the elapsed time at each mark().

    ``fn`` calls ``mark()`` after each phase (e.g. after step(), then after .labels), so one run yields
    the cumulative time of every phase. ``sync`` (torch.cuda.synchronize on GPU) runs before each clock
    read so queued kernels are counted.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    runs: list[list[float]] = []
    for i in range(warmup + repeats):
        marks: list[float] = []
        sync()
        start = clock()

        def mark() -> None:
            sync()
            marks.append(clock() - start)

        fn(mark)
        if i >= warmup:
            runs.append(marks)
    counts = {len(m) for m in runs}
    if len(counts) != 1 or 0 in counts:
        raise RuntimeError(f"measure_marked: fn must call mark() the same number (>= 1) of times, got {counts}")
    return runs


def summarize_times(seconds: Sequence[float]) -> dict:
    """{"median_ms", "min_ms", "max_ms", "n"} of a list of durations in seconds."""
    if not seconds:
        raise ValueError("summarize_times: no durations given")
    ms = [1000.0 * s for s in seconds]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "n": len(ms)}


def memory_growth(values_mb: Sequence[float], period: int = 1) -> dict:
    """First/last/max of a per-frame memory series and its growth from frame ~10% to the end.

    The reference frame is the first index >= 10% of the series in the same phase of the keyframe
    cycle (``period`` = key interval) as the last frame, so keyframe peaks are compared with keyframe
    peaks. "flat" = growth within max(FLAT_TOLERANCE_MB, FLAT_TOLERANCE_FRACTION × reference).
    """
    n = len(values_mb)
    if n == 0:
        raise ValueError("memory_growth: empty series")
    period = max(1, int(period))
    ref = math.ceil(0.1 * n)
    while ref < n - 1 and (n - 1 - ref) % period:
        ref += 1
    ref = min(ref, n - 1)
    growth = values_mb[-1] - values_mb[ref]
    tolerance = max(FLAT_TOLERANCE_MB, FLAT_TOLERANCE_FRACTION * values_mb[ref])
    return {"first_mb": values_mb[0], "last_mb": values_mb[-1], "max_mb": max(values_mb), "ref_frame": ref,
            "ref_mb": values_mb[ref], "growth_mb": growth, "flat": growth <= tolerance}


def parse_vmrss_mb(status_text: str) -> float | None:
    """Resident set size in MiB from the text of /proc/self/status (None when absent)."""
    m = re.search(r"^VmRSS:\s+(\d+)\s+kB", status_text, re.MULTILINE)
    return int(m.group(1)) / 1024.0 if m else None


def parse_cpu_model(cpuinfo_text: str) -> str | None:
    """The first "model name" of /proc/cpuinfo (None when absent, e.g. on some ARM kernels)."""
    m = re.search(r"^model name\s*:\s*(.+)$", cpuinfo_text, re.MULTILINE)
    return m.group(1).strip() if m else None


def contention_note(load_averages: Sequence[float | None], cpu_count: int) -> str:
    """A warning when the 1-minute load average exceeded the cores (plus slack for the benchmark's own
    rounding), i.e. other processes competed for the CPU and the times are inflated; "" otherwise."""
    loads = [v for v in load_averages if v is not None]
    if not loads or max(loads) <= cpu_count + 0.5:
        return ""
    return (f"1-minute load average reached {max(loads):.1f} on {cpu_count} cores: other processes competed "
            f"for the CPU, so these times are inflated; rerun on an idle machine")


def device_tag(device_type: str, cuda_name: str | None = None) -> str:
    """File-name tag: "cpu", or the CUDA device name lower-cased with runs of other characters as "_"."""
    if device_type != "cuda":
        return device_type
    tag = re.sub(r"[^a-z0-9]+", "_", (cuda_name or "cuda").lower()).strip("_")
    return tag or "cuda"


def throughput_table(t_key: dict[str, float], t_nonkey: float, f_key: dict[str, float], f_nonkey: float,
                     max_l: int = MAX_INTERVAL) -> dict[str, list[dict]]:
    """Per keyframe scale, rows l = 1..max_l of FPS, speedup over l=1, FLOP-ratio limit and avg GMACs.

    t_key / f_key: keyframe time (s, including .labels) / FLOPs by scale string; t_nonkey / f_nonkey
    the same for a non-keyframe.
    """
    table = {}
    for scale, tk in t_key.items():
        table[scale] = [{"l": l, "fps": fps_for_interval(tk, t_nonkey, l), "speedup": speedup(tk, t_nonkey, l),
                         "flop_ratio_limit": flop_ratio_limit(f_key[scale], f_nonkey, l),
                         "avg_gmacs": avg_flops_per_frame(f_key[scale], f_nonkey, l) / 2e9}
                        for l in range(1, max_l + 1)]
    return table


# --- markdown -------------------------------------------------------------------------------------
def fmt(x: float | None, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals, or a dash for a missing value (the tables of both benchmark reports)."""
    return "—" if x is None else f"{x:.{digits}f}"


def _header(result: dict) -> list[str]:
    m, s = result["machine"], result["settings"]
    h, w = s["frame_size"]
    lines = [f"# GSVNet benchmark — {m['device_name']}", "",
             f"- machine: {m['platform']}; CPU {m['cpu_model']} ({m['cpu_count']} cores); torch {m['torch']}, "
             f"{m['threads']} threads",
             f"- networks: {s['segnet']} + {s['flow']} flow + GSV; frame {h}×{w}, batch 1, {s['dtype']}, "
             f"torch.inference_mode; medians over {s['repeats']} interleaved rounds after {s['warmup']} warm-up "
             f"(each round: one keyframe per scale, then {s.get('nonkey_per_round', 1)} non-keyframes)",
             f"- weights: {result['weights']['note']}",
             "- times are VideoPredictor.step(); \"+ labels\" adds the full-resolution upsample + argmax "
             "(.labels); FLOPs from FlopCounterMode (2 per multiply-add; upsample/argmax/warp not counted)",
             f"- inference optimisations: {s.get('optimisations', 'none recorded')}"]
    loads = [fmt(v) for v in m.get("load_average", [])]
    if loads:
        lines.append(f"- 1-minute load average at start / end: {' / '.join(loads)}")
    for note in (s.get("note"), m.get("contention")):
        if note:
            lines.append(f"- **note**: {note}")
    return lines + [""]


def _time_rows(result: dict) -> list[str]:
    t, f = result["times_ms"], result["flops"]
    paper_key = PAPER["gmacs_keyframe"].get(result["settings"]["segnet"], {})
    rows = ["## Per-frame-type time and FLOPs", "",
            "| frame type | step ms | step + labels ms | FPS (+ labels) | GFLOPs | GMACs | paper GMACs (1024×2048) |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for scale, times in t["keyframe"].items():
        fl = f["keyframe"][scale]
        rows.append(f"| keyframe @{scale} | {fmt(times['step']['median_ms'], 1)} | "
                    f"{fmt(times['step_labels']['median_ms'], 1)} | "
                    f"{fmt(1000 / times['step_labels']['median_ms'])} | {fmt(fl['gflops'])} | "
                    f"{fmt(fl['gmacs'])} | {fmt(paper_key.get(scale), 1)} |")
    nk, fl = t["nonkeyframe"], f["nonkeyframe"]
    paper_non = PAPER["gmacs_nonkeyframe"] if result["settings"]["flow"] == "light" else None
    rows.append(f"| non-keyframe (flow + warp + GSV) | {fmt(nk['step']['median_ms'], 1)} | "
                f"{fmt(nk['step_labels']['median_ms'], 1)} | {fmt(1000 / nk['step_labels']['median_ms'])} | "
                f"{fmt(fl['gflops'])} | {fmt(fl['gmacs'])} | {fmt(paper_non, 1)} |")
    upsample_ms = fmt(t["upsample_argmax"]["median_ms"], 1)
    rows.append(f"| upsample + argmax alone | — | {upsample_ms} | — | — | — | — |")
    rows += ["", "| keyframe scale | t_nonkey / t_key (step) | t_nonkey / t_key (+ labels) |", "|---|---:|---:|"]
    rows += [f"| {scale} | {fmt(r['step'], 3)} | {fmt(r['step_labels'], 3)} |"
             for scale, r in result["ratios"].items()]
    return rows + [""]


def _throughput_rows(result: dict) -> list[str]:
    rows = ["## Throughput for keyframe interval l (from the step + labels medians)", "",
            "| keyframe scale | l | FPS | speedup vs l=1 | FLOP-ratio limit | avg GMACs / frame |",
            "|---|---:|---:|---:|---:|---:|"]
    for scale, table in result["throughput"].items():
        rows += [f"| {scale} | {r['l']} | {fmt(r['fps'])} | {fmt(r['speedup'])} | "
                 f"{fmt(r['flop_ratio_limit'])} | {fmt(r['avg_gmacs'])} |" for r in table]
    p = PAPER["fps"]
    rows += ["", f"Paper (GTX 1080Ti, 0.75): GSVNet-SN-R18 l=3 {p['gsvnet_swiftnet_l3']} FPS vs SwiftNet-R18 "
                 f"{p['swiftnet_r18']} FPS; avg {PAPER['gmacs_avg_l3_swiftnet']} GMACs / frame at l=3.", ""]
    return rows


def _param_rows(result: dict) -> list[str]:
    paper = PAPER["params_mb"]
    paper_by_module = {"segnet": paper.get(result["settings"]["segnet"]),
                       "total": paper["gsvnet_swiftnet_total"] if result["settings"]["segnet"] == "swiftnet" else None}
    rows = ["## Parameters", "", "| module | parameters | MB (float32) | paper MB |", "|---|---:|---:|---:|"]
    rows += [f"| {name} | {p['count']:,} | {fmt(p['mb'])} | {fmt(paper_by_module.get(name), 1)} |"
             for name, p in result["params"].items()]
    return rows + [""]


def _stream_rows(stream: dict | None) -> list[str]:
    if not stream:
        return []
    rows = [f"## Streaming memory ({stream['frames']} frames, l = {stream['key_interval']}, .labels every frame)",
            "", f"Measured stream throughput: {fmt(stream['fps'])} FPS (step + labels, after the first interval).",
            "", "| series | first MB | last MB | max MB | growth MB (since frame) | flat |",
            "|---|---:|---:|---:|---:|---|"]
    for name, g in stream["memory"].items():
        rows.append(f"| {name} | {fmt(g['first_mb'], 1)} | {fmt(g['last_mb'], 1)} | {fmt(g['max_mb'], 1)} | "
                    f"{fmt(g['growth_mb'], 1)} (frame {g['ref_frame']}) | {'yes' if g['flat'] else 'NO'} |")
    return rows + [""]


def render_markdown(result: dict) -> str:
    """The report of the ``--benchmark 1`` result dict (engine/benchmarking/frame_benchmark.py) as markdown."""
    lines = (_header(result) + _time_rows(result) + _throughput_rows(result) + _param_rows(result)
             + _stream_rows(result.get("stream")))
    return "\n".join(lines)
