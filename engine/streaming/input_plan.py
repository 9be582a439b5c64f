"""What ``--input`` of ``--inference 1`` names, as snippets of frames (the predictor is reset before each):
a dataset split ('val' / 'test' / 'train', when no file of that name exists: one snippet per annotated run,
CamVid sequence or clip folder), else a video file, an image folder, a single image or a camera id
(``dataset.video.open_frames``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from config.config import Config
from config.dataset_preset import DatasetPreset
from dataset.video import open_frames, read_rgb
from engine.runs import data_root
from engine.streaming.video_job import Item

SPLITS = ("train", "val", "test")
DEFAULT_FPS = {"cityscapes": 17.0, "camvid": 30.0, "vspw": 15.0, "folder": 30.0}  # capture rates (folder: a guess)


@dataclass
class Snippet:
    """A run of consecutive frames; the predictor is reset before each one."""
    frames: Callable[[], Iterable[tuple[str, np.ndarray]]]  # yields (name, RGB uint8 H×W×3)
    length: int | None


@dataclass
class InputPlan:
    snippets: list[Snippet]
    fps: float                # of the overlay video
    live: bool                # a camera: runs until interrupted
    video_fps: float | None   # the source's own frame rate (None: image folder, dataset split, unknown)

    @property
    def total(self) -> int | None:
        lengths = [s.length for s in self.snippets]
        return None if any(n is None for n in lengths) else sum(lengths)

    def items(self) -> Iterator[Item]:
        """(name, frame, first frame of a snippet) for every frame, in order."""
        for snippet in self.snippets:
            for index, (name, frame) in enumerate(snippet.frames()):
                yield name, frame, index == 0


def _paths_snippet(paths: list[Path]) -> Snippet:
    return Snippet(lambda: ((p.stem, read_rgb(p)) for p in paths), len(paths))


def _consecutive_runs(paths: list[Path], number: Callable[[Path], int]) -> list[list[Path]]:
    """Split frame paths (sorted by number) where the frame numbers jump."""
    runs: list[list[Path]] = []
    for path in paths:
        if runs and number(path) == number(runs[-1][-1]) + 1:
            runs[-1].append(path)
        else:
            runs.append([path])
    return runs


def _cityscapes_snippets(root: str, split: str) -> list[Snippet]:
    """Every 30-frame snippet of the split, one per annotated frame (a long sequence such as
    frankfurt_000000 holds several; ``snippet_frames`` returns the run around each GT)."""
    from dataset.cityscapes import CityscapesSequence
    ds = CityscapesSequence(root, split, 0, with_label=False)
    return [_paths_snippet(ds.snippet_frames(name)) for name in ds.names]


def _camvid_snippets(root: str, split: str) -> list[Snippet]:
    """One snippet per sequence: every extracted frame from the split's first to its last labelled frame."""
    from dataset.camvid import CamVidSequence, split_name
    ds = CamVidSequence(root, split, 0, with_label=False, video_protocol=False)
    ranges: dict[tuple[str, str], list[int]] = {}
    for name in ds.names:
        seq, prefix, number = split_name(name)
        ranges.setdefault((seq, prefix), []).append(number)
    out = []
    for (seq, prefix), numbers in ranges.items():
        folder = Path(root) / "frames" / seq
        paths = sorted((p for p in folder.glob(f"{prefix}*.png")
                        if p.stem[len(prefix):].isdigit() and min(numbers) <= split_name(p.stem)[2] <= max(numbers)),
                       key=lambda p: split_name(p.stem)[2])
        if not paths:
            raise FileNotFoundError(f"no extracted frames {folder}/{prefix}*.png for the CamVid {split} split "
                                    "(extract them with python -m dataset.camvid_frames)")
        out += [_paths_snippet(run) for run in _consecutive_runs(paths, lambda p: split_name(p.stem)[2])]
    return out


def _clip_folder_snippets(preset: DatasetPreset, root: str, split: str) -> list[Snippet]:
    """One snippet per clip folder / VSPW video, its frames named ``<clip>/<frame stem>`` (stems repeat
    across clips)."""
    from dataset.whole_clips import whole_clips

    def frames(clip):
        return ((f"{clip.name}/{p.stem}", read_rgb(p)) for p in clip.frame_paths)
    return [Snippet(lambda clip=clip: frames(clip), len(clip)) for clip in whole_clips(preset, split, root)]


def plan_input(cfg: Config, preset: DatasetPreset) -> InputPlan:
    """--input as snippets: a dataset split name (when no such path exists), else a video file, an
    image folder, a single image or a camera id (``dataset.video.open_frames``)."""
    if cfg.input in SPLITS and not Path(cfg.input).exists():
        root = data_root(cfg, preset)
        if preset.kind in ("folder", "vspw"):
            snippets = _clip_folder_snippets(preset, root, cfg.input)
        else:
            snippets = (_camvid_snippets if preset.kind == "camvid" else _cityscapes_snippets)(root, cfg.input)
        return InputPlan(snippets, DEFAULT_FPS[preset.kind], live=False, video_fps=None)
    source = open_frames(cfg.input)
    fps = source.fps or DEFAULT_FPS[preset.kind]
    return InputPlan([Snippet(lambda: source, source.num_frames)], fps, live=source.kind == "camera",
                     video_fps=source.fps)
