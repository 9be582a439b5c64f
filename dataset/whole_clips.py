"""Whole clips of an evaluation split: every frame of each clip in order, with the label file of each frame.

The consistency pass of ``--evaluate 1`` (temporal consistency, mVC) streams whole clips under the fixed
keyframe schedule; this module says what a clip is for each dataset kind, so that a new loader plugs in by
adding one branch to :func:`whole_clips` and a builder returning :class:`WholeClip` objects:

- synthetic: every frame of each snippet of the split, labelled on every frame by the generator's
  per-frame train ids (``extras/``), falling back to the gtFine label on the annotated frame;
- Cityscapes: the 30-frame snippet of each annotated frame (GT−19 .. GT+10), labelled on that frame only;
- CamVid: each sequence of the split from its first to its last labelled frame (all 30 fps frames
  between, from ``frames/``), labelled on the labelled frames.
- folder, VSPW: every frame of each clip folder / video of the split, labelled where it has a mask
  (dataset/folder.py, dataset/vspw.py).

Clips may differ in frame size from one another; the frames of one clip share one size.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from dataset.build import CITYSCAPES_FRAMES_BEFORE_GT, require_synthetic
from dataset.video import read_label


@dataclass(frozen=True)
class WholeClip:
    """One clip: ``frame_paths[t]`` is frame t, ``label_paths[t]`` its label file or None.

    read_label: path -> uint8 H×W class indices (the ignore index for void); a module-level function or a
    functools.partial of one, so a clip can travel to DataLoader workers.
    """
    name: str
    frame_paths: tuple[Path, ...]
    label_paths: tuple[Path | None, ...]
    read_label: Callable[[Path], np.ndarray]

    def __post_init__(self):
        if not self.frame_paths:
            raise ValueError(f"clip {self.name}: no frames")
        if len(self.label_paths) != len(self.frame_paths):
            raise ValueError(f"clip {self.name}: {len(self.label_paths)} label entries for "
                             f"{len(self.frame_paths)} frames (expected one per frame, None if unlabelled)")

    def __len__(self) -> int:
        return len(self.frame_paths)

    @property
    def dense(self) -> bool:
        """True when every frame has a label (what mVC needs)."""
        return all(p is not None for p in self.label_paths)


def mapped_label(path: Path, table: np.ndarray) -> np.ndarray:
    """The label file at ``path`` through a uint8 (256,) lookup table (e.g. labelIds -> train ids)."""
    return table[read_label(path)]


def _synthetic_label(path: Path, table: np.ndarray) -> np.ndarray:
    """Generator train ids as they are; a gtFine labelIds file through ``table``."""
    return mapped_label(path, table) if path.name.endswith("_gtFine_labelIds.png") else read_label(path)


def cityscapes_clips(root, split: str, dataset_name: str = "Cityscapes", per_frame_labels: bool = False,
                     span: tuple[int, int] | None = None) -> list[WholeClip]:
    """The snippet of every annotated frame of ``split`` (the run of consecutive frames on disk around it, see
    CityscapesSequence.snippet_frames), named after the annotated frame. span (before, after): keep at most
    that many frames before and after the annotated one, so snippets whose frames touch stay apart.
    per_frame_labels: use the synthetic generator's per-frame train ids where they exist."""
    from dataset.cityscapes import LABEL_ID_TO_TRAIN_ID, CityscapesSequence, frame_name, parse_frame_name
    from dataset.synthetic import extras_paths
    annotated = CityscapesSequence(root, split, 0, with_label=True, dataset_name=dataset_name)
    clips = []
    for index, name in enumerate(annotated.names):
        frames = tuple(annotated.snippet_frames(name)) or tuple(annotated.clip_paths(index))
        if span is not None:
            gt = parse_frame_name(name)[2]
            frames = tuple(p for p in frames if -span[0] <= parse_frame_name(p)[2] - gt <= span[1])
        labels = []
        for path in frames:
            stem = frame_name(*parse_frame_name(path))
            dense = extras_paths(root, split, stem)["train_ids"] if per_frame_labels else None
            labels.append(dense if dense is not None and dense.is_file()
                          else annotated.label_path(name) if stem == name else None)
        reader = partial(_synthetic_label if per_frame_labels else mapped_label, table=LABEL_ID_TO_TRAIN_ID)
        clips.append(WholeClip(name, frames, tuple(labels), reader))
    return clips


def camvid_clips(root, split: str) -> list[WholeClip]:
    """Each CamVid sequence of ``split`` from its first to its last labelled frame (every frame number between,
    from ``frames/{seq}/``; a labelled frame missing there is taken from ``raw/``)."""
    from dataset.camvid import CAMVID_ID_TO_TRAIN_ID, CamVidSequence, split_name
    labelled = CamVidSequence(root, split, 0, with_label=True, video_protocol=False)
    by_prefix: dict[str, dict[int, str]] = {}
    for name in labelled.names:
        _, prefix, number = split_name(name)
        by_prefix.setdefault(prefix, {})[number] = name
    clips = []
    for prefix, named in by_prefix.items():
        frames, labels = [], []
        for number in range(min(named), max(named) + 1):
            name = named.get(number, f"{prefix}{number:05d}")
            path, raw = labelled.frame_path(name), Path(root) / "raw" / f"{name}.png"
            if not path.is_file() and number in named and raw.is_file():
                path = raw
            if not path.is_file():
                raise FileNotFoundError(f"missing frame {path} of the CamVid {split} sequence {split_name(name)[0]} "
                                        f"(frames {min(named)}..{max(named)}); extract the video frames with "
                                        "python -m dataset.camvid_frames")
            frames.append(path)
            labels.append(labelled.label_path(name) if number in named else None)
        clips.append(WholeClip(split_name(named[min(named)])[0], tuple(frames), tuple(labels),
                               partial(mapped_label, table=CAMVID_ID_TO_TRAIN_ID)))
    return clips


def whole_clips(preset, split: str, root: str | None = None) -> list[WholeClip]:
    """The whole clips of ``split`` for ``preset`` (a config.dataset_preset.DatasetPreset; root defaults to
    ``preset.data_path``), in a fixed order. One branch per dataset kind."""
    root = preset.data_path if root is None else root
    if preset.name == "synthetic":
        require_synthetic(root)
        return cityscapes_clips(root, split, preset.name, per_frame_labels=True)
    if preset.kind == "camvid":
        return camvid_clips(root, split)
    if preset.kind == "cityscapes":   # a real snippet: 30 frames, GT−19 .. GT+10
        return cityscapes_clips(root, split, preset.name, span=(CITYSCAPES_FRAMES_BEFORE_GT, 10))
    if preset.kind in ("folder", "vspw"):
        from dataset.folder import folder_whole_clips
        from dataset.vspw import vspw_clips
        clips = folder_whole_clips(root, split) if preset.kind == "folder" else vspw_clips(root, split)
        return [WholeClip(c.name, c.frame_paths, c.label_paths, c.read_label) for c in clips]
    raise ValueError(f"no whole clips for dataset {preset.name!r} (kind {preset.kind!r}); "
                     "dataset/whole_clips.py lists the kinds that have them")
