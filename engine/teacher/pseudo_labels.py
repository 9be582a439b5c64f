"""Label-free training and agreement scoring (``--pseudo-labels 1``): the frozen keyframe net is the teacher.

Training: a sample is a frame and its k predecessors, labels never read: on clip folders (folder, VSPW) every
frame with k predecessors, labelled or not (a clip without ``mask/`` is fine); on the synthetic data with
``--dense-labels 1`` every frame of every snippet; elsewhere (synthetic, Cityscapes, CamVid) the annotated
frames' clips. The CE target of a sample is the teacher's labels of its last frame (the keyframe net at
``--key-scale`` on the full frame, as evaluation scores a keyframe), and the KL term's soft target the
teacher's logits of that frame. On whole frames (``--use-crop 0``) both come from the teacher cache
(engine/teacher/cache.py), computed once before the first epoch. With a random scale/crop/flip (``--use-crop
1``) they come from the keyframe net run on the augmented frame itself (``crop_view_targets``), the view the
frozen keyframe net has of the clip's keyframe in the same step; the cached labels, moved with the frames
like ground truth, then only mark the padding (ignore). ``crop_teacher`` cuts cached logits to a crop.

Evaluation: the same frames are scored (every frame with k predecessors on clip folders, the annotated
frames elsewhere) and the teacher's labels of the scored frame at the evaluated key scale replace the ground
truth, so the numbers are agreement with the keyframe net, not accuracy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

from config.config import Config
from config.dataset_preset import DatasetPreset
from dataset.build import build_dataset, check_distances
from dataset.transforms import ClipParams, ClipTransform
from engine import distributed as dist
from engine.runs import data_root, run_dir
from engine.teacher.cache import TEACHER_DIR, TeacherCache, fill_teacher_cache, teacher_outputs, weights_fingerprint

EVERY_FRAME_KINDS = ("folder", "vspw")  # datasets whose loader makes a sample of every frame (labelled or not)
TEACHER_STRIDE = 4  # cropped soft targets: one logit per 4×4 crop pixels (finer than the student's 1/8 grid)


def frame_sample_datasets(cfg: Config, preset: DatasetPreset, split: str, distances: list[int],
                          dense: bool = False, flag: str = "--multi-step") -> dict[int, Dataset]:
    """One dataset per distance k of the samples a label-free run uses (module docstring), un-augmented and
    without labels read (except --dense-labels 1 on the synthetic data, whose loader always reads them).
    flag: the option that asked for ``distances`` (named if the snippets are too short for them)."""
    root = data_root(cfg, preset)
    check_distances(preset, root, distances, flag)
    out: dict[int, Dataset] = {}
    for k in distances:
        if preset.kind in EVERY_FRAME_KINDS:
            out[k] = build_dataset(preset, split, k, root=root, with_label=False, labelled_only=False)
        elif dense:
            out[k] = build_dataset(preset, split, k, root=root, dense=True)
        else:
            out[k] = build_dataset(preset, split, k, root=root, with_label=False)
    return out


def last_frame_path(ds: Dataset, index: int) -> Path:
    """File of the last (scored / target) frame of sample ``index`` of a sequence dataset (or a Subset of one)."""
    if isinstance(ds, Subset):
        return last_frame_path(ds.dataset, ds.indices[index])
    if hasattr(ds, "clip_paths"):
        return Path(ds.clip_paths(index)[-1])
    return Path(ds.clips[index][-1])  # SyntheticDenseSequence: a list of frame paths per sample


def _crop_axis(out_len: int, crop_len: int, start: int, scaled: int, size: int, flip: bool) -> tuple[Tensor, Tensor]:
    """Along one axis: normalised source coordinates (grid_sample, align_corners=True) in the full frame of
    ``out_len`` samples spread over the crop with aligned corners, and which of them lie inside the scaled
    frame (not padding)."""
    c = torch.linspace(0, crop_len - 1, out_len, dtype=torch.float64)
    pos = start + (crop_len - 1 - c if flip else c)                                    # scaled-frame pixels
    src = ((pos + 0.5) * size / scaled - 0.5).clamp(0, size - 1)                       # frame pixels (centres)
    norm = 2 * src / (size - 1) - 1 if size > 1 else torch.zeros_like(src)
    return norm.float(), pos < scaled


def crop_teacher(logits: Tensor, frame_size: tuple[int, int], params: ClipParams,
                 crop_size: tuple[int, int]) -> Tensor:
    """Teacher logits C×h×w of a full H×W frame -> C×(crop_h // 4)×(crop_w // 4) logits of the crop ``params``
    cuts (dataset/transforms.py geometry: scale to ``params.scaled_size``, crop at (top, left), flip).

    The logits are read as the pipeline reads them (upsampled bilinearly with align_corners=True to the
    frame), sampled at the crop positions the output pixels stand for (aligned corners, as the loss
    upsamples them to the crop); positions in the padding get zero logits.
    """
    (height, width), (crop_h, crop_w) = frame_size, crop_size
    out_h, out_w = max(1, crop_h // TEACHER_STRIDE), max(1, crop_w // TEACHER_STRIDE)
    ys, rows_in = _crop_axis(out_h, crop_h, params.top, params.scaled_size[0], height, False)
    xs, cols_in = _crop_axis(out_w, crop_w, params.left, params.scaled_size[1], width, params.flip)
    grid = torch.stack([xs[None, :].expand(out_h, out_w), ys[:, None].expand(out_h, out_w)], dim=-1)  # h'×w'×2 (x, y)
    out = F.grid_sample(logits[None].float(), grid[None], mode="bilinear", padding_mode="border",
                        align_corners=True)[0]
    return out * (rows_in[:, None] & cols_in[None, :]).to(out.dtype)


class PseudoLabelled(Dataset):
    """A sequence dataset whose samples get the teacher's targets of their last frame from ``cache``:
    ``"label"`` (int64 H×W teacher labels, replacing any ground truth) and, with ``with_logits``,
    ``"teacher"`` (float32 C×h×w logits). ``transform`` (a ClipTransform or None) is applied here, with one
    draw for the frames and both targets; ``base`` must come without a transform."""

    def __init__(self, base: Dataset, cache: TeacherCache, transform: ClipTransform | None = None,
                 with_logits: bool = False):
        self.base, self.cache, self.transform, self.with_logits = base, cache, transform, with_logits

    def __len__(self) -> int:
        return len(self.base)

    def frame_path(self, index: int) -> Path:
        return last_frame_path(self.base, index)

    def __getitem__(self, index: int) -> dict:
        sample = self.base[index]
        frame, size = self.frame_path(index), tuple(sample["frames"].shape[-2:])
        labels = self.cache.read_labels(frame)
        if labels.shape != size:
            raise ValueError(f"teacher labels {self.cache.label_file(frame)} are {labels.shape[0]}x{labels.shape[1]}, "
                             f"the frame {frame} is {size[0]}x{size[1]}")
        out = {key: value for key, value in sample.items() if key not in ("label", "has_label")}
        out["label"] = torch.from_numpy(labels.astype(np.int64))
        teacher = self.cache.read_logits(frame).float() if self.with_logits else None
        if self.transform is not None:
            params = self.transform.sample_params(*size)
            out = self.transform.apply(out, params)
            if teacher is not None:
                teacher = crop_teacher(teacher, size, params, self.transform.crop_size)
        if teacher is not None:
            out["teacher"] = teacher
        return out


def crop_view_targets(model, last_frames: Tensor, cached_labels: Tensor, scale: float, ignore_index: int,
                      with_logits: bool) -> tuple[Tensor, Tensor | None]:
    """Training targets of augmented crops (``--use-crop 1``) from the keyframe net run on the crops themselves,
    as the frozen keyframe net sees the clip's keyframe in the same step: (int64 B×H×W labels, raw logits or
    None). Targets cut from the full frame's prediction disagree with the crop's own keyframe prediction (less
    context, another scale), and the fusion then learns to undo a difference that evaluation on whole frames
    never has: on the synthetic val split, 100 iterations with such targets left GSVNet below warp-only in
    agreement (k = 4: 44.8 vs 46.6), with targets of the crop itself above it (49.9 vs 49.4; whole frames
    without crops: 52.5 vs 52.0). ``cached_labels`` (the cached labels cropped with the frames) keep only
    their padding: ignore_index there."""
    labels, logits = teacher_outputs(model, last_frames, scale)
    labels = labels.long().masked_fill(cached_labels == ignore_index, ignore_index)
    return labels, (logits if with_logits else None)


def teacher_cache_of(cfg: Config, model, scale: float) -> TeacherCache:
    """The run's teacher cache for ``model``'s keyframe net at input scale ``scale``."""
    return TeacherCache(run_dir(cfg) / TEACHER_DIR, weights_fingerprint(model), scale)


def with_teacher_targets(model, cfg: Config, datasets: dict[int, Dataset], device: torch.device, *, scale: float,
                         transform: ClipTransform | None = None, with_logits: bool = False,
                         progress: bool = True) -> dict[int, PseudoLabelled]:
    """Fill the run's teacher cache for the last frame of every sample of ``datasets`` (once per frame, across
    distances and runs) and wrap each dataset in :class:`PseudoLabelled`. Collective when distributed."""
    net = getattr(model, "module", model)
    cache = teacher_cache_of(cfg, net, scale)
    frames = [last_frame_path(ds, i) for ds in datasets.values() for i in range(len(ds))]
    computed = fill_teacher_cache(net, cache, frames, device=device, progress=progress,
                                  batch_size=max(1, cfg.batch_size // dist.world_size()), num_workers=cfg.num_worker)
    if progress and dist.is_main():
        unique = len(set(frames))
        print(f"teacher (keyframe net at scale {scale:g}): {unique} frames, {computed} computed now, "
              f"{unique - computed} from the cache {cache.folder}")
    return {k: PseudoLabelled(ds, cache, transform, with_logits) for k, ds in datasets.items()}
