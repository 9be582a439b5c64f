"""The demo's outputs: throughput at the demo size, an overlay video, results/demo.md, a plot and a strip."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch

from dataset.cityscapes import CityscapesSequence
from dataset.synthetic import extras_paths
from dataset.video import read_rgb
from engine.benchmarking.step_timing import time_steps
from engine.streaming.predictor import VideoPredictor
from main import main as cli
from tools.demo_budget import cpu_description
from utils.visualize import colorize, grid, save_figure, save_png

PALETTE_PRESET = "synthetic"
DISTANCES = ("0", "1", "2", "3", "4")


def _val_snippet(data: str, index: int = 0) -> tuple[list[Path], str]:
    """Frame paths (all 30) of validation snippet ``index`` and its GT name."""
    ds = CityscapesSequence(data, "val", 0)
    name = ds.names[index]
    return [Path(p) for p in ds.snippet_frames(name)], name


def _nonkey_seconds(predictor: VideoPredictor, frames: list[np.ndarray], repeats: int = 7) -> float:
    """Median non-keyframe step + .labels, timed as engine.benchmarking.step_timing times it (after one keyframe)."""
    predictor.reset()
    predictor.step(frames[0])
    times = time_steps(predictor, frames[1:], False, repeats, warmup=1, sync=lambda: None)
    return times["step_labels"]["median_ms"] / 1e3


def benchmark_demo(data: str, segnet: str, ckpt: str, out: str) -> dict:
    """`--benchmark 1` at the demo frame size (256×512), plus the non-keyframe step + labels of GSVNet
    and both baselines, timed the same way on the frames of a validation snippet (for the plot)."""
    bench_dir = Path(out) / "demo_bench"
    argv = ["--benchmark", "1", "--dataset", "synthetic", "--segnet-weights", segnet, "--resume", ckpt,
            "--bench-height", "256", "--bench-width", "512", "--bench-repeats", "10",
            "--bench-scales", "0.5", "0.75", "--results-dir", str(bench_dir)]
    print(f"\n=== demo: benchmark at the demo size\n$ python main.py {' '.join(argv)}", flush=True)
    if cli(argv):
        raise SystemExit("demo: benchmark failed")
    result = json.loads(next(bench_dir.glob("bench_*.json")).read_text())
    frames = [read_rgb(p) for p in _val_snippet(data)[0][:12]]
    result["demo_nonkey_s"] = {}
    for fusion in ("gsv", "warp", "copy"):
        p = VideoPredictor.from_checkpoints(segnet_weights=segnet, checkpoint=ckpt, key_interval=10 ** 6,
                                            fusion=fusion)
        result["demo_nonkey_s"][fusion] = _nonkey_seconds(p, frames)
    return result


def dump_video(data: str, logs: str, segnet: str, ckpt: str, out: str) -> Path:
    """--inference on one validation snippet (a folder of its 30 frames) -> results/demo_overlay.mp4."""
    paths, name = _val_snippet(data)
    folder = Path(out) / "demo_snippet_frames"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for p in paths:
        shutil.copy(p, folder / p.name)
    dest = Path(out) / "demo_inference"
    shutil.rmtree(dest, ignore_errors=True)
    argv = ["--inference", "1", "--dataset", "synthetic", "--input", str(folder), "--output", str(dest),
            "--segnet-weights", segnet, "--resume", ckpt, "--key-interval", "3", "--log-folder", logs]
    print(f"\n=== demo: inference on validation snippet {name}\n$ python main.py {' '.join(argv)}", flush=True)
    if cli(argv):
        raise SystemExit("demo: inference failed")
    video = Path(out) / "demo_overlay.mp4"
    shutil.copy(dest / "overlay.mp4", video)
    return video


def write_strip(data: str, segnet: str, ckpt: str, path: Path, palette) -> Path:
    """Keyframe GT−3 and the propagated frames GT−2 .. GT: images, predictions, ground truth."""
    paths, name = _val_snippet(data, index=1)
    gt_index = next(i for i, p in enumerate(paths) if p.name.startswith(name))
    clip = paths[gt_index - 3: gt_index + 1]
    p = VideoPredictor.from_checkpoints(segnet_weights=segnet, checkpoint=ckpt, key_interval=4)
    images, captions = [], []
    rows = ([], [], [])
    for i, frame_path in enumerate(clip):
        frame = read_rgb(frame_path)
        out = p.step(frame)
        stem = frame_path.name.replace("_leftImg8bit.png", "")
        truth = cv2.imread(str(extras_paths(data, "val", stem)["train_ids"]), cv2.IMREAD_UNCHANGED)
        tag = "keyframe" if out.is_keyframe else f"key+{i}"
        rows[0].append((frame, f"{tag}: frame"))
        rows[1].append((colorize(out.labels, palette), f"{tag}: prediction"))
        rows[2].append((colorize(truth, palette), f"{tag}: ground truth"))
    for row in rows:
        images += [im for im, _ in row]
        captions += [c for _, c in row]
    save_png(path, grid(images, ncols=4, captions=captions))
    return path


def write_plot(results: dict, bench: dict, path: Path) -> Path:
    """Avg mIoU vs frames/s for l = 1..5 (like the paper's Fig. 3), at the demo frame size on this CPU."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t_key = {s: bench["times_ms"]["keyframe"][s]["step_labels"]["median_ms"] / 1e3 for s in ("0.5", "0.75")}
    t_non = bench["demo_nonkey_s"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for row, t_n, style in (("GSVNet", t_non["gsv"], "o-"), ("warp-only", t_non["warp"], "s--"),
                            ("copy", t_non["copy"], "^:")):
        xs = [l / (t_key["0.75"] + (l - 1) * t_n) for l in range(1, 6)]
        ys = [results[row]["intervals"][str(l)]["avg_miou"] for l in range(1, 6)]
        ax.plot(xs, ys, style, label=f"{row} (l = 1..5)")
        for l, x, y in zip(range(1, 6), xs, ys):
            ax.annotate(f"l={l}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for scale in ("0.75", "0.5"):
        row = f"SwiftNet-R18 @{scale}"
        ax.plot([1 / t_key[scale]], [results[row]["per_distance"]["0"]["miou"]], "*", markersize=12, label=row)
    ax.set_xlabel(f"frames / s ({cpu_description()}, {torch.get_num_threads()} threads, "
                  "256×512)")
    ax.set_ylabel("avg mIoU (%)")
    ax.set_title("Synthetic val: accuracy vs throughput (cf. paper Fig. 3)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _cell(x) -> str:
    return "—" if x is None else f"{x:.1f}"


def tc_cells(metrics: dict) -> list[str]:
    """TC pooled / on refresh pairs / on propagated pairs and mVC8 (%), "—" where not computed."""
    tc = metrics.get("temporal_consistency") or {}
    parts = [tc.get("miou"), (tc.get("refresh") or {}).get("miou"), (tc.get("propagated") or {}).get("miou")]
    return [_cell(x) for x in parts] + [_cell(metrics.get("mvc8"))]


def tables_markdown(results: dict) -> list[str]:
    lines = ["| method | " + " | ".join(f"k={k}" for k in DISTANCES) + " | "
             + " | ".join(f"l={l} avg / min" for l in range(1, 6)) + " | TC | TC refresh | TC propagated | mVC8 |",
             "|---" * (1 + len(DISTANCES) + 5 + 4) + "|"]
    for row, m in results.items():
        per = [_cell(m["per_distance"].get(k, {}).get("miou")) for k in DISTANCES]
        ints = [f"{_cell(m['intervals'][str(l)]['avg_miou'])} / {_cell(m['intervals'][str(l)]['min_miou'])}"
                if str(l) in m["intervals"] else "—" for l in range(1, 6)]
        lines.append(f"| {row} | " + " | ".join(per + ints + tc_cells(m)) + " |")
    return lines


def tc_note(results: dict) -> str:
    """What the TC columns measure, with the clips, schedule and flow the evaluations recorded."""
    row = next((m for m in results.values() if m.get("temporal_consistency") and m.get("key_interval", 1) > 1), None)
    tc = row["temporal_consistency"] if row else None
    span = (f"all {tc['frames']} frames of the {tc['snippets']} val snippets, a keyframe every l = "
            f"{row['key_interval']} frames (frames 0, l, 2l, ... of each snippet), {tc['flow']} flow") if tc \
        else "not computed"
    return ("TC = temporal consistency (%, engine/evaluation/consistency.py): mIoU between each frame's labels and "
            "the previous frame's labels carried to it by optical flow, over pixels whose flow is reliable "
            f"({span}). 'refresh' pools the pairs that end on a keyframe (last propagated frame -> next keyframe, "
            "where a keyframe scheme's labels jump), 'propagated' the others; the SwiftNet rows run the keyframe "
            "net on every frame (l = 1), so all their pairs are refreshes. Higher is steadier, not more correct: "
            "copy freezes the keyframe's labels in the image between refreshes. mVC8 = video consistency over "
            "8-frame windows (the VSPW paper's VC_8 on the dense synthetic labels): the share of pixels whose "
            "ground truth stays the same that also keep one predicted label; it rewards constant predictions too.")


def criterion(results: dict) -> tuple[bool, list[str]]:
    """At k=4: GSVNet > warp-only > copy, and GSVNet recovers >= half of what copy loses vs k=0."""
    k4 = {r: results[r]["per_distance"]["4"]["miou"] for r in ("GSVNet", "warp-only", "copy")}
    k0 = results["GSVNet"]["per_distance"]["0"]["miou"]
    lost = k0 - k4["copy"]
    recovered = (k4["GSVNet"] - k4["copy"]) / lost if lost > 0 else float("nan")
    checks = [(k4["GSVNet"] > k4["warp-only"], f"k=4: GSVNet {k4['GSVNet']:.1f} > warp-only {k4['warp-only']:.1f}"),
              (k4["warp-only"] > k4["copy"], f"k=4: warp-only {k4['warp-only']:.1f} > copy {k4['copy']:.1f}"),
              (recovered >= 0.5, f"GSVNet recovers {100 * recovered:.0f}% of the {lost:.1f} points copy loses "
                                 f"from k=0 ({k0:.1f}) to k=4 (needed: >= 50%)")]
    return all(ok for ok, _ in checks), [("PASS " if ok else "FAIL ") + text for ok, text in checks]


def write_report(results: dict, bench: dict, video: Path, args, segnet: str, ckpt: str, seconds: dict,
                 budget: list[str]) -> bool:
    from config.presets import get_preset
    out = Path(args.out)
    palette = get_preset(PALETTE_PRESET).palette
    plot = write_plot(results, bench, out / "demo_tradeoff.png")
    strip = write_strip(args.data, segnet, ckpt, out / "demo_strip.png", palette)
    ok, checks = criterion(results)
    lines = ["# Demo results (generated by `make demo`)", "",
             f"Synthetic validation split ({args.data}), SwiftNet-R18 keyframes at 0.75 scale, light flow, "
             f"trained from scratch on this machine ({cpu_description()}, "
             f"{torch.get_num_threads()} threads, torch {torch.__version__}). mIoU in %; k = distance from the "
             "keyframe; l = keyframe interval (avg pools k = 0..l-1, min is k = l-1).", "",
             "Shortcuts (docs/deviations.md#demo-shortcuts; the protocol itself is unchanged): every frame's synthetic labels "
             "for training (`--dense-labels 1`), class weights (`--class-weights 1`), bf16 autocast for the "
             "keyframe net (`--amp 1`), whole frames with the frozen keyframe net's logits cached "
             "(`--use-crop 0 --cache-keyframes 1`), no distillation (`--distil 0`), the flow net pre-trained "
             "on the generator's true flow (`--pretrain-flow true`), the GSV started as the identity fusion "
             "(`--gsv-init skip`).", "", "Training budget: " + " ".join(budget), ""]
    lines += tables_markdown(results) + ["", tc_note(results), "", "## Checks", ""] + [f"- {c}" for c in checks]
    lines += ["", "## Files", "", f"- plot: `{plot}`", f"- strip: `{strip}`", f"- overlay video: `{video}`",
              f"- benchmark at 256×512: `{out / 'demo_bench'}`", "", "## Stage times (s)", ""]
    lines += [f"- {k}: {v:.0f}" for k, v in seconds.items()]
    (out / "demo.md").write_text("\n".join(lines) + "\n")
    print("\n".join(tables_markdown(results) + [""] + checks))
    print(f"\ndemo: wrote {out / 'demo.md'}, {plot}, {strip}, {video}")
    return ok
