"""`make footage`'s outputs: frame rates at the held-out clip's size, results/footage.md and the strip footage.png."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dataset.folder import read_classes
from dataset.video import natural_key, read_rgb
from engine.streaming.predictor import VideoPredictor
from engine.benchmarking.step_timing import NEVER, time_interleaved
from utils.visualize import colorize, grid, save_png

FUSIONS = {"GSVNet": "gsv", "warp-only": "warp", "copy": "copy"}
KEYFRAME_ROW = "keyframe net (every frame)"
TIMING_FRAMES = 12      # frames cycled through while timing
STRIP_ROWS = 3          # frames shown in the strip, spread over the held-out clip
STRIP_MIN_HEIGHT = 240  # smaller frames are enlarged by an integer factor (nearest) in the strip


def held_out_frames(root: Path) -> tuple[str, list[Path]]:
    """(clip name, its frame files in time order) of the one clip in <root>/val."""
    clip = next(p for p in sorted((root / "val").iterdir()) if p.is_dir() and not p.name.startswith("."))
    return clip.name, sorted((clip / "origin").iterdir(), key=lambda p: natural_key(p.stem))


def predictors(spec: str, segnet: str, checkpoint: str) -> dict[str, VideoPredictor]:
    """The keyframe net on every frame ("keyframe") and a never-refreshed predictor per fusion, as
    ``--inference`` builds them (BN folded, keyframes at scale 0.75)."""
    out = {"keyframe": VideoPredictor.from_checkpoints(segnet=spec, segnet_weights=segnet, checkpoint=checkpoint,
                                                       key_interval=1)}
    for fusion in FUSIONS.values():
        out[fusion] = VideoPredictor.from_checkpoints(segnet=spec, segnet_weights=segnet, checkpoint=checkpoint,
                                                      key_interval=NEVER, fusion=fusion)
    return out


def frame_rates(preds: dict[str, VideoPredictor], frames: list[np.ndarray], repeats: int) -> dict:
    """Median step + .labels of a keyframe and of a non-keyframe per fusion (ms), timed in interleaved rounds on
    the clip's own frames (engine.benchmarking.step_timing), and the frames/s they give: 1/keyframe for the keyframe net on
    every frame, l/(keyframe + (l−1)·non-keyframe) at l = 3 for each fusion."""
    series = {"keyframe": (preds["keyframe"], frames, True, 1)}
    for fusion in FUSIONS.values():
        preds[fusion].reset()
        preds[fusion].step(frames[0])  # the untimed keyframe every non-keyframe series starts from
        series[fusion] = (preds[fusion], frames[1:], False, 1)
    print(f"\n=== footage: frame rates at {frames[0].shape[0]}×{frames[0].shape[1]} (engine.benchmarking.step_timing, "
          f"{repeats} interleaved rounds)", flush=True)
    timed = time_interleaved(series, repeats, warmup=2, sync=lambda: None)
    ms = {name: t["step_labels"]["median_ms"] for name, t in timed.items()}
    fps = {KEYFRAME_ROW: 1000.0 / ms["keyframe"]}
    fps.update({row: 3000.0 / (ms["keyframe"] + 2 * ms[f]) for row, f in FUSIONS.items()})
    return {"ms": ms, "fps": fps, "size": list(frames[0].shape[:2]), "repeats": repeats}


def strip_image(preds: dict[str, VideoPredictor], frames: list[np.ndarray], palette, k: int) -> np.ndarray:
    """Rows of STRIP_ROWS frames t spread over the clip: the image, the keyframe net on t, GSVNet and warp-only
    propagated from the keyframe t − k."""
    times = [int(t) for t in np.linspace(k, len(frames) - 1, STRIP_ROWS).round()]
    factor = max(1, math.ceil(STRIP_MIN_HEIGHT / frames[0].shape[0]))
    tiles, captions = [], []

    def show(image: np.ndarray, caption: str) -> None:
        tiles.append(np.repeat(np.repeat(image, factor, axis=0), factor, axis=1))
        captions.append(caption)

    for t in times:
        preds["keyframe"].reset()
        show(frames[t], f"frame {t}")
        show(colorize(preds["keyframe"].step(frames[t]).labels, palette), "keyframe net")
        for row in ("GSVNet", "warp-only"):
            predictor = preds[FUSIONS[row]]
            predictor.reset()
            for frame in frames[t - k:t + 1]:
                out = predictor.step(frame)
            show(colorize(out.labels, palette), f"{row}, k={k}")
    return grid(tiles, ncols=4, captions=captions)


def _cell(x, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def keyframes_per_frame(metrics: dict) -> float | None:
    """Keyframes / frames of the consistency pass: every refresh pair ends on a keyframe, and each clip's first
    frame is one."""
    tc = metrics.get("temporal_consistency")
    if not tc:
        return None
    refresh = (tc.get("refresh") or {}).get("pairs", 0)
    return (refresh + tc["snippets"]) / tc["frames"]


def table(results: dict[str, dict], rates: dict) -> list[str]:
    lines = ["| method | k=0 | k=1 | k=2 | k=3 | k=4 | l=3 avg / min | TC | TC refresh | TC propagated | "
             "keyframes / frame | frames/s |", "|---" * 12 + "|"]
    for row, m in results.items():
        per = [_cell(m["per_distance"].get(str(k), {}).get("miou")) for k in range(5)]
        l3 = m["intervals"].get("3")
        tc = m.get("temporal_consistency") or {}
        avg_min = f"{_cell(l3['avg_miou'])} / {_cell(l3['min_miou'])}" if l3 else "—"
        parts = [tc.get("miou"), (tc.get("refresh") or {}).get("miou"), (tc.get("propagated") or {}).get("miou")]
        cells = per + [avg_min] + [_cell(x) for x in parts] + [_cell(keyframes_per_frame(m), 2),
                                                                 _cell(rates["fps"].get(row), 2)]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def notes(results: dict[str, dict], rates: dict) -> list[str]:
    """What the table measures, generated from the runs' own records."""
    gsv, kf = results["GSVNet"], results[KEYFRAME_ROW]
    tc = gsv.get("temporal_consistency") or {}
    ms = rates["ms"]
    h, w = rates["size"]
    return [
        f"Agreement = mIoU (%) of each method's labels against the keyframe net's own labels of the same frame "
        f"(`--evaluate 1 --pseudo-labels 1`, metrics.json \"reference\": \"teacher\"), over every frame of the "
        f"held-out clip with k predecessors ({', '.join(f'k={k}: {n}' for k, n in gsv['num_samples'].items())} "
        "scored frames); k = distance from the keyframe, l = 3 pools k = 0..2 (avg) and min is k = 2. k = 0 is "
        "the keyframe itself, 100 by construction.",
        f"TC = temporal consistency (%) of the whole clip ({tc.get('frames', '—')} frames, DIS flow, keyframes at "
        f"frames 0, 3, 6, ... for the three fusions, every frame for the keyframe net): 'refresh' pools the pairs "
        "that end on a keyframe (where labels jump back to the keyframe net's), 'propagated' the others. "
        f"{_cell((kf.get('temporal_consistency') or {}).get('miou'))} for the keyframe net on every frame is "
        "the flicker a user sees without propagation.",
        f"Frames/s at the clip's own size {h}×{w} on this CPU, batch 1, float32: median step + labels of "
        f"{rates['repeats']} interleaved rounds (engine.benchmarking.step_timing, as `--benchmark 1` times them) on the clip's "
        f"frames: keyframe {ms['keyframe']:.1f} ms, non-keyframe GSVNet {ms['gsv']:.1f} / warp-only "
        f"{ms['warp']:.1f} / copy {ms['copy']:.1f} ms; l = 3 gives 3 / (keyframe + 2 non-keyframes).",
        "**What agreement does and does not show.** The keyframe net learnt synthetic streets; it is not right "
        "about a cartoon rabbit, a talking man in a car or most of what real footage shows, and nobody labelled "
        "these clips, so nothing here measures accuracy. The table measures how faithfully the propagation "
        "reproduces the keyframe net between keyframes (a perfect copy of a wrong net scores 100) and how steady "
        "the result is. Copy scores high where the scene barely moves; what GSVNet and warp-only add over copy is "
        "the part of the motion the trained flow follows.",
    ]


