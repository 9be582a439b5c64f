"""CamVid video clips (11 classes, SegNet order) with label-aligned 30 fps frames.

Layout under ``root``::

    frames/{seq}/{name}.png      every video frame, named like the labels (dataset.camvid_frames)
    label_id/{name}_L.png        ids 0..10 (SegNet order), anything else is void -> 255
    raw/{name}.png               optional: the labelled frames themselves (used for the GT frame
                                 when frames/ lacks it)
    {train,val,test}.txt         optional official lists: "raw/{name}.png label_id/{name}_L.png"

Names: ``0001TP_006690``, ``0006R0_f00930``, ``0016E5_07959``, ``Seq05VD_f00030``. The frame
number is the last 5 digits; the predecessor at distance k keeps the prefix (including a
leading '0' or 'f') and zero-pads ``number − k`` to 5 digits (0001TP_010000 -> 0001TP_009999).

Without list files the split is derived from the names (367/101/233 on the full dataset):
0001TP < 008550 train, >= 008550 test; 0006R0 train; 0016E5 07959..08159 val, others train;
Seq05VD test. Video protocol (default): frames without a predecessor are dropped, so the test
split has the 232 frames of the official lists at every distance (Seq05VD_f00000 has none). With
``video_protocol=False`` only frames lacking the requested ``distance`` are dropped (233 at k=0).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dataset.cityscapes import IGNORE_INDEX, check_label_size, stack_frames
from dataset.video import read_label, read_rgb

SEQUENCES = ("0001TP", "0006R0", "0016E5", "Seq05VD")
SPLITS = ("train", "val", "test")
NUM_CLASSES = 11


def _id_table() -> np.ndarray:
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    table[:NUM_CLASSES] = np.arange(NUM_CLASSES, dtype=np.uint8)
    table.flags.writeable = False
    return table


CAMVID_ID_TO_TRAIN_ID: np.ndarray = _id_table()  # uint8 (256,): 0..10 kept, rest -> 255


def split_name(name: str) -> tuple[str, str, int]:
    """``"0006R0_f00930"`` -> ``("0006R0", "0006R0_f", 930)``: (sequence, prefix, number)."""
    sequence, _, rest = name.partition("_")
    digits = name[-5:]
    if not rest or len(rest) < 5 or not digits.isdigit():
        raise ValueError(f"not a CamVid frame name: {name!r} (expected e.g. 0001TP_006690, "
                         "0006R0_f00930, 0016E5_07959 or Seq05VD_f00030)")
    return sequence, name[:-5], int(digits)


def predecessor_name(name: str, k: int) -> str:
    """Name of the frame ``k`` frames before ``name`` (label-aligned naming)."""
    _, prefix, number = split_name(name)
    if number - k < 0:
        raise ValueError(f"{name} has no frame {k} frames earlier (its number is {number})")
    return f"{prefix}{number - k:05d}"


def split_of(name: str) -> str:
    """The standard 367/101/233 split a labelled CamVid frame belongs to."""
    sequence, _, number = split_name(name)
    if sequence == "0001TP":
        return "train" if number < 8550 else "test"
    if sequence == "0006R0":
        return "train"
    if sequence == "0016E5":
        return "val" if 7959 <= number <= 8159 else "train"
    if sequence == "Seq05VD":
        return "test"
    raise ValueError(f"unknown CamVid sequence {sequence!r} in {name!r}; expected one of "
                     f"{', '.join(SEQUENCES)}")


def read_list_file(path: Path) -> list[tuple[str, str | None]]:
    """(name, label path relative to the root or None) per line of an official list file."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) > 2 or not tokens[0].endswith(".png"):
            raise ValueError(f"{path}:{number}: expected 'raw/<name>.png label_id/<name>_L.png', "
                             f"got {line!r}")
        entries.append((Path(tokens[0]).stem, tokens[1] if len(tokens) == 2 else None))
    return entries


class CamVidSequence(Dataset):
    """Clips of ``distance + 1`` frames ending at each labelled CamVid frame of a split.

    Same sample contract as ``CityscapesSequence``: ``{"frames": uint8 T×3×H×W RGB,
    "label": int64 H×W (0..10, 255 void) if with_label, "name", "split"}``.
    """

    def __init__(self, root, split: str, distance: int, transform=None, with_label: bool = True,
                 video_protocol: bool = True):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if distance < 0:
            raise ValueError(f"distance must be >= 0 (frames GT-distance..GT), got {distance}")
        self.root, self.split, self.distance = Path(root), split, int(distance)
        self.transform, self.with_label = transform, with_label
        if not self.root.is_dir():
            raise FileNotFoundError(f"CamVid root not found: {self.root} (expected frames/ and "
                                    "label_id/ inside it)")
        history = max(self.distance, 1 if video_protocol else 0)
        self._label_files: dict[str, Path] = {}
        self.names = [n for n in self._split_names() if split_name(n)[2] >= history]
        if not self.names:
            raise FileNotFoundError(f"no labelled frames of split {split!r} with {history} "
                                    f"preceding frames under {self.root}")

    def _split_names(self) -> list[str]:
        list_file = self.root / f"{self.split}.txt"
        if list_file.is_file():
            entries = read_list_file(list_file)
            self._label_files = {name: self.root / label for name, label in entries if label}
            return [name for name, _ in entries]
        label_dir = self.root / "label_id"
        if not label_dir.is_dir():
            raise FileNotFoundError(f"neither the list file {list_file} nor the label folder "
                                    f"{label_dir} exists; cannot determine the {self.split} split")
        names = sorted(p.name[: -len("_L.png")] for p in label_dir.glob("*_L.png"))
        return [n for n in names if split_of(n) == self.split]

    def __len__(self) -> int:
        return len(self.names)

    def frame_path(self, name: str) -> Path:
        return self.root / "frames" / split_name(name)[0] / f"{name}.png"

    def label_path(self, name: str) -> Path:
        """The list file's label path if one was given, else ``label_id/{name}_L.png``."""
        return self._label_files.get(name, self.root / "label_id" / f"{name}_L.png")

    def clip_paths(self, index: int) -> list[Path]:
        """Frame paths of sample ``index``, keyframe (GT−distance) first."""
        name = self.names[index]
        paths = [self.frame_path(predecessor_name(name, k)) for k in range(self.distance, -1, -1)]
        raw = self.root / "raw" / f"{name}.png"
        if not paths[-1].is_file() and raw.is_file():
            paths[-1] = raw  # the labelled frame alone is enough when frames/ lacks it
        return paths

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        paths = self.clip_paths(index)
        for offset, path in enumerate(paths):
            if not path.is_file():
                raise FileNotFoundError(
                    f"missing frame {path} (frame GT-{self.distance - offset} of the clip of "
                    f"{name} at distance {self.distance}; extract the video frames with "
                    "python -m dataset.camvid_frames)")
        frames = stack_frames([read_rgb(p) for p in paths], paths)
        sample = {"frames": frames, "name": name, "split": self.split}
        if self.with_label:
            path = self.label_path(name)
            label = CAMVID_ID_TO_TRAIN_ID[read_label(path)]
            check_label_size(label, frames, path)
            sample["label"] = torch.from_numpy(label.astype(np.int64))
        return self.transform(sample) if self.transform is not None else sample
