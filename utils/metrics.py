"""Segmentation metrics: one-bincount confusion matrices, IoU and the keyframe-interval summary.

Conventions (stated once, here):
- Confusion matrix ``cm`` is int64 C×C with **rows = ground truth, columns = prediction**.
- IoU_c = TP / (TP + FP + FN). A class absent from both the ground truth and the prediction has
  IoU NaN and is left out of the mean, as cityscapesScripts does (the official GSVNet code counted
  it as 0, which is wrong on subsets; docs/deviations.md#evaluation).
- Keyframe interval l (docs/evaluation.md#keyframe-interval-l): **avg mIoU** = mIoU of the confusion matrices pooled over
  distances k = 0..l−1 (pixel-pooled, as the official code and the GSVNet paper report it);
  **min mIoU** = mIoU at k = l−1 (the GT is the last frame before the next keyframe). The true
  minimum over all evaluated k is reported separately because the farthest frame need not be worst.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor


def _as_tensor(x, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        # np.array copy: torch.from_numpy refuses negative strides and warns on read-only arrays.
        return torch.from_numpy(np.array(x))
    raise TypeError(f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def confusion_matrix(pred, target, num_classes: int, ignore_index: int = 255) -> Tensor:
    """Accumulate a confusion matrix with a single bincount.

    pred:   integer labels of any shape (e.g. B×H×W or H×W), torch or numpy, values in [0, C).
    target: integer labels of the same shape; pixels equal to ``ignore_index`` or outside [0, C)
            are dropped.
    Returns int64 C×C on ``pred``'s device (rows = ground truth, columns = prediction).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
    pred = _as_tensor(pred, "pred")
    target = _as_tensor(target, "target").to(pred.device)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.is_floating_point() or target.is_floating_point():
        raise TypeError("pred and target: expected integer label tensors (argmax the logits first)")
    # int64 before arithmetic: uint8 targets (255 = ignore) would overflow in C*gt + pred.
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    keep = (target != ignore_index) & (target >= 0) & (target < num_classes)
    pred, target = pred[keep], target[keep]
    if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= num_classes):
        # A wrong prediction id would silently land in another ground-truth row; refuse instead.
        raise ValueError(f"pred: values must lie in [0, {num_classes}) where the target is valid, "
                         f"got range [{int(pred.min())}, {int(pred.max())}]")
    flat = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _cm64(cm) -> Tensor:
    cm = _as_tensor(cm, "cm")
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm: expected a square C×C matrix, got shape {tuple(cm.shape)}")
    return cm.to(torch.float64)


def iou(cm) -> Tensor:
    """Per-class IoU from a C×C confusion matrix (rows = GT).

    Returns float64 C (fraction 0–1) on cm's device; NaN where the class is in neither the GT nor
    the prediction (TP + FP + FN = 0).
    """
    cm = _cm64(cm)
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    nan = torch.full_like(tp, math.nan)
    return torch.where(union > 0, tp / union.clamp_min(1), nan)


def miou(cm) -> float:
    """Mean IoU over the classes that occur in the GT or the prediction (fraction 0–1); NaN if none."""
    values = iou(cm)
    if torch.isnan(values).all():
        return math.nan
    return float(torch.nanmean(values))


def pixel_accuracy(cm) -> float:
    """trace(cm) / sum(cm) over non-ignored pixels (fraction 0–1); NaN for an empty matrix."""
    cm = _cm64(cm)
    total = float(cm.sum())
    return float(cm.trace()) / total if total > 0 else math.nan


def _percent(x: float) -> float | None:
    return None if math.isnan(x) else 100.0 * x


