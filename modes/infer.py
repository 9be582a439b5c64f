"""``--inference 1``: predict every frame of a video, image folder, camera or dataset split and dump it.

    python main.py --inference 1 --input drive.mp4 --resume 1 --key-interval 3
    python main.py --inference 1 --input val --dataset cityscapes --resume 1 --save-labelids 1

Frames stream through ``VideoPredictor`` (keyframe every ``--key-interval`` frames at ``--eval-scale``,
propagation with ``--fusion`` in between). Output folder (``--output``, else
logs/pred_img_res/{dataset}/{segnet}_{checkname}/{ResFolderName or time stamp}/)::

    color/{frame}.png       colour label map
    label/{frame}.png       train ids (uint8, one channel)
    labelIds/{frame}.png    Cityscapes labelIds (--save-labelids 1; Cityscapes-style presets only)
    overlay.mp4             the frames with the colour map blended over them

A dataset split ('val' / 'test' / 'train', when no file of that name exists) runs snippet by snippet
in frame order, resetting the predictor between snippets so each starts with a keyframe.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
from tqdm import tqdm

from config.config import Config
from config.dataset_preset import DatasetPreset
from dataset.cityscapes import train_ids_to_label_ids
from dataset.video import VideoWriter, open_frames, read_rgb
from engine.model_builder import build_model
from engine.runs import data_root, pred_dir, preset_of, resolve_resume, timestamp
from utils.device import resolve_device
from engine.predictor import VideoPredictor
from engine.save_results import commit_staged, discard_staged, staging_dir
from utils.visualize import colorize, overlay, save_label_png, save_png

SPLITS = ("train", "val", "test")
DEFAULT_FPS = {"cityscapes": 17.0, "camvid": 30.0}  # the datasets' capture rates
OVERLAY_ALPHA = 0.5


@dataclass
class Snippet:
    """A run of consecutive frames; the predictor is reset before each one."""
    frames: Callable[[], Iterable[tuple[str, np.ndarray]]]  # yields (name, RGB uint8 H×W×3)
    length: int | None


@dataclass
class InputPlan:
    snippets: list[Snippet]
    fps: float
    live: bool  # a camera: runs until interrupted


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


def plan_input(cfg: Config, preset: DatasetPreset) -> InputPlan:
    """--input as snippets: a dataset split name (when no such path exists), else a video file, an
    image folder, a single image or a camera id (``dataset.video.open_frames``)."""
    if cfg.input in SPLITS and not Path(cfg.input).exists():
        root = data_root(cfg, preset)
        make = _camvid_snippets if preset.kind == "camvid" else _cityscapes_snippets
        return InputPlan(make(root, cfg.input), DEFAULT_FPS[preset.kind], live=False)
    source = open_frames(cfg.input)
    fps = source.fps or DEFAULT_FPS[preset.kind]
    return InputPlan([Snippet(lambda: source, source.num_frames)], fps, live=source.kind == "camera")


class OutputWriter:
    """Writes one predicted frame's files into ``root`` (see the module docstring)."""

    def __init__(self, root: Path, preset: DatasetPreset, fps: float, save_labelids: bool):
        self.root, self.preset, self.save_labelids = root, preset, save_labelids
        self.video = VideoWriter(root / "overlay.mp4", fps=fps)
        self.frames = 0

    def write(self, name: str, frame: np.ndarray, labels: np.ndarray) -> None:
        save_png(self.root / "color" / f"{name}.png", colorize(labels, self.preset.palette))
        save_label_png(self.root / "label" / f"{name}.png", labels)
        if self.save_labelids:
            save_label_png(self.root / "labelIds" / f"{name}.png", train_ids_to_label_ids(labels))
        blended = overlay(frame, labels, self.preset.palette, OVERLAY_ALPHA)
        if self.video.size is not None and blended.shape[:2] != self.video.size:
            # a video has one size: later frames of another size are resized to the first one's
            blended = cv2.resize(blended, self.video.size[::-1], interpolation=cv2.INTER_LINEAR)
        self.video.write(blended)
        self.frames += 1

    def close(self) -> None:
        self.video.close()


def _frames(plan: InputPlan, predictor: VideoPredictor) -> Iterator[tuple[str, np.ndarray]]:
    for snippet in plan.snippets:
        predictor.reset()
        yield from snippet.frames()


def predict_all(plan: InputPlan, predictor: VideoPredictor, out: OutputWriter, progress: bool = True) -> int:
    """Run every frame of ``plan`` through ``predictor`` and write it; returns the number of frames.
    A camera stops cleanly on Ctrl-C."""
    total = None if any(s.length is None for s in plan.snippets) else sum(s.length for s in plan.snippets)
    bar = tqdm(total=total, desc="inference", unit="frame", dynamic_ncols=True, disable=not progress)
    try:
        for name, frame in _frames(plan, predictor):
            out.write(name, frame, predictor.step(frame).labels)
            bar.update(1)
    except KeyboardInterrupt:
        if not plan.live:
            raise
    finally:
        bar.close()
        out.close()
    return out.frames


def _report(dest: Path, frames: int, cfg: Config) -> str:
    lines = [f"wrote {frames} frames to {dest}:",
             f"  colour PNGs        {dest / 'color'}",
             f"  label PNGs (train ids) {dest / 'label'}"]
    if cfg.save_labelids:
        lines.append(f"  labelIds PNGs      {dest / 'labelIds'}")
    lines.append(f"  overlay video      {dest / 'overlay.mp4'}")
    return "\n".join(lines)


def _infer(cfg: Config) -> int:
    preset = preset_of(cfg)
    if cfg.save_labelids and preset.label_format != "labelIds":
        raise ValueError(f"--save-labelids 1: dataset {cfg.dataset} has no Cityscapes labelIds; "
                         "its label PNGs already hold train ids")
    device = resolve_device(cfg.device)
    plan = plan_input(cfg, preset)  # a missing input fails before the model loads
    resume = resolve_resume(cfg)
    if resume is None and cfg.key_interval > 1 and cfg.fusion != "copy":
        print("WARNING: no --resume given: the flow net and GSV module are RANDOMLY INITIALISED; "
              "non-keyframes are meaningless (pass --resume 1 or --resume PATH)", file=sys.stderr, flush=True)
    model, _ = build_model(cfg, preset, device, resume=resume)
    predictor = VideoPredictor(model, key_interval=cfg.key_interval, key_scale=cfg.eval_scale, device=device,
                               fusion=cfg.fusion)
    dest = Path(cfg.output) if cfg.output else pred_dir(cfg, cfg.ResFolderName or timestamp())
    staging = staging_dir(dest)
    discard_staged(staging)
    staging.mkdir(parents=True)
    try:
        frames = predict_all(plan, predictor, OutputWriter(staging, preset, plan.fps, cfg.save_labelids))
        if frames == 0:
            raise RuntimeError(f"--input {cfg.input}: no frame could be read")
    except BaseException:
        discard_staged(staging)
        raise
    commit_staged(staging, dest)
    print(_report(dest, frames, cfg))
    return 0


def run_inference(cfg: Config) -> int:
    """``--inference 1``. Returns the exit code: 0, or 1 with an error naming the problem
    (missing input/weights, corrupt image or checkpoint); nothing is left half-written."""
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # launched with torchrun: inference is single-process, rank 0 does all of it
    try:
        return _infer(cfg)
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
