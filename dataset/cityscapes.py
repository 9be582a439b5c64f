"""Cityscapes sequence clips in the official on-disk layout.

Layout under ``root``::

    leftImg8bit_sequence/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png
                                          (30-frame snippets)
    leftImg8bit/{split}/{city}/...        (annotated frames only; enough for distance 0)
    gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png

A sample for distance k holds the k+1 frames GT−k … GT; the keyframe is frames[0], the label
belongs to frames[-1]. The annotated frame number is parsed from the file name: it is 19 for
most snippets but not for the long sequences (e.g. frankfurt_000000_000294).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dataset.video import read_label, read_rgb

IGNORE_INDEX = 255

# labelIds of the 19 evaluated classes, in trainId order (road=7 → 0, …, bicycle=33 → 18).
EVAL_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)


def _label_to_train_table() -> np.ndarray:
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    table[list(EVAL_LABEL_IDS)] = np.arange(len(EVAL_LABEL_IDS), dtype=np.uint8)
    table.flags.writeable = False
    return table


def _train_to_label_table() -> np.ndarray:
    # Unused train ids (incl. 255) map to labelId 0 "unlabeled", which cityscapesScripts ignores.
    table = np.zeros(256, dtype=np.uint8)
    table[: len(EVAL_LABEL_IDS)] = EVAL_LABEL_IDS
    table.flags.writeable = False
    return table


LABEL_ID_TO_TRAIN_ID: np.ndarray = _label_to_train_table()   # uint8 (256,), 255 = ignore
TRAIN_ID_TO_LABEL_ID: np.ndarray = _train_to_label_table()   # uint8 (256,), for result PNGs

_NAME_RE = re.compile(r"^(?P<city>.+?)_(?P<seq>\d+)_(?P<frame>\d+)(?:_[A-Za-z].*)?$")


def parse_frame_name(path_or_name: str | Path) -> tuple[str, int, int]:
    """``".../frankfurt_000000_000294_leftImg8bit.png"`` -> ``("frankfurt", 0, 294)``."""
    stem = Path(path_or_name).name.split(".")[0]
    match = _NAME_RE.match(stem)
    if match is None:
        raise ValueError(f"not a Cityscapes frame name: {path_or_name!r} "
                         "(expected {city}_{seq:06d}_{frame:06d}[_suffix])")
    return match["city"], int(match["seq"]), int(match["frame"])


def frame_name(city: str, seq: int, frame: int) -> str:
    return f"{city}_{seq:06d}_{frame:06d}"


def clip_frame_names(name: str, distance: int) -> list[str]:
    """Names of the frames of a clip, keyframe first: GT−distance … GT."""
    city, seq, frame = parse_frame_name(name)
    return [frame_name(city, seq, f) for f in range(frame - distance, frame + 1)]


def labels_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """labelIds (uint8 H×W) -> trainIds (uint8 H×W, 255 = ignore)."""
    return LABEL_ID_TO_TRAIN_ID[label_ids]


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """trainIds (integer H×W, 0..18) -> labelIds uint8, as cityscapesScripts expects."""
    return TRAIN_ID_TO_LABEL_ID[np.asarray(train_ids).astype(np.int64) & 255]


def stack_frames(frames: list[np.ndarray], paths: list[Path]) -> torch.Tensor:
    """List of RGB H×W×3 uint8 -> uint8 tensor T×3×H×W; all frames must share one size."""
    for frame, path in zip(frames, paths):
        if frame.shape != frames[-1].shape:
            raise ValueError(f"frame {path} has size {frame.shape[:2]}, but the clip's "
                             f"annotated frame {paths[-1]} has size {frames[-1].shape[:2]}")
    array = np.stack(frames)  # T×H×W×3
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def check_label_size(label: np.ndarray, frames: torch.Tensor, path: Path) -> None:
    if tuple(label.shape) != tuple(frames.shape[-2:]):
        raise ValueError(f"label {path} has size {tuple(label.shape)} (H, W) but the frames "
                         f"have size {tuple(frames.shape[-2:])}")


class CityscapesSequence(Dataset):
    """Clips of ``distance + 1`` frames ending at each annotated frame of a split.

    Sample: ``{"frames": uint8 T×3×H×W RGB, "label": int64 H×W trainIds (only if with_label),
    "name": "city_seq_frame" of the annotated frame, "split": split}``, then ``transform``.
    """

    def __init__(self, root, split: str, distance: int, transform=None, with_label: bool = True,
                 dataset_name: str = "Cityscapes"):
        if distance < 0:
            raise ValueError(f"distance must be >= 0 (frames GT-distance..GT), got {distance}")
        self.root, self.split, self.distance = Path(root), split, int(distance)
        self.transform, self.with_label = transform, with_label
        if not self.root.is_dir():
            raise FileNotFoundError(f"{dataset_name} root not found: {self.root} (expected "
                                    "leftImg8bit_sequence/ and gtFine/ inside it)")
        self.frame_dir = self._find_frame_dir()
        self.names = self._discover()

    def _find_frame_dir(self) -> Path:
        sequence_dir = self.root / "leftImg8bit_sequence" / self.split
        plain_dir = self.root / "leftImg8bit" / self.split
        if sequence_dir.is_dir():
            return sequence_dir
        if not plain_dir.is_dir():
            raise FileNotFoundError(f"split {self.split!r} has no frame folder: neither "
                                    f"{sequence_dir} nor {plain_dir} exists")
        if self.distance > 0:
            raise FileNotFoundError(
                f"distance {self.distance} needs the preceding video frames in {sequence_dir}, "
                f"which does not exist; {plain_dir} holds only the annotated frames "
                "(distance 0). Download leftImg8bit_sequence_trainvaltest.zip")
        return plain_dir

    def _discover(self) -> list[str]:
        gt_dir = self.root / "gtFine" / self.split
        if gt_dir.is_dir():
            files, search_dir = sorted(gt_dir.glob("*/*_gtFine_labelIds.png")), gt_dir
        elif self.with_label:
            raise FileNotFoundError(f"label folder not found: {gt_dir} (expected "
                                    "{city}/*_gtFine_labelIds.png; use with_label=False "
                                    "to run without labels)")
        else:  # inference without gtFine: every frame of leftImg8bit/{split} is a target
            search_dir = self.root / "leftImg8bit" / self.split
            files = sorted(search_dir.glob("*/*_leftImg8bit.png"))
        if not files:
            raise FileNotFoundError(f"no annotated frames found under {search_dir} "
                                    "(expected {city}/{city}_{seq}_{frame}_gtFine_labelIds.png)")
        return [frame_name(*parse_frame_name(f)) for f in files]

    def __len__(self) -> int:
        return len(self.names)

    def frame_path(self, city: str, seq: int, frame: int) -> Path:
        return self.frame_dir / city / f"{frame_name(city, seq, frame)}_leftImg8bit.png"

    def label_path(self, name: str) -> Path:
        city = parse_frame_name(name)[0]
        return self.root / "gtFine" / self.split / city / f"{name}_gtFine_labelIds.png"

    def clip_paths(self, index: int) -> list[Path]:
        """Frame paths of sample ``index``, keyframe (GT−distance) first."""
        city, seq, frame = parse_frame_name(self.names[index])
        return [self.frame_path(city, seq, f) for f in range(frame - self.distance, frame + 1)]

    def snippet_frames(self, name: str) -> list[Path]:
        """The frames on disk of the snippet that contains ``name``, in order: the run of consecutive
        frame numbers around it (long-sequence cities such as frankfurt hold several snippets under
        one sequence number, e.g. 000275..000304 and 000575..000604)."""
        city, seq, frame = parse_frame_name(name)
        files = (self.frame_dir / city).glob(f"{city}_{seq:06d}_*_leftImg8bit.png")
        by_number = {parse_frame_name(p)[2]: p for p in files}
        if frame not in by_number:
            return []
        first, last = frame, frame
        while first - 1 in by_number:
            first -= 1
        while last + 1 in by_number:
            last += 1
        return [by_number[f] for f in range(first, last + 1)]

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        paths = self.clip_paths(index)
        for offset, path in enumerate(paths):
            if not path.is_file():
                raise FileNotFoundError(
                    f"missing frame {path} (frame GT-{self.distance - offset} of the clip of "
                    f"{name} at distance {self.distance})")
        frames = stack_frames([read_rgb(p) for p in paths], paths)
        sample = {"frames": frames, "name": name, "split": self.split}
        if self.with_label:
            path = self.label_path(name)
            label = labels_to_train_ids(read_label(path))
            check_label_size(label, frames, path)
            sample["label"] = torch.from_numpy(label.astype(np.int64))
        return self.transform(sample) if self.transform is not None else sample
