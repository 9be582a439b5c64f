"""Temporal consistency (TC) of ``--evaluate 1`` (utils/temporal_consistency.py for the definition).

For every evaluated annotated frame the snippet frames GT−d..GT (d = TC_DISTANCE = 4, or as many as the
snippets hold before GT) are streamed through the model as at inference: the keyframe net segments
frame GT−d, the next frames are propagated with the evaluated fusion (``--keyframe-only 1``: every frame
is a keyframe, the flicker baseline). Each frame's labels are taken at the frame's full resolution
(models.labels.logits_to_labels) and every pair (t−1, t), t = GT−d+1..GT, is scored with
``TemporalConsistency``. The flow that carries the labels of t−1 to t is

- ``"true"`` on the synthetic dataset: the generator's own backward flow and validity (exact);
- ``"dis"`` otherwise: OpenCV DIS on the full-resolution frames with the forward-backward check
  (utils.optical_flow), computed in the DataLoader workers once per frame pair of the run.

So the figure measures one keyframe interval of length d+1: the keyframe at GT−d and d propagated
frames. Compare methods scored with the same flow only (with DIS the ceiling is ~94, not 100).

Distributed: each rank scores its own contiguous block of snippets (``shard_indices``); the pooled TC
confusion matrices and pixel counts travel in one int64 all-reduce; every rank returns the same dict.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from config.config import Config
from config.dataset_preset import DatasetPreset
from dataset.build import build_dataset, max_distance
from dataset.cityscapes import clip_frame_names
from dataset.synthetic import extras_paths
from engine import distributed as dist
from engine.evaluation import clip_logits, eval_split
from engine.runs import data_root
from models.labels import logits_to_labels
from utils.optical_flow import DisFlowCache
from utils.temporal_consistency import TemporalConsistency

TC_DISTANCE = 4  # frames before GT in each scored snippet: GT−4..GT, 4 pairs


def tc_enabled(cfg: Config) -> bool:
    """--temporal-consistency: 1 on, 0 off, -1 = the --evaluate default (on)."""
    return cfg.temporal_consistency != 0


def flow_source(preset: DatasetPreset) -> str:
    """"true" (the synthetic generator's flow) on the synthetic dataset, else "dis"."""
    return "true" if preset.name == "synthetic" else "dis"


def tc_distance(preset: DatasetPreset, root: str) -> int:
    """TC_DISTANCE, or fewer when the snippets hold fewer frames before the annotated one."""
    limit = max_distance(preset, root)
    return TC_DISTANCE if limit is None else max(0, min(TC_DISTANCE, limit))


class FlowClips(Dataset):
    """Clips GT−d..GT of an evaluation dataset plus the backward flow of each consecutive pair.

    Sample: {"frames": uint8 T×3×H×W, "flow": float32 (T−1)×H×W×2, "valid": bool (T−1)×H×W, "name"};
    flow[t−1] carries frame t−1 to frame t (convention: utils/temporal_consistency.py).
    """

    def __init__(self, base: Dataset, indices: list[int], source: str, root: str, split: str):
        self.base, self.indices, self.source, self.root, self.split = base, indices, source, root, split
        self._cache = DisFlowCache(max_pairs=2 * TC_DISTANCE)
        self._frame_ids: dict[str, int] = {}   # frame path -> int key of the DIS cache

    def __len__(self) -> int:
        return len(self.indices)

    def _true(self, name: str, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        flows, valids = [], []
        for stem in clip_frame_names(name, num_frames - 1)[1:]:
            paths = extras_paths(self.root, self.split, stem)
            valid = cv2.imread(str(paths["valid"]), cv2.IMREAD_UNCHANGED)
            if valid is None or not paths["flow"].is_file():
                raise FileNotFoundError(f"missing true flow {paths['flow']} or {paths['valid']} (synthetic "
                                        "extras, needed for the temporal consistency; --temporal-consistency 0 skips it)")
            flows.append(np.load(paths["flow"]).astype(np.float32))
            valids.append(valid > 0)
        return np.stack(flows), np.stack(valids)

    def _dis(self, index: int, frames: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        rgb = frames.permute(0, 2, 3, 1).numpy()                      # T×H×W×3
        ids = [self._frame_ids.setdefault(str(p), len(self._frame_ids)) for p in self.base.clip_paths(index)]
        pairs = [self._cache.get(ids[t - 1], ids[t], rgb[t - 1], rgb[t]) for t in range(1, len(rgb))]
        return np.stack([f for f, _ in pairs]), np.stack([v for _, v in pairs])

    def __getitem__(self, i: int) -> dict:
        index = self.indices[i]
        sample = self.base[index]
        frames = sample["frames"]
        flow, valid = (self._true(sample["name"], frames.shape[0]) if self.source == "true"
                       else self._dis(index, frames))
        return {"frames": frames, "flow": flow, "valid": valid, "name": sample["name"]}


def tc_dataset(cfg: Config, preset: DatasetPreset, purpose: str = "evaluate") -> tuple[Dataset, int]:
    """The labelled clip dataset of distance tc_distance of the evaluation split (the same annotated
    frames as the mIoU evaluation, cut to --max-eval-samples) and that distance."""
    root = data_root(cfg, preset)
    distance = tc_distance(preset, root)
    ds = build_dataset(preset, eval_split(preset, purpose), distance, root=root, with_label=True)
    return ds, distance


def _collate(samples: list[dict]) -> list[list[dict]]:
    """Group by frame size so each group is one batched forward."""
    groups: dict[tuple, list[dict]] = {}
    for s in samples:
        groups.setdefault(tuple(s["frames"].shape), []).append(s)
    return list(groups.values())


def snippet_labels(net, frames: torch.Tensor, key_scale: float, fusion: str, keyframe_only: bool) -> np.ndarray:
    """uint8 B×T×H×W full-resolution labels of every frame of B clips streamed from their first frame.

    frames: B×T×3×H×W float RGB 0–255 on the model's device; keyframe_only: every frame a keyframe.
    """
    if keyframe_only:
        seq = [net.keyframe(frames[:, t], key_scale) for t in range(frames.shape[1])]
    else:
        seq = clip_logits(net, frames, key_scale, fusion, every_frame=True)
    size = tuple(frames.shape[-2:])
    return torch.stack([logits_to_labels(x, size) for x in seq], 1).cpu().numpy()


def _score(net, loader, tc: TemporalConsistency, key_scale: float, fusion: str, keyframe_only: bool,
           device: torch.device, bar) -> None:
    for groups in loader:
        for group in groups:
            frames = torch.stack([s["frames"] for s in group]).to(device).float()
            labels = snippet_labels(net, frames, key_scale, fusion, keyframe_only)
            for b, s in enumerate(group):
                for t in range(1, labels.shape[1]):
                    tc.add(labels[b, t - 1], labels[b, t], s["flow"][t - 1], s["valid"][t - 1])
            bar.update(len(group))


def all_reduce_tc(tc: TemporalConsistency) -> TemporalConsistency:
    """Sum the accumulators of ``tc`` over all ranks in place (one all-reduce); returns it."""
    c = tc.num_classes
    packed = torch.from_numpy(np.concatenate([tc.cm.ravel(), tc.cm_unmasked.ravel(),
                                              np.array([tc.scored, tc.excluded, tc.pairs], np.int64)]))
    dist.all_reduce_sum(packed)
    flat = packed.numpy()
    tc.cm, tc.cm_unmasked = flat[:c * c].reshape(c, c).copy(), flat[c * c:2 * c * c].reshape(c, c).copy()
    tc.scored, tc.excluded, tc.pairs = (int(v) for v in flat[2 * c * c:])
    return tc


def _finite(x: float) -> float | None:
    return None if x != x else float(x)


def evaluate_temporal_consistency(model, cfg: Config, preset: DatasetPreset, device, *, key_scale: float,
                                  fusion: str = "gsv", keyframe_only: bool = False, progress: bool = True,
                                  purpose: str = "evaluate") -> dict:
    """TC of ``model`` (a GSVNet, possibly DDP-wrapped) on the evaluation split (module docstring).

    Collective in distributed runs. Returns {"miou", "miou_unmasked" (percent, None if undefined),
    "excluded_fraction" (0–1), "flow": "true" | "dis", "frames": frames per snippet (d + 1),
    "pairs": frame pairs scored, "snippets"}, identical on every rank.
    """
    net = getattr(model, "module", model)
    base, distance = tc_dataset(cfg, preset, purpose)
    n = len(base) if cfg.max_eval_samples <= 0 else min(len(base), cfg.max_eval_samples)
    shard = dist.shard_indices(n, dist.rank(), dist.world_size())
    source, root = flow_source(preset), data_root(cfg, preset)
    clips = FlowClips(base, shard, source, root, eval_split(preset, purpose))
    loader = DataLoader(clips, batch_size=max(1, cfg.batch_size // dist.world_size()), shuffle=False,
                        num_workers=cfg.num_worker, collate_fn=_collate)
    tc = TemporalConsistency(preset.num_classes, preset.ignore_index)
    device = torch.device(device)
    bar = tqdm(total=len(shard), desc=f"TC ({source} flow)", unit="clip", dynamic_ncols=True,
               disable=not (progress and dist.is_main()))
    was_training = net.training
    net.eval()
    try:
        with dist.fail_together("temporal consistency"), torch.inference_mode():
            if distance > 0:
                _score(net, loader, tc, key_scale, fusion, keyframe_only, device, bar)
    finally:
        bar.close()
        net.train(was_training)
    result = all_reduce_tc(tc).result()
    return {"miou": _finite(result["miou"]), "miou_unmasked": _finite(result["miou_unmasked"]),
            "excluded_fraction": _finite(result["excluded_fraction"]), "flow": source,
            "frames": distance + 1, "pairs": result["pairs"], "snippets": n}