def write_report(args, results: dict[str, dict], rates: dict, meta: dict, strip: np.ndarray) -> tuple[Path, Path]:
    out = Path(args.out)
    png = save_png(out / "footage.png", strip)
    clips = meta["clips"]
    lines = ["# GSVNet on real video without labels (generated by `make footage`)", "",
             f"{meta['date']}, {meta['cpu']} ({meta['threads']} threads), torch {meta['torch']}. Command: "
             f"`{meta['command']}`.", "",
             f"Trained label-free (`--pseudo-labels 1`) on {clips['train']}; held out: {clips['held_out']}, never "
             "seen in training (its own dataset root). The keyframe net (the teacher, frozen): "
             f"{meta['segnet_origin']} (`{meta['segnet']}`). Light flow + GSV trained within --time-budget "
             f"{args.prop_budget:g} s: {args.pretrain_iters} iterations of DIS flow pre-training, then "
             f"{meta['iterations']} end-to-end iterations (batch {args.batch}, {args.crop[0]}×{args.crop[1]} crops); "
             "warp-only and copy use the same trained flow.", "", meta["why"], ""]
    lines += table(results, rates) + [""] + notes(results, rates)
    if args.quick:
        lines += ["", "**--quick run**: tiny clips and one-iteration stages; the numbers only show that the tool "
                  "works."]
    lines += ["", f"Strip (`{png}`): frames spread over the held-out clip; the image, the keyframe net on it, and "
              f"GSVNet and warp-only propagated from the keyframe {meta['strip_k']} frames earlier.", "",
              "## Commands", ""] + [f"    {c}" for c in meta["commands"]]
    lines += ["", "## Stage times (s)", ""] + [f"- {k}: {v:.0f}" for k, v in meta["seconds"].items()]
    md = out / "footage.md"
    md.write_text("\n".join(lines) + "\n")
    print("\n".join(table(results, rates)))
    return md, png


def palette_of(root: Path):
    return read_classes(root).colors


def read_frames(paths: list[Path]) -> list[np.ndarray]:
    return [read_rgb(p) for p in paths]
