"""Temporal consistency (TC) of a sequence of label maps: how much a prediction flickers.

Definition we follow: Liu et al., "Efficient semantic video segmentation with per-frame inference"
(ECCV 2020) score the prediction at t against the prediction at t+1 warped back to t with optical
flow, and report the mIoU of the intersections and unions pooled over all frame pairs of the
sequence, with no occlusion mask.

Ours, for each consecutive pair (t−1, t):
- the label map of frame t−1 is carried to frame t with the backward flow of frame t,
  nearest-neighbour: ``warped[y, x] = prev_labels[rint(y + v), rint(x + u)]`` (np.rint: round half
  to even, as the synthetic generator's validity mask is computed);
- one confusion matrix of (labels of frame t, warped labels of frame t−1) is pooled over all pairs
  (rows = frame t, columns = warped t−1; IoU is symmetric, so the order does not matter);
- TC = mIoU (percent) over the classes that appear in either, as ``utils.metrics.miou``.

Two deliberate deviations from Liu et al.:
1. Direction: we warp the past frame to the present (flow t→t−1), so TC can be computed causally
   while streaming, with the flow the synthetic generator stores; theirs warps t+1 back to t.
2. Masking: ``miou`` leaves out pixels whose flow is unreliable (``valid`` false, e.g. occluded, or
   failing a forward-backward check) or points outside frame t−1, and ``excluded_fraction`` says
   how many; ``miou_unmasked`` ignores ``valid`` and keeps every in-frame pixel, the figure closest
   to theirs (pixels whose flow leaves the frame have no label to compare with in either).

Flow convention (stated once, here; the same as ``models.warp`` and the synthetic dataset's
``extras/*_flow.npy``): ``flow_bwd`` is H×W×2 float in pixels of the label grid, channel 0 = u
(along x / width), channel 1 = v (along y / height), such that
``frame_t(x, y) ≈ frame_{t−1}(x + u, y + v)``. The synthetic generator stores exactly this (float16,
zero on a snippet's first frame) with ``_valid.png`` = 255 where the point is visible in frame t−1
and lies inside it; ``utils.optical_flow.dis_backward_flow`` estimates it from two RGB frames.
"""
from __future__ import annotations

import math

import numpy as np

from utils.metrics import miou


