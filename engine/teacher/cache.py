"""The frozen keyframe net's outputs per frame, computed once and kept on disk (``--pseudo-labels 1``).

Label-free training and agreement scoring need the keyframe net's prediction on every target frame, and
those forwards cost more than the whole flow-net + GSV step. They never change while the keyframe net is
frozen, so one pass before the work (``fill_teacher_cache``) writes, per frame:

- ``<key>.png``: the teacher's labels at the frame's full resolution, uint8 class indices: the keyframe
  net at the cache's scale, its logits put on the 1/8 grid and upsampled (``GSVNet.keyframe`` then
  ``models.labels.logits_to_labels``), i.e. exactly the keyframe prediction that evaluation scores;
- ``<key>.pt``: its raw logits (``GSVNet.segnet_logits``, the keyframe net's own output stride) as float16,
  the soft target of the distillation term.

Both in float32 arithmetic without autocast, as evaluation runs. Layout:
``<run folder>/teacher_cache/<weights fingerprint>/scale_<s>/<frame stem>_<hash>.png|.pt``, where the hash
covers the frame's absolute path, file size and modification time: a cache entry is keyed by frame path,
key scale and the keyframe net's weights fingerprint (``weights_fingerprint``), and an edited frame file
or other weights are computed afresh. Files are written atomically, so an interrupted pass leaves only
whole entries and a rerun computes the rest; several ranks may write the same entry (same bytes).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dataset.video import read_rgb
from engine import distributed as dist
from models.labels import logits_to_labels
from models.gsvnet import lowres_size, normalisation_dict
from models.resize import resize
from utils.checkpoint import atomic_write, load_file, save_atomic

TEACHER_DIR = "teacher_cache"  # inside the run folder


def weights_fingerprint(model) -> str:
    """sha256 hex of what the teacher's output depends on: the keyframe-net spec, its input normalisation
    and every tensor of its state_dict (names, dtypes, shapes, bytes; memory layout does not matter)."""
    h = hashlib.sha256(model.segnet_name.encode())
    h.update(json.dumps(normalisation_dict(model.keyframe_norm), sort_keys=True).encode())
    for name, tensor in sorted(model.segnet.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class TeacherCache:
    """Teacher labels and logits of frames, one folder per (weights fingerprint, key scale)."""

    def __init__(self, root: str | Path, fingerprint: str, scale: float):
        self.scale = float(scale)
        self.folder = Path(root) / fingerprint[:16] / f"scale_{self.scale:g}"

    def _stem(self, frame: str | Path) -> Path:
        path = Path(frame).resolve()
        stat = path.stat()
        digest = hashlib.sha1(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        return self.folder / f"{path.stem}_{digest}"

    def label_file(self, frame: str | Path) -> Path:
        return self._stem(frame).with_suffix(".png")

    def logits_file(self, frame: str | Path) -> Path:
        return self._stem(frame).with_suffix(".pt")

    def has(self, frame: str | Path) -> bool:
        stem = self._stem(frame)
        return stem.with_suffix(".png").is_file() and stem.with_suffix(".pt").is_file()

    def write(self, frame: str | Path, labels: np.ndarray, logits: Tensor) -> None:
        """labels: uint8 H×W (the frame's size); logits: C×h×w (stored as float16). The label file goes
        last, so ``has`` sees an entry only when both are there."""
        stem = self._stem(frame)
        save_atomic(logits.detach().to("cpu", torch.float16).contiguous(), stem.with_suffix(".pt"))
        ok, png = cv2.imencode(".png", np.ascontiguousarray(labels, dtype=np.uint8))
        if not ok:
            raise OSError(f"cannot encode the teacher labels of {frame} as PNG")
        atomic_write(stem.with_suffix(".png"), lambda f: f.write(png.tobytes()))

    def read_labels(self, frame: str | Path) -> np.ndarray:
        """uint8 H×W teacher labels of ``frame``."""
        path = self.label_file(frame)
        labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if labels is None:
            raise FileNotFoundError(f"teacher labels {path} of frame {frame} are missing or unreadable (the teacher "
                                    "pass fills the cache before training/evaluation; delete the folder to redo it)")
        return labels

    def read_logits(self, frame: str | Path) -> Tensor:
        """float16 C×h×w raw teacher logits of ``frame``."""
        return load_file(self.logits_file(frame))


class FrameFiles(Dataset):
    """Frames by path for the teacher pass: item = (uint8 3×H×W RGB, path string)."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, str]:
        return torch.from_numpy(read_rgb(self.paths[i])).permute(2, 0, 1).contiguous(), str(self.paths[i])


def _by_size(items: list[tuple[Tensor, str]]) -> list[tuple[Tensor, list[str]]]:
    """Group a batch by frame size: [(uint8 B×3×H×W, paths)]."""
    groups: dict[tuple, list] = {}
    for frame, path in items:
        groups.setdefault(tuple(frame.shape), []).append((frame, path))
    return [(torch.stack([f for f, _ in g]), [p for _, p in g]) for g in groups.values()]


@torch.no_grad()
def teacher_outputs(model, frames: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """(uint8 B×H×W labels at the frames' size, raw B×C×h×w logits) of the keyframe net on B×3×H×W RGB
    0–255 frames at input scale ``scale``: the prediction evaluation scores for a keyframe."""
    raw = model.segnet_logits(frames.float(), scale)
    on_grid = resize(raw.float(), lowres_size(*frames.shape[-2:]))  # = GSVNet.keyframe
    return logits_to_labels(on_grid, tuple(frames.shape[-2:])), raw


def fill_teacher_cache(model, cache: TeacherCache, frames: Iterable[str | Path], *, device: torch.device,
                       batch_size: int = 1, num_workers: int = 0, progress: bool = True) -> int:
    """Compute the entries of ``frames`` that ``cache`` lacks (each frame once, however often listed), each
    rank a contiguous block of them, then wait for all ranks. Collective when distributed. Returns the
    number of frames computed by all ranks together."""
    unique = list(dict.fromkeys(Path(p) for p in frames))
    missing = [p for p in unique if not cache.has(p)]
    dist.barrier()  # every rank has its list before any rank writes: the lists agree, so do the blocks
    mine = [missing[i] for i in dist.shard_indices(len(missing), dist.rank(), dist.world_size())]
    loader = DataLoader(FrameFiles(mine), batch_size=max(1, batch_size), shuffle=False, num_workers=num_workers,
                        collate_fn=_by_size)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(mine), desc=f"teacher pass (keyframe net at scale {cache.scale:g})", unit="frame",
               dynamic_ncols=True, disable=not (progress and dist.is_main() and mine))
    try:
        with dist.fail_together("teacher pass"):
            for groups in loader:
                for batch, paths in groups:
                    labels, raw = teacher_outputs(model, batch.to(device), cache.scale)
                    for path, lab, logit in zip(paths, labels.cpu().numpy(), raw):
                        cache.write(path, lab, logit)
                    bar.update(len(paths))
    finally:
        bar.close()
        model.train(was_training)
    dist.barrier()
    return len(missing)