def summarize(cms: Mapping[int, Tensor], class_names: Sequence[str], max_interval: int = 5) -> dict:
    """Build the ``metrics.json`` dictionary (docs/evaluation.md#outputs) from confusion matrices per distance.

    cms: {distance k: int C×C confusion matrix accumulated over all GT frames at that distance}.
    Values are in percent (0–100); ``None`` where undefined. Intervals l = 1..max_interval are
    reported only when every distance 0..l−1 was evaluated.
    """
    if not cms:
        raise ValueError("cms: expected at least one distance, got an empty mapping")
    names = [str(n) for n in class_names]
    mats = {int(k): _as_tensor(v, f"cms[{k}]").cpu().long() for k, v in cms.items()}
    for k, m in mats.items():
        if m.shape != (len(names), len(names)):
            raise ValueError(f"cms[{k}]: expected shape {(len(names), len(names))} to match "
                             f"{len(names)} class_names, got {tuple(m.shape)}")
        if k < 0:
            raise ValueError(f"cms: distances must be >= 0, got {k}")

    per_distance, miou_by_k = {}, {}
    for k in sorted(mats):
        miou_by_k[k] = miou(mats[k])
        per_distance[str(k)] = {
            "miou": _percent(miou_by_k[k]),
            "iou": {n: _percent(float(v)) for n, v in zip(names, iou(mats[k]))},
        }

    intervals = {}
    for l in range(1, max_interval + 1):
        if any(k not in mats for k in range(l)):
            break  # later intervals need this distance too
        pooled = sum(mats[k] for k in range(l))
        intervals[str(l)] = {"avg_miou": _percent(miou(pooled)), "min_miou": _percent(miou_by_k[l - 1])}

    defined = {k: v for k, v in miou_by_k.items() if not math.isnan(v)}
    if defined:
        worst = min(defined, key=lambda k: (defined[k], k))
        min_over = {"distance": worst, "miou": _percent(defined[worst])}
    else:
        min_over = {"distance": None, "miou": None}
    return {"per_distance": per_distance, "intervals": intervals,
            "min_over_distances": min_over, "class_names": names}


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _row(label: str, cells: Sequence[str], width: int = 7) -> str:
    return f"{label:<16}" + "".join(f"{c:>{width}}" for c in cells)


def _tc_line(tc: dict, key_interval: int | None = None) -> str:
    """The lines for metrics["temporal_consistency"] (engine/evaluation/consistency.py): all pairs pooled, then
    the pairs (t−1, t) ending on a keyframe ("refresh") and the others ("propagated") when reported."""
    excluded = tc.get("excluded_fraction")
    span = f"{tc['snippets']} whole clips, {tc['frames']} frames" if tc.get("snippets") else "each snippet"
    span += "" if key_interval is None else f", l={key_interval}"
    lines = [f"{'TC (%)':<16}{_fmt(tc.get('miou')):>7}   ({span}, {tc.get('flow', '?')} flow; all in-frame pixels "
             f"{_fmt(tc.get('miou_unmasked'))}, {'-' if excluded is None else f'{100 * excluded:.1f}'}% excluded)"]
    for part, what in (("refresh", "t a keyframe"), ("propagated", "t propagated")):
        if part in tc:
            pairs = (tc[part] or {}).get("pairs", 0)
            lines.append(f"{'  ' + part:<16}{_fmt((tc[part] or {}).get('miou')):>7}   ({pairs} pairs, {what})")
    return "\n".join(lines)


def _mvc_line(metrics: dict) -> str:
    """mVC8 / mVC16 (utils/video_consistency.py), present only for densely labelled clips."""
    return (f"{'mVC8 / mVC16 (%)':<16}{_fmt(metrics.get('mvc8')):>7} / {_fmt(metrics.get('mvc16'))}   "
            "(prediction constant where the ground truth is, over 8 / 16-frame windows)")


def format_table(metrics: dict, per_class: bool = False) -> str:
    """Plain-text table of a ``summarize()`` result: mIoU per distance k, avg/min mIoU per interval l
    with the temporal consistency below them (when ``metrics["temporal_consistency"]`` is set), the
    true minimum over k and, with ``per_class=True``, one IoU row per class."""
    dists = list(metrics["per_distance"])
    lines = [_row("distance k", dists),
             _row("mIoU (%)", [_fmt(metrics["per_distance"][k]["miou"]) for k in dists])]
    if per_class:
        for name in metrics["class_names"]:
            lines.append(_row(f"  {name}"[:16], [_fmt(metrics["per_distance"][k]["iou"][name])
                                                 for k in dists]))
    ivs = list(metrics["intervals"])
    if ivs:
        lines += ["", _row("interval l", ivs),
                  _row("avg mIoU (%)", [_fmt(metrics["intervals"][l]["avg_miou"]) for l in ivs]),
                  _row("min mIoU (%)", [_fmt(metrics["intervals"][l]["min_miou"]) for l in ivs])]
    tc = metrics.get("temporal_consistency")
    if tc:
        lines += ([] if ivs else [""]) + [_tc_line(tc, metrics.get("key_interval"))]   # right below avg/min mIoU
    if "mvc8" in metrics:
        lines.append(_mvc_line(metrics))
    worst = metrics["min_over_distances"]
    if worst["distance"] is not None:
        lines += ["", f"minimum over distances: {_fmt(worst['miou'])} at k={worst['distance']}"]
    return "\n".join(lines)