def warp_labels_nearest(labels: np.ndarray, flow_bwd: np.ndarray,
                        fill: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """Carry the labels of frame t−1 to frame t with the backward flow of frame t.

    labels:   H×W integer labels of frame t−1.
    flow_bwd: H×W×2 float (u, v) in pixels, ``frame_t(x, y) ≈ frame_{t−1}(x + u, y + v)``.
    fill:     label written where the rounded position lies outside the frame (or the flow is not
              finite); must fit ``labels.dtype``.
    Returns (warped H×W of labels.dtype, inside H×W bool: the rounded position is in the frame).
    """
    labels, flow = np.asarray(labels), np.asarray(flow_bwd)
    if labels.ndim != 2 or flow.shape != (*labels.shape, 2):
        raise ValueError(f"labels must be H×W and flow_bwd H×W×2 of the same H, W; got "
                         f"{labels.shape} and {flow.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels: expected integer label ids, got {labels.dtype}")
    h, w = labels.shape
    x = np.rint(np.arange(w, dtype=np.float64)[None, :] + flow[..., 0])
    y = np.rint(np.arange(h, dtype=np.float64)[:, None] + flow[..., 1])
    # NaN compares False, so non-finite flow is "outside" too.
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    xi = np.where(inside, x, 0).astype(np.intp)
    yi = np.where(inside, y, 0).astype(np.intp)
    warped = np.where(inside, labels[yi, xi], labels.dtype.type(fill))
    return warped, inside


class TemporalConsistency:
    """Accumulates TC over the consecutive pairs of one or more sequences (module docstring).

    add() once per pair (t−1, t); the first frame of a sequence has no pair. result() may be called
    at any time. Pixels whose label in frame t is ``ignore_index`` (or outside [0, C)) are not
    scored and do not count in ``excluded_fraction``; nor do pixels whose warped label is ignored.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if num_classes < 1:
            raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.reset()

    def reset(self) -> None:
        c = self.num_classes
        self.cm = np.zeros((c, c), np.int64)            # flow-reliable pixels only
        self.cm_unmasked = np.zeros((c, c), np.int64)   # every in-frame pixel
        self.scored = 0       # pixels of frame t with a class label, over all pairs
        self.excluded = 0     # ... of which valid is false or the flow leaves the frame
        self.pairs = 0

    def _scorable(self, labels: np.ndarray) -> np.ndarray:
        return (labels != self.ignore_index) & (labels >= 0) & (labels < self.num_classes)

    def add(self, prev_labels: np.ndarray, labels: np.ndarray, flow_bwd: np.ndarray,
            valid: np.ndarray | None = None) -> None:
        """One pair. prev_labels, labels: H×W integer labels of frames t−1 and t; flow_bwd: H×W×2
        backward flow of frame t (convention: module docstring); valid: H×W bool, True where the
        flow is reliable (None = all)."""
        labels = np.asarray(labels)
        if np.shape(prev_labels) != labels.shape:
            raise ValueError(f"prev_labels and labels: shapes differ, {np.shape(prev_labels)} vs {labels.shape}")
        if valid is None:
            valid = np.ones(labels.shape, bool)
        valid = np.asarray(valid)
        if valid.shape != labels.shape or valid.dtype != bool:
            raise ValueError(f"valid: expected bool {labels.shape}, got {valid.dtype} {valid.shape}")
        # int64 so that ``fill`` never collides with a class id, whatever the input dtype.
        warped, inside = warp_labels_nearest(np.asarray(prev_labels).astype(np.int64), flow_bwd,
                                             fill=self.ignore_index)
        scored = self._scorable(labels)
        reliable = scored & inside & valid
        both = scored & inside & self._scorable(warped)
        # one bincount per matrix (rows = frame t, columns = warped t-1); np.bincount is ~20× faster
        # here than utils.metrics.confusion_matrix (torch, checks) at 1024×2048
        c = self.num_classes
        code = labels.astype(np.int64) * c + warped
        for cm, keep in ((self.cm, both & valid), (self.cm_unmasked, both)):
            cm += np.bincount(code[keep], minlength=c * c).reshape(c, c)
        self.scored += int(scored.sum())
        self.excluded += int(scored.sum() - reliable.sum())
        self.pairs += 1

    def result(self) -> dict:
        """{"miou": TC over flow-reliable pixels (percent 0–100), "miou_unmasked": TC over every
        in-frame pixel (percent), "excluded_fraction": share of scored pixels left out of "miou"
        because valid was false or the flow left the frame (0–1), "pairs": pairs added}.
        NaN where nothing was scored."""
        return {"miou": 100.0 * miou(self.cm), "miou_unmasked": 100.0 * miou(self.cm_unmasked),
                "excluded_fraction": self.excluded / self.scored if self.scored else math.nan,
                "pairs": self.pairs}


class StreamingTC:
    """TC of a predicted video as it streams (``--inference --temporal-consistency 1``): each frame's labels
    against the previous frame's, carried by OpenCV DIS flow with its forward-backward mask
    (utils/optical_flow.py). A change of frame size starts a new pair chain. Costs a DIS pair per frame
    (7–60 ms per direction at 720p), more than a non-keyframe step: off by default."""

    def __init__(self, num_classes: int):
        from utils.optical_flow import dis_backward_flow  # OpenCV only when asked for
        self._flow = dis_backward_flow
        self.tc = TemporalConsistency(num_classes)
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, frame_rgb: np.ndarray, labels: np.ndarray) -> None:
        if self._prev is not None and self._prev[0].shape == frame_rgb.shape:
            flow, valid = self._flow(self._prev[0], frame_rgb)
            self.tc.add(self._prev[1], labels, flow, valid)
        self._prev = (frame_rgb, labels)

    def result(self) -> dict:
        return {**self.tc.result(), "flow": "dis"}
