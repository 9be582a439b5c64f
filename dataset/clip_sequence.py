"""Training/evaluation samples from per-clip frame lists: the shared core of the folder and VSPW loaders.

A dataset of this kind is a list of :class:`Clip` (every frame of a clip in time order, the label file of
each frame or None; the same fields as ``dataset.whole_clips.WholeClip``, which the whole-clip pass of
``--evaluate`` builds from it). A sample for distance k is a frame and its k predecessors in
the same clip (never across clips):

- ``labelled_only=True`` (training, evaluation): every labelled frame with at least k predecessors;
- ``labelled_only=False`` (label-free training): every frame with at least k predecessors, whether it has
  a label or not.

Label files are PNGs holding one value per pixel: a single-channel image, or an indexed-colour (palette)
PNG whose palette indices are the values (as many annotation tools save them). A clip's ``read_label``
maps the values to class indices or the ignore index and refuses values it does not know, naming the file.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dataset.cityscapes import check_label_size, stack_frames
from dataset.video import read_label, read_rgb

NOT_ALLOWED = -1  # entry of a value table: this PNG value is an error


@dataclass(frozen=True)
class Clip:
    """Every frame of one clip: ``frame_paths[t]`` is frame t (time order), ``label_paths[t]`` its label file
    or None; ``read_label(path)`` -> uint8 H×W class indices (a module-level function or a partial of one,
    so that it travels to DataLoader workers)."""
    name: str
    frame_paths: tuple[Path, ...]
    label_paths: tuple[Path | None, ...]
    read_label: Callable[[Path], np.ndarray]

    def __len__(self) -> int:
        return len(self.frame_paths)


def value_table(mapping: dict[int, int]) -> np.ndarray:
    """int16 (256,) lookup table: PNG value -> class index or ignore index; NOT_ALLOWED elsewhere."""
    table = np.full(256, NOT_ALLOWED, dtype=np.int16)
    for value, target in mapping.items():
        table[int(value)] = int(target)
    table.flags.writeable = False
    return table


def read_values(path: str | Path) -> np.ndarray:
    """The stored values of a label PNG as uint8 H×W: palette indices for an indexed-colour PNG, the grey
    values otherwise (an RGB file with equal channels is accepted, a real colour image is refused)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode in ("P", "L"):
                return np.asarray(image, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"label file not found: {path}") from None
    except OSError as err:
        raise ValueError(f"cannot decode label file {path}: {err}") from None
    return read_label(path)  # 16-bit, RGB with equal channels, ...: the generic reader and its checks


def present_values(path: str | Path) -> np.ndarray:
    """The distinct values of a label PNG (sorted uint8 array)."""
    return np.flatnonzero(np.bincount(read_values(path).ravel(), minlength=256)).astype(np.uint8)


def mapped_values(path: Path, table: np.ndarray, allowed: str) -> np.ndarray:
    """uint8 H×W class indices (or the ignore index) of the label PNG at ``path`` through ``table``
    (from value_table); a value the table does not allow is a ValueError naming the file, the values and
    ``allowed`` (what the values may be)."""
    values = read_values(path)
    mapped = table[values]
    if (mapped == NOT_ALLOWED).any():
        bad = sorted(int(v) for v in np.unique(values[mapped == NOT_ALLOWED]))
        raise ValueError(f"label file {path} holds value(s) {bad} that are not {allowed}")
    return mapped.astype(np.uint8)


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file from its header (no decoding)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except OSError as err:
        raise ValueError(f"cannot read the size of image file {path}: {err}") from None
    return height, width


def smallest_frame_size(clips: Sequence[Clip]) -> tuple[int, int] | None:
    """(smallest H, smallest W) over the clips (first frame of each: a clip's frames share one size),
    or None without clips."""
    sizes = [image_size(clip.frame_paths[0]) for clip in clips]
    return (min(h for h, _ in sizes), min(w for _, w in sizes)) if sizes else None


class ClipSequence(Dataset):
    """Samples of ``distance + 1`` frames ending at a frame of a clip (module docstring).

    Sample dict (then ``transform``):

    - ``"frames"``: uint8 T×3×H×W RGB, T = distance + 1, the keyframe (frame t−distance) first;
    - ``"label"``: int64 H×W class indices of the last frame, ``ignore_index`` for void (only if
      ``with_label``; a frame without a label file, possible with ``labelled_only=False``, gets a label
      that is ``ignore_index`` everywhere);
    - ``"has_label"``: bool, whether the last frame has a label file (only if ``with_label``);
    - ``"name"``: ``"<clip>/<frame stem>"`` of the last frame (unique in the split);
    - ``"clip"``: the clip name; ``"frame_index"``: int, the last frame's index in its clip (0-based);
    - ``"split"``: the split.

    ``clip_paths(i)`` gives the frame paths of sample i (keyframe first), ``label_path(i)`` its label file
    or None.
    """

    def __init__(self, clips: Sequence[Clip], split: str, distance: int, *, ignore_index: int = 255,
                 transform=None, with_label: bool = True, labelled_only: bool = True, where: str = ""):
        if distance < 0:
            raise ValueError(f"distance must be >= 0 (frames t-distance..t), got {distance}")
        self.clips, self.split, self.distance = list(clips), split, int(distance)
        self.ignore_index, self.transform = int(ignore_index), transform
        self.with_label, self.labelled_only = with_label, labelled_only
        self.samples = [(c, t) for c, clip in enumerate(self.clips) for t in range(self.distance, len(clip))
                        if not labelled_only or clip.label_paths[t] is not None]
        if not self.samples:
            what = "labelled frames" if labelled_only else "frames"
            raise FileNotFoundError(f"split {split!r} of {where or 'the dataset'} has no {what} with {self.distance} "
                                    f"preceding frames in the same clip ({len(self.clips)} clips)")

    def __len__(self) -> int:
        return len(self.samples)

    def clip_paths(self, index: int) -> list[Path]:
        """Frame paths of sample ``index``, keyframe (t−distance) first."""
        c, t = self.samples[index]
        return list(self.clips[c].frame_paths[t - self.distance: t + 1])

    def label_path(self, index: int) -> Path | None:
        c, t = self.samples[index]
        return self.clips[c].label_paths[t]

    def sample_name(self, index: int) -> str:
        c, t = self.samples[index]
        return f"{self.clips[c].name}/{self.clips[c].frame_paths[t].stem}"

    def __getitem__(self, index: int) -> dict:
        c, t = self.samples[index]
        clip, paths = self.clips[c], self.clip_paths(index)
        frames = stack_frames([read_rgb(p) for p in paths], paths)
        sample = {"frames": frames, "name": self.sample_name(index), "clip": clip.name, "frame_index": t,
                  "split": self.split}
        if self.with_label:
            path = clip.label_paths[t]
            if path is None:
                label = np.full(tuple(frames.shape[-2:]), self.ignore_index, dtype=np.uint8)
            else:
                label = clip.read_label(path)
                check_label_size(label, frames, path)
            sample["label"] = torch.from_numpy(label.astype(np.int64))
            sample["has_label"] = path is not None
        return self.transform(sample) if self.transform is not None else sample
