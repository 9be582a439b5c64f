"""The ``--benchmark-video`` report: per-interval summary rows (job vs step-level speedup, ``--save none`` vs
step-level frames/s), the targets met or missed, a note when other processes took CPU time, and the markdown."""
from __future__ import annotations

from engine.benchmarking.throughput_report import fmt

SPEEDUP_TARGET = 0.90    # job speedup over l=1 / step-level speedup, default outputs
NO_SAVE_TARGET = 0.90    # --save none frames/s / step-level frames/s
STARTUP_TARGET_S = 3.0
OTHER_LOAD_LIMIT = 0.05  # share of the machine's CPU used by other processes above which a note warns
MAIN_STAGES = ("keyframe_net", "propagation", "labels")
IDLE_STAGES = ("wait_decode", "wait_writers", "drain")
WORKER_STAGES = ("decode", "colour", "overlay", "png", "encode")


def contention(step: dict, jobs: list[dict]) -> str:
    """A note when other processes took more than OTHER_LOAD_LIMIT of the CPU during a timed part. (The load
    average cannot say: this process alone keeps it near 3 on 2 cores: two OpenMP threads, decoder, writer.)"""
    shares = [step["other_processes_cpu"]] + [j["other_processes_cpu"] for j in jobs]
    shares = [x for x in shares if x is not None]
    if not shares or max(shares) <= OTHER_LOAD_LIMIT:
        return ""
    return (f"other processes used up to {100 * max(shares):.0f} % of the CPU during a timed part: those figures "
            f"are inflated and the ratios unreliable; rerun on an idle machine")


def summary_rows(jobs: list[dict], step: dict, intervals: list[int]) -> list[dict]:
    """Per interval: the job's frames/s and speedup over l=1 against the step level's, with and without outputs."""
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


def targets(rows: list[dict], startup: dict) -> list[str]:
    """One line per target (job/step speedup, --save none/step frames/s, start-up): met or MISSED."""
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



def _percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{100 * fraction:.0f} %"


def render_markdown(result: dict) -> str:
    m, v, s, st = result["machine"], result["video"], result["settings"], result["startup"]
    lines = [f"# GSVNet video job benchmark — {m['device_name']}", "",
             f"- machine: CPU {m['cpu_model']} ({m['cpu_count']} cores), torch {m['torch']}, {m['threads']} threads; "
             f"1-minute load average at start / end: {fmt(m['load_average'][0])} / {fmt(m['load_average'][1])}",
             f"- video: {v['path']} ({v['frames']} frames, {v['size'][1]}×{v['size'][0]}, {fmt(v['fps'])} fps)",
             f"- networks: {s['segnet']} @{s['eval_scale']} + {s['flow']} flow, fusion {s['fusion']}; "
             f"outputs {', '.join(s['outputs']) or 'none'}; prefetch {s['prefetch_depth']}, "
             f"{s['writer_workers']} writer threads, {s['max_pending']} queued jobs",
             f"- weights: {result['weights']['note']}",
             f"- start-up: imports {fmt(st['imports_s'])} s + model load {fmt(st['model_load_s'])} s + kernel "
             f"warm-up {fmt(st['kernel_warm_up_s'])} s = {fmt(st['total_s'])} s"]
    if m.get("contention"):
        lines.append(f"- **note**: {m['contention']}")
    step = result["step_level"]
    lines += ["", f"Step level (same run, step + labels medians): keyframe {step['keyframe_ms']:.1f} ms, "
                  f"non-keyframe {step['nonkeyframe_ms']:.1f} ms (other processes' CPU meanwhile: "
                  f"{_percent(step['other_processes_cpu'])}).", "",
              "| l | job frames/s | job speedup | step speedup | job / step | --save none frames/s | "
              "step frames/s | none / step |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["summary"]:
        lines.append(f"| {r['l']} | {fmt(r['fps'])} | {fmt(r['speedup'])} | {fmt(r['step_speedup'])} | "
                     f"{fmt(None if r['speedup_ratio'] is None else 100 * r['speedup_ratio'], 1)} % | "
                     f"{fmt(r['none_fps'])} | {fmt(r['step_fps'])} | {fmt(100 * r['none_ratio'], 1)} % |")
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

