"""Video consistency VC_n (Miao et al., "VSPW: A Large-scale Dataset for Video Scene Parsing in the Wild",
CVPR 2021): does the prediction stay put where the ground truth stays put?

For a clip of T frames with ground truth G_t and prediction P_t (H×W class indices), a window of n
consecutive frames s..s+n−1 scores

    common  = pixels whose ground truth is the same class in all n frames,
    VC(win) = |common ∧ {pixels whose prediction is the same in all n frames}| / |common|;

VC_n of the clip is the mean over its windows, mVC_n the mean over clips (both in percent here). VC
rewards a constant prediction (it never compares the prediction with the ground truth): report it next
to mIoU, never alone.

Our choices, stated once here:
- Windows: s = 0 .. T−n−1, i.e. T−n windows, as the VSPW evaluation script iterates ``range(T − n)``;
  the window ending on the clip's last frame is not scored, so a clip needs at least n+1 frames.
  ``all_windows=True`` scores all T−n+1 windows instead.
- Void: a pixel whose ground truth is ``ignore_index`` is never common (it is not scored anywhere in
  this project). The VSPW script compares raw mask values, so a pixel void in all n frames counts as
  common there; a pixel that is void in only some frames is not common in either.
- A window with no common pixel (0/0) is skipped; a clip with no scored window has VC NaN and is left
  out of mVC (``mean_video_consistency``).

``video_consistency`` computes VC_n from the definition, window by window; ``StreamingVC`` computes the same
numbers frame by frame in O(1) per frame and n from run lengths (a pixel is constant over the n frames
ending at t exactly when its value has not changed for n−1 steps), keeping only the previous frame.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def window_consistency(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray],
                       ignore_index: int = 255) -> tuple[int, int]:
    """(agreeing, common) pixel counts of one window: ``common`` = ground truth constant over the window
    and not ``ignore_index``; ``agreeing`` = those of them whose prediction is constant too.

    preds, gts: n >= 1 integer H×W arrays each, all of one shape.
    """
    if len(preds) != len(gts) or not preds:
        raise ValueError(f"a window needs as many predictions as ground-truth maps (>= 1), got "
                         f"{len(preds)} and {len(gts)}")
    shapes = {np.shape(x) for x in (*preds, *gts)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"predictions and ground truth must all be H×W of one size, got shapes {sorted(shapes)}")
    gt_same = np.asarray(gts[0]) != ignore_index
    pred_same = np.ones(np.shape(preds[0]), bool)
    for j in range(1, len(gts)):
        gt_same &= np.asarray(gts[j]) == np.asarray(gts[0])
        pred_same &= np.asarray(preds[j]) == np.asarray(preds[0])
    return int((gt_same & pred_same).sum()), int(gt_same.sum())


def video_consistency(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], n: int, ignore_index: int = 255,
                      all_windows: bool = False) -> float:
    """VC_n (percent) of one clip from per-frame predictions and ground truth (module docstring); NaN when no
    window has a common pixel (or the clip is too short: T <= n, or T < n with ``all_windows``)."""
    if n < 1:
        raise ValueError(f"n: expected a window of >= 1 frames, got {n}")
    if len(preds) != len(gts):
        raise ValueError(f"one prediction per ground-truth frame expected, got {len(preds)} and {len(gts)}")
    last_start = len(gts) - n + (1 if all_windows else 0)   # exclusive
    scores = []
    for s in range(max(0, last_start)):
        agree, common = window_consistency(preds[s:s + n], gts[s:s + n], ignore_index)
        if common:
            scores.append(agree / common)
    return 100.0 * float(np.mean(scores)) if scores else math.nan


def mean_video_consistency(per_clip: Sequence[float]) -> float:
    """mVC: the mean of the clips' VC over the clips where it is defined (NaN if none is)."""
    defined = [v for v in per_clip if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


class StreamingVC:
    """VC_n of one clip for several n at once, fed frame by frame (``add``), O(1) memory in T.

    ``value(n)`` equals ``video_consistency(preds, gts, n, ignore_index, all_windows)`` of the frames added.
    """

    def __init__(self, windows: Sequence[int] = (8, 16), ignore_index: int = 255, all_windows: bool = False):
        if not windows or min(windows) < 1:
            raise ValueError(f"windows: expected lengths >= 1, got {list(windows)}")
        self.windows, self.ignore_index, self.all_windows = tuple(int(n) for n in windows), ignore_index, all_windows
        self._cap = max(self.windows)
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._runs: tuple[np.ndarray, np.ndarray] | None = None   # frames the pred / gt value has lasted
        self.frames = 0
        self._sums = {n: 0.0 for n in self.windows}
        self._count = {n: 0 for n in self.windows}

    def _score_window_ending_here(self) -> None:
        """Score, for each n, the window of the n frames ending at the last frame added."""
        pred_run, gt_run = self._runs
        gt = self._prev[1]
        for n in self.windows:
            if self.frames < n:
                continue
            common = (gt_run >= n) & (gt != self.ignore_index)
            total = int(common.sum())
            if total:
                self._sums[n] += int((common & (pred_run >= n)).sum()) / total
                self._count[n] += 1

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """The next frame: pred and gt integer H×W of one size (the size of the clip's earlier frames)."""
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape or pred.ndim != 2:
            raise ValueError(f"pred and gt must be H×W of one size, got {pred.shape} and {gt.shape}")
        if self._prev is None:
            self._runs = (np.ones(pred.shape, np.int32), np.ones(gt.shape, np.int32))
        else:
            if pred.shape != self._prev[0].shape:
                raise ValueError(f"frame {self.frames} has size {pred.shape}, the clip's earlier frames "
                                 f"{self._prev[0].shape}")
            if not self.all_windows:
                self._score_window_ending_here()   # a next frame exists: the window ending before it counts
            self._runs = tuple(np.where(cur == old, np.minimum(run + 1, self._cap), 1)
                               for cur, old, run in zip((pred, gt), self._prev, self._runs))
        self._prev = (pred, gt)
        self.frames += 1
        if self.all_windows:
            self._score_window_ending_here()

    def value(self, n: int) -> float:
        """VC_n (percent) of the frames added so far; NaN when no window was scored."""
        if n not in self._sums:
            raise KeyError(f"window {n} was not tracked (windows: {list(self.windows)})")
        return 100.0 * self._sums[n] / self._count[n] if self._count[n] else math.nan
