"""Every frame of the synthetic snippets as a training sample (``--dense-labels 1``, synthetic only).

Real Cityscapes annotates one frame per snippet; the synthetic generator also writes the labels of
every frame (extras/, see dataset.synthetic). Training on all of them gives ~26x more clips from the
same snippets, which is what lets `make demo` train from scratch in minutes. Evaluation never uses
this: it scores the annotated frames only, as the protocol says.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dataset.cityscapes import CityscapesSequence, check_label_size, frame_name, parse_frame_name, stack_frames
from dataset.synthetic import extras_paths, read_marker
from dataset.video import read_label, read_rgb


class SyntheticDenseSequence(Dataset):
    """Clips frames t−k..t for every frame t >= k of every snippet; label = extras trainIds of frame t.

    Same sample dict as :class:`dataset.cityscapes.CityscapesSequence`.
    """

    def __init__(self, root, split: str, distance: int, transform=None):
        if read_marker(root) is None:
            raise FileNotFoundError(f"{root}: --dense-labels 1 needs a synthetic dataset (no synthetic.json; "
                                    "generate one with python -m dataset.synthetic)")
        self.root, self.split, self.distance, self.transform = Path(root), split, distance, transform
        annotated = CityscapesSequence(root, split, 0)
        self.clips: list[list[Path]] = []
        for name in annotated.names:
            frames = annotated.snippet_frames(name)
            self.clips += [frames[t - distance: t + 1] for t in range(distance, len(frames))]
        if not self.clips:
            raise FileNotFoundError(f"{root}: no synthetic snippets with {distance + 1} frames in split {split}")

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        paths = self.clips[index]
        frames = stack_frames([read_rgb(p) for p in paths], paths)
        name = frame_name(*parse_frame_name(paths[-1]))
        label_path = extras_paths(self.root, self.split, name)["train_ids"]
        if not label_path.is_file():
            raise FileNotFoundError(f"missing per-frame label {label_path} (synthetic extras of {name})")
        label = read_label(label_path)
        check_label_size(label, frames, label_path)
        sample = {"frames": frames, "name": name, "split": self.split,
                  "label": torch.from_numpy(label.astype(np.int64))}
        return self.transform(sample) if self.transform is not None else sample
