"""The whole-clip consistency pass of ``--evaluate 1``: temporal consistency (TC) and video consistency (mVC).

Every evaluated clip (dataset/whole_clips.py: all frames of a synthetic or Cityscapes snippet, each CamVid
sequence from its first to its last labelled frame) is streamed frame by frame as ``--inference`` streams
it, under the fixed keyframe schedule of ``--key-interval`` l: the keyframe net segments frames 0, l, 2l, ...
of the clip at ``--eval-scale``, the frames between are propagated with the evaluated fusion
(``--keyframe-only 1``: every frame is a keyframe, the flicker baseline, so l = 1). Each frame's labels
are taken at the frame's full resolution (models.labels.logits_to_labels).

TC (utils/temporal_consistency.py): every pair (t−1, t) of a clip is scored; the pairs where t is a
keyframe ("refresh": the propagated labels jump to a fresh keyframe) and the others ("propagated") are
pooled apart as well as together. The flow that carries the labels of t−1 to t is

- ``"true"`` on the synthetic dataset: the generator's own backward flow and validity (exact);
- ``"dis"`` otherwise: OpenCV DIS on the full-resolution frames with the forward-backward check
  (utils.optical_flow), computed in the DataLoader workers once per frame pair of the run.

mVC (utils/video_consistency.py): VC_8 and VC_16 of each clip against its per-frame ground truth, averaged
over clips; only when every evaluated clip has a label on every frame (the synthetic data's per-frame
labels), since the windows need ground truth on every frame.

One clip at a time, frame by frame (batch 1: ``--batch-size`` does not apply), so memory does not grow
with the clip length. Distributed: each rank streams its own contiguous block of clips (``shard_indices``);
the TC matrices and counts and each clip's VC travel in one int64 all-reduce; every rank returns the same.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from config.config import Config
from config.dataset_preset import DatasetPreset
from dataset.synthetic import extras_paths
from dataset.video import read_rgb
from dataset.whole_clips import WholeClip, whole_clips
from engine import distributed as dist
from engine.evaluation.protocol import eval_split
from engine.runs import data_root
from models.labels import logits_to_labels
from models.propagation_model import PropagationModel
from utils.optical_flow import DisFlowCache
from utils.temporal_consistency import TemporalConsistency
from utils.video_consistency import StreamingVC, mean_video_consistency

VC_WINDOWS = (8, 16)           # metrics.json "mvc8", "mvc16"
PARTS = ("refresh", "propagated")


def tc_enabled(cfg: Config) -> bool:
    """--temporal-consistency: 1 on, 0 off, -1 = the --evaluate default (on). Off skips the whole pass."""
    return cfg.temporal_consistency != 0


def flow_source(preset: DatasetPreset) -> str:
    """"true" (the synthetic generator's flow) on the synthetic dataset, else "dis"."""
    return "true" if preset.name == "synthetic" else "dis"


def schedule_interval(cfg: Config) -> int:
    """The keyframe interval of the pass: 1 with --keyframe-only 1 (every frame a keyframe), else --key-interval."""
    return 1 if cfg.keyframe_only else int(cfg.key_interval)


def _check_true_flow(clips: list[WholeClip], root: str, split: str) -> None:
    for clip in clips:
        for path in clip.frame_paths[1:]:
            stem = path.name[: -len("_leftImg8bit.png")]
            paths = extras_paths(root, split, stem)
            if not (paths["flow"].is_file() and paths["valid"].is_file()):
                raise FileNotFoundError(f"missing true flow {paths['flow']} or {paths['valid']} (synthetic extras, "
                                        "needed for the temporal consistency; --temporal-consistency 0 skips it)")


def consistency_clips(cfg: Config, preset: DatasetPreset, purpose: str = "evaluate") -> list[WholeClip]:
    """The whole clips of the evaluation split, cut to the first --max-eval-samples clips (0 = all); checks,
    before any work, that every clip has frames and (synthetic) its true flow on disk."""
    root, split = data_root(cfg, preset), eval_split(preset, purpose)
    clips = whole_clips(preset, split, root)
    if cfg.max_eval_samples > 0:
        clips = clips[:cfg.max_eval_samples]
    if not clips:
        raise FileNotFoundError(f"no clips to evaluate in the {split} split of {preset.name} at {root}")
    if flow_source(preset) == "true":
        _check_true_flow(clips, root, split)
    return clips


class ClipFrames(Dataset):
    """Frames of whole clips in order, each with the backward flow that carries frame t−1 to it.

    Item: {"clip": index into ``clips``, "t", "frame": uint8 3×H×W RGB, "flow": float32 H×W×2 | None,
    "valid": bool H×W | None (None at t = 0), "label": uint8 H×W | None (with
    with_labels, where the clip has one)}; flow convention: utils/temporal_consistency.py.
    """

    def __init__(self, clips: list[WholeClip], indices: list[int], source: str, root: str, split: str,
                 with_labels: bool = False):
        self.clips, self.source, self.root, self.split, self.with_labels = clips, source, root, split, with_labels
        self.items = [(c, t) for c in indices for t in range(len(clips[c]))]
        self._cache = DisFlowCache(max_pairs=64)
        self._frame_ids: dict[str, int] = {}   # frame path -> int key of the DIS cache

    def __len__(self) -> int:
        return len(self.items)

    def _true(self, path) -> tuple[np.ndarray, np.ndarray]:
        paths = extras_paths(self.root, self.split, path.name[: -len("_leftImg8bit.png")])
        valid = cv2.imread(str(paths["valid"]), cv2.IMREAD_UNCHANGED)
        if valid is None or not paths["flow"].is_file():
            raise FileNotFoundError(f"missing true flow {paths['flow']} or {paths['valid']} (synthetic extras, "
                                    "needed for the temporal consistency; --temporal-consistency 0 skips it)")
        return np.load(paths["flow"]).astype(np.float32), valid > 0

    def _dis(self, clip: WholeClip, t: int, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = [self._frame_ids.setdefault(str(p), len(self._frame_ids)) for p in clip.frame_paths[t - 1:t + 1]]
        return self._cache.get(ids[0], ids[1], read_rgb(clip.frame_paths[t - 1]), rgb)

    def __getitem__(self, i: int) -> dict:
        c, t = self.items[i]
        clip = self.clips[c]
        rgb = read_rgb(clip.frame_paths[t])
        item = {"clip": c, "t": t, "frame": torch.from_numpy(rgb).permute(2, 0, 1).contiguous(),
                "flow": None, "valid": None, "label": None}
        if t > 0:
            flow, valid = self._true(clip.frame_paths[t]) if self.source == "true" else self._dis(clip, t, rgb)
            if flow.shape[:2] != rgb.shape[:2]:
                raise ValueError(f"frame {clip.frame_paths[t]} has size {rgb.shape[:2]} but its flow or the "
                                 f"previous frame {clip.frame_paths[t - 1]} has size {flow.shape[:2]}")
            item["flow"], item["valid"] = flow, valid
        if self.with_labels and clip.label_paths[t] is not None:
            item["label"] = clip.read_label(clip.label_paths[t])
        return item


@dataclass
class _Pass:
    """What the streaming loop needs besides the data."""
    device: torch.device
    key_scale: float
    fusion: str
    interval: int
    keyframe_only: bool
    tc: dict                   # {"refresh": TemporalConsistency, "propagated": TemporalConsistency}
    vc: np.ndarray | None      # float64 clips × len(VC_WINDOWS), each clip's VC_n; None: no mVC (not dense)
    ignore_index: int


def _stream(net, loader, run: _Pass, bar) -> None:
    """Stream every item of ``loader`` through ``net`` under the fixed schedule, accumulating into ``run``."""
    logits = lowres = labels = vc = None
    clip = -1
    for item in loader:
        if item["t"] == 0:
            _finish_vc(run, clip, vc)
            clip, vc = item["clip"], StreamingVC(VC_WINDOWS, run.ignore_index) if run.vc is not None else None
        frame = item["frame"].to(run.device)[None].float()           # 1×3×H×W RGB 0–255
        key = item["t"] % run.interval == 0
        cur_lowres = None if run.keyframe_only else net.lowres_bgr(frame)
        logits = (net.keyframe(frame, run.key_scale) if key
                  else net.propagate(logits, lowres, cur_lowres, run.fusion))
        lowres, prev_labels = cur_lowres, labels
        labels = logits_to_labels(logits, tuple(frame.shape[-2:]))[0].cpu().numpy()
        if item["t"] > 0:
            run.tc[PARTS[0] if key else PARTS[1]].add(prev_labels, labels, item["flow"], item["valid"])
        if vc is not None:
            gt = item["label"]
            pred = labels if gt.shape == labels.shape else logits_to_labels(logits, gt.shape)[0].cpu().numpy()
            vc.add(pred, gt)
        bar.update(1)
    _finish_vc(run, clip, vc)


def _finish_vc(run: _Pass, clip: int, vc: StreamingVC | None) -> None:
    if vc is not None:
        run.vc[clip] = [vc.value(n) for n in VC_WINDOWS]


def _tc_fields(tc: TemporalConsistency) -> list[np.ndarray]:
    return [tc.cm.ravel(), tc.cm_unmasked.ravel(), np.array([tc.scored, tc.excluded, tc.pairs], np.int64)]


def all_reduce_consistency(parts: dict[str, TemporalConsistency], vc: np.ndarray) -> None:
    """Sum the TC accumulators and the per-clip VC table over all ranks in place, in one int64 all-reduce.

    Each clip's VC is written by the one rank that streamed it (the others hold +0.0, all-zero bits), so
    summing the float64 bit patterns as int64 reproduces every value exactly, NaN included.
    """
    packed = torch.from_numpy(np.concatenate([f for p in PARTS for f in _tc_fields(parts[p])]
                                             + [np.ascontiguousarray(vc, np.float64).view(np.int64).ravel()]))
    dist.all_reduce_sum(packed)
    flat, c = packed.numpy(), parts[PARTS[0]].num_classes
    for p in PARTS:
        tc = parts[p]
        tc.cm, tc.cm_unmasked = flat[:c * c].reshape(c, c).copy(), flat[c * c:2 * c * c].reshape(c, c).copy()
        tc.scored, tc.excluded, tc.pairs = (int(v) for v in flat[2 * c * c:2 * c * c + 3])
        flat = flat[2 * c * c + 3:]
    vc[...] = flat.copy().view(np.float64).reshape(vc.shape)


def _finite(x: float) -> float | None:
    return None if x != x else float(x)


def _tc_figure(tc: TemporalConsistency) -> dict:
    r = tc.result()
    return {"miou": _finite(r["miou"]), "miou_unmasked": _finite(r["miou_unmasked"]),
            "excluded_fraction": _finite(r["excluded_fraction"]), "pairs": r["pairs"]}


def _pooled(parts: dict[str, TemporalConsistency]) -> TemporalConsistency:
    both = TemporalConsistency(parts[PARTS[0]].num_classes, parts[PARTS[0]].ignore_index)
    for tc in parts.values():
        both.cm += tc.cm
        both.cm_unmasked += tc.cm_unmasked
        both.scored, both.excluded, both.pairs = both.scored + tc.scored, both.excluded + tc.excluded, \
            both.pairs + tc.pairs
    return both


def _results(run: _Pass, clips: list[WholeClip], source: str) -> dict:
    tc = {**_tc_figure(_pooled(run.tc)), "flow": source, "frames": sum(len(c) for c in clips), "snippets": len(clips),
          **{p: (_tc_figure(run.tc[p]) if run.tc[p].pairs else None) for p in PARTS}}
    out = {"key_interval": run.interval, "temporal_consistency": tc}
    if run.vc is not None:
        for j, n in enumerate(VC_WINDOWS):
            out[f"mvc{n}"] = _finite(mean_video_consistency(run.vc[:, j].tolist()))
    return out


def _as_is(item: dict) -> dict:
    return item   # no conversion: numpy arrays and None stay as the dataset made them


def evaluate_consistency(net: PropagationModel, cfg: Config, preset: DatasetPreset, device, *, key_scale: float,
                         fusion: str = "gsv", keyframe_only: bool = False, progress: bool = True,
                         purpose: str = "evaluate") -> dict:
    """The whole-clip pass (module docstring) of ``net`` (a GSVNet or its ONNX export on ONNX Runtime).

    Collective in distributed runs. Returns what metrics.json gains (docs/evaluation.md#outputs), identical on
    every rank: {"key_interval": l of the schedule (1 with keyframe_only), "temporal_consistency": {"miou",
    "miou_unmasked", "excluded_fraction", "pairs" (all pairs pooled), "flow", "frames" (frames streamed),
    "snippets" (clips), "refresh", "propagated" (each {"miou", "miou_unmasked", "excluded_fraction",
    "pairs"}, None when it has no pairs)}}, plus "mvc8" and "mvc16" (percent, None where no clip has a
    scored window) only when every clip is labelled on every frame.
    """
    clips = consistency_clips(cfg, preset, purpose)
    dense = all(c.dense for c in clips)
    source, root, split = flow_source(preset), data_root(cfg, preset), eval_split(preset, purpose)
    shard = dist.shard_indices(len(clips), dist.rank(), dist.world_size())
    frames = ClipFrames(clips, shard, source, root, split, with_labels=dense)
    loader = DataLoader(frames, batch_size=None, shuffle=False, num_workers=cfg.num_worker, collate_fn=_as_is)
    parts = {p: TemporalConsistency(preset.num_classes, preset.ignore_index) for p in PARTS}
    vc = np.zeros((len(clips), len(VC_WINDOWS)), np.float64)     # +0.0 bits: see all_reduce_consistency
    interval = 1 if keyframe_only else int(cfg.key_interval)
    run = _Pass(torch.device(device), key_scale, fusion, interval, keyframe_only, parts, vc if dense else None,
                preset.ignore_index)
    bar = tqdm(total=len(frames), desc=f"consistency ({source} flow, l={interval})", unit="frame",
               dynamic_ncols=True, disable=not (progress and dist.is_main()))
    try:
        with net.evaluating(), dist.fail_together("consistency pass"), torch.inference_mode():
            _stream(net, loader, run, bar)
    finally:
        bar.close()
    all_reduce_consistency(parts, vc)
    return _results(run, clips, source)
