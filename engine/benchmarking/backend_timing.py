"""The ONNX Runtime backend timed beside the PyTorch backend in one run (``--benchmark 1 --backend
onnxruntime``): the same frames, the same host loop (``VideoPredictor``), keyframe and non-keyframe
steps of both backends interleaved round by round so slow phases of a shared machine hit all alike."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from engine.deployment.onnx_export import export_onnx
from engine.streaming.predictor import VideoPredictor
from engine.benchmarking.step_timing import NEVER, NONKEY_PER_ROUND, time_interleaved
from models.gsvnet import GSVNet


def _predictors(model, key_scale: float, device: torch.device, frame: np.ndarray, fold_bn: bool):
    """(keyframe-only predictor, non-keyframe predictor after one untimed keyframe)."""
    key = VideoPredictor(model, key_interval=1, key_scale=key_scale, device=device, fold_bn=fold_bn)
    nonkey = VideoPredictor(model, key_interval=NEVER, key_scale=key_scale, device=device, fold_bn=fold_bn)
    nonkey.step(frame)
    return key, nonkey


def compare_backends(model: GSVNet, frames: list[np.ndarray], key_scale: float, export_dir: str, repeats: int,
                     warmup: int) -> dict:
    """Medians (ms, step and step + .labels) of keyframe and non-keyframe steps on both backends, plus
    the largest logit difference between them on the timing frames. Exports into a temporary folder
    when ``export_dir`` is empty (at the frames' size and ``key_scale``)."""
    size = frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_dir or str(Path(tmp) / "onnx")
        if not export_dir:
            export_onnx(model, folder, [size], key_scale=key_scale)
        onnx = VideoPredictor.from_export(folder, key_interval=1)
        if abs(onnx.key_scale - key_scale) > 1e-9:
            raise ValueError(f"--export-dir {folder}: exported at key scale {onnx.key_scale}, but --key-scale is "
                             f"{key_scale}")
        ort_key, ort_non = _predictors(onnx.model, key_scale, torch.device("cpu"), frames[0], fold_bn=False)
        pt_key, pt_non = _predictors(model, key_scale, torch.device("cpu"), frames[0], fold_bn=True)
        diff = max(float((a.step(f).logits - b.step(f).logits).abs().max()) for a, b, f in
                   ((ort_key, pt_key, frames[0]), (ort_non, pt_non, frames[1])))
        series = {"pytorch_keyframe": (pt_key, frames, True, 1), "onnxruntime_keyframe": (ort_key, frames, True, 1),
                  "pytorch_nonkeyframe": (pt_non, frames[2:] + frames[:2], False, NONKEY_PER_ROUND),
                  "onnxruntime_nonkeyframe": (ort_non, frames[2:] + frames[:2], False, NONKEY_PER_ROUND)}
        timed = time_interleaved(series, repeats, warmup, lambda: None)
    return {"times_ms": timed, "max_abs_logit_diff": diff, "key_scale": key_scale,
            "export_dir": export_dir or "(temporary)"}


def backend_rows(comparison: dict | None) -> list[str]:
    """Markdown rows: PyTorch vs ONNX Runtime per frame type, ratios and the speedups at l = 3, 4."""
    if not comparison:
        return []
    t = {k: v["step_labels"]["median_ms"] for k, v in comparison["times_ms"].items()}

    def speedups(backend: str) -> str:
        key, non = t[f"{backend}_keyframe"], t[f"{backend}_nonkeyframe"]
        return " / ".join(f"{l * key / (key + (l - 1) * non):.2f}×" for l in (3, 4))

    rows = ["", f"## Backends (key scale {comparison['key_scale']}, step + labels, medians of interleaved rounds)",
            "", "| | PyTorch | ONNX Runtime | ratio |", "|---|---|---|---|"]
    for kind in ("keyframe", "nonkeyframe"):
        pt, ort = t[f"pytorch_{kind}"], t[f"onnxruntime_{kind}"]
        rows.append(f"| {kind} (ms) | {pt:.1f} | {ort:.1f} | {ort / pt:.2f} |")
    rows.append(f"| speedup l=3 / l=4 over keyframe-only | {speedups('pytorch')} | {speedups('onnxruntime')} | |")
    rows.append(f"| max |logit difference| | | {comparison['max_abs_logit_diff']:.2e} | |")
    return rows
