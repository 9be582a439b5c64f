"""The pipelined video job behind ``--inference`` and ``--benchmark-video``: decode ahead →
``VideoPredictor.step`` → outputs written behind, with a timer per stage.

Threads (utils/background.py):

- a ``Prefetcher`` decodes up to PREFETCH_DEPTH frames ahead of the model;
- the main thread runs only the networks and the full-resolution labels (``step`` + ``.labels``): the
  labels kernel is numba-parallel on torch's OpenMP pool, so it stays on the thread that owns the pool;
- a ``WriterPool`` of WRITER_WORKERS threads (1 or 2) writes the outputs (``FrameWriter``), at most
  MAX_PENDING jobs queued. Per frame: one PNG job (the label map deflated once for the label PNG and
  the colour PNG, an indexed-colour PNG: utils.visualize.save_label_pngs), one for labelIds, and
  one overlay job (colour map → blend → mp4 frame; these run one at a time, in frame order).

Cost on a 2-core CPU: the networks keep both cores busy (torch's two OpenMP threads spin between
parallel regions), so the outputs cost about their own CPU time in wall time, however they are
scheduled (lower thread priorities, passive OpenMP waiting and one-thread non-keyframes were tried:
none helped); hence each output is made as cheap as it can be: one deflate for two PNGs, the colour
map only for the overlay video, a 256-entry table lookup.

Memory is bounded by the queues: at most PREFETCH_DEPTH + 2 + MAX_PENDING + WRITER_WORKERS frames
(with their labels) are alive at once, however long the video. A worker error stops the run with that error
at the next frame; Ctrl-C or any error leaves no published folder (staging, engine/evaluation/save_results.py).

Stage names of ``StageClock`` (seconds summed over the threads that ran them): decode (prefetch
thread); keyframe_net, propagation, labels (main thread); colour, overlay, png, encode (writers);
wait_decode, wait_writers, drain (the main thread idle: waiting for a decoded frame, for room in the
writer queue, and for the last outputs after the last frame).
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch
from tqdm import tqdm

from config.config import Config
from dataset.cityscapes import train_ids_to_label_ids
from dataset.video import VideoWriter
from engine.streaming.predictor import StepOutput, VideoPredictor
from engine.evaluation.save_results import SUMMARY_NAME, commit_staged, discard_staged, staging_dir
from models.gsvnet import GSVNet
from utils.background import Prefetcher, WriterPool
from utils.errors import UserError
from utils.logging import write_json
from utils.visualize import colorize, overlay, save_label_pngs

PREFETCH_DEPTH = 4
# One writer thread on a machine of two cores or fewer: the networks already keep every core busy, and a
# second writer only adds contention (bigbuckbunny at l=4 on the 2-core EPYC: 46.6-46.9 against
# 47.3-47.7 ms per frame); two elsewhere (e.g. a GPU job, where the outputs are the CPU's main work).
WRITER_WORKERS = 1 if (os.cpu_count() or 1) <= 2 else 2
MAX_PENDING = 12  # jobs: up to 3 per frame (colour + label PNGs, labelIds PNG, overlay frame)
OVERLAY_ALPHA = 0.5
WARM_UP_SIZE = (128, 128)  # big enough for every network's strides; compiles/loads every kernel

Item = tuple[str, np.ndarray, bool]  # (frame name, RGB uint8 H×W×3, first frame of a clip)


class StageClock:
    """Seconds and call counts per stage, summed over threads (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def add(self, stage: str, seconds: float, count: int = 1) -> None:
        with self._lock:
            self._seconds[stage] = self._seconds.get(stage, 0.0) + seconds
            self._counts[stage] = self._counts.get(stage, 0) + count

    @contextlib.contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    @property
    def seconds(self) -> dict[str, float]:
        with self._lock:
            return dict(self._seconds)

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def make_predictor(model: GSVNet, cfg: Config, device: torch.device, key_interval: int | None = None) -> VideoPredictor:
    """The streaming predictor of --inference (and --benchmark-video): --key-interval (or ``key_interval``),
    keyframes at --eval-scale, --fusion, --keyframe-policy with --scene-threshold (0: calibrated default)."""
    return VideoPredictor(model, key_interval=cfg.key_interval if key_interval is None else key_interval,
                          key_scale=cfg.eval_scale, device=device, fusion=cfg.fusion,
                          keyframe_policy=cfg.keyframe_policy, scene_threshold=cfg.scene_threshold or None)


def warm_up(predictor: VideoPredictor) -> None:
    """Run the frame types the job will use on a small frame (loads or compiles the numba kernels, creates
    the first oneDNN primitives), then reset, so that this cost is not charged to the first frames."""
    sizes = predictor.model.frame_sizes  # an ONNX export accepts only the sizes it has
    frame = np.zeros(tuple(sizes[0] if sizes else WARM_UP_SIZE) + (3,), np.uint8)
    for _ in range(min(2, predictor.key_interval)):
        _ = predictor.step(frame).labels
    predictor.reset()


def _timed(items: Iterable[Item], clock: StageClock) -> Iterator[Item]:
    """``items`` with the time spent producing each one (decoding) added to the "decode" stage."""
    iterator = iter(items)
    try:
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            clock.add("decode", time.perf_counter() - start)
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # a video source releases its capture


class FrameWriter:
    """Queues one frame's files under ``root`` on a ``WriterPool``: ``outputs`` from
    engine.evaluation.save_results.OUTPUT_KINDS (color/{name}.png, label/{name}.png, overlay.mp4 at ``fps``,
    labelIds/{name}.png; ``video_codec`` as dataset.video.VideoWriter). Arrays are passed by reference: the
    caller must not modify them afterwards."""

    def __init__(self, root: Path, outputs: Sequence[str], palette, fps: float, clock: StageClock,
                 video_codec: str = "auto"):
        self.root, self.outputs, self.palette, self.clock = Path(root), tuple(outputs), palette, clock
        for kind in ("color", "label", "labelIds"):
            if kind in self.outputs:
                (self.root / kind).mkdir(parents=True, exist_ok=True)
        self.video = (VideoWriter(self.root / "overlay.mp4", fps=fps, codec=video_codec)
                      if "overlay" in self.outputs else None)

    def submit(self, pool: WriterPool, name: str, frame: np.ndarray, labels: np.ndarray) -> None:
        label_path = self.root / "label" / f"{name}.png" if "label" in self.outputs else None
        color_path = self.root / "color" / f"{name}.png" if "color" in self.outputs else None
        if label_path or color_path:  # one deflate for both files
            pool.submit(self._png_job, labels, label_path, color_path, stage="png")
        if "labelIds" in self.outputs:
            pool.submit(self._png_job, labels, self.root / "labelIds" / f"{name}.png", None, True, stage="png")
        if self.video is not None:  # one frame after the other, in frame order
            pool.submit(self._overlay_job, frame, labels, stage="overlay", serial="overlay")

    def _png_job(self, labels: np.ndarray, label_path: Path | None, color_path: Path | None,
                 label_ids: bool = False) -> None:
        with self.clock.time("png"):
            save_label_pngs(train_ids_to_label_ids(labels) if label_ids else labels, label_path, color_path,
                            self.palette)

    def _overlay_job(self, frame: np.ndarray, labels: np.ndarray) -> None:
        with self.clock.time("colour"):
            color = colorize(labels, self.palette)
        with self.clock.time("overlay"):
            blended = overlay(frame, labels, self.palette, OVERLAY_ALPHA, color_rgb=color)
            if self.video.size is not None and blended.shape[:2] != self.video.size:
                # a video has one size: later frames of another size are resized to the first one's
                blended = cv2.resize(blended, self.video.size[::-1], interpolation=cv2.INTER_LINEAR)
        with self.clock.time("encode"):
            self.video.write(blended)

    def close(self) -> None:
        """Close the overlay video (after the pool has finished every job)."""
        if self.video is not None:
            self.video.close()


@dataclass
class StreamResult:
    frames: int
    keyframes: list[int]        # 0-based indices (input order) of the frames run by the keyframe net
    seconds: float              # first frame read -> last output file closed
    stages: dict[str, float] = field(default_factory=dict)  # StageClock seconds

    @property
    def fps(self) -> float | None:
        return self.frames / self.seconds if self.frames and self.seconds > 0 else None


def _step(predictor: VideoPredictor, frame: np.ndarray, clock: StageClock) -> StepOutput:
    start = time.perf_counter()
    out = predictor.step(frame)
    after_step = time.perf_counter()
    _ = out.labels
    clock.add("keyframe_net" if out.is_keyframe else "propagation", after_step - start)
    clock.add("labels", time.perf_counter() - after_step)
    return out


@dataclass
class _Progress:
    count: int = 0
    keyframes: list[int] = field(default_factory=list)


def _predict_all(source: Iterable[Item], predictor: VideoPredictor, writer: FrameWriter | None, pool: WriterPool,
                 clock: StageClock, on_frame, done: _Progress, bar) -> None:
    """The main thread's loop: networks and labels here, outputs queued on ``pool``. ``done`` counts the
    frames whose outputs are queued (it stays right when Ctrl-C stops a camera in the middle of a frame)."""
    for name, frame, starts_clip in source:
        if starts_clip:
            predictor.reset()
        out = _step(predictor, frame, clock)
        if on_frame is not None:
            on_frame(done.count, name, frame, out)
        if writer is not None:
            with clock.time("wait_writers"):  # blocks only while the writer queue is full
                writer.submit(pool, name, frame, out.labels)
        if out.is_keyframe:
            done.keyframes.append(done.count)
        done.count += 1
        bar.update(1)


def run_stream(items: Iterable[Item], predictor: VideoPredictor, writer: FrameWriter | None, clock: StageClock,
               live: bool = False, progress: bool = False, total: int | None = None,
               on_frame: Callable[[int, str, np.ndarray, StepOutput], None] | None = None) -> StreamResult:
    """Predict every item and queue its outputs (``writer`` None: predict only). The predictor is reset at
    each item whose third field is True. ``live`` (a camera): Ctrl-C ends the stream cleanly and keeps
    what was done; otherwise it propagates. ``on_frame(index, name, frame, step_output)`` runs on the main
    thread after the labels (e.g. a temporal-consistency accumulator). The writer's video is closed
    before returning, on success and on error."""
    bar = tqdm(total=total, desc="inference", unit="frame", dynamic_ncols=True, disable=not progress)
    done = _Progress()
    start = time.perf_counter()
    try:
        with WriterPool(WRITER_WORKERS, MAX_PENDING) as pool, \
                Prefetcher(_timed(items, clock), PREFETCH_DEPTH) as source:
            try:
                _predict_all(source, predictor, writer, pool, clock, on_frame, done, bar)
            except KeyboardInterrupt:
                if not live:
                    raise
            clock.add("wait_decode", source.wait_seconds)
            with clock.time("drain"):
                pool.drain()
    finally:
        if writer is not None:
            writer.close()
        bar.close()
    return StreamResult(done.count, done.keyframes, time.perf_counter() - start, clock.seconds)


def summary(result: StreamResult, video_fps: float | None, outputs: Sequence[str], **extra) -> dict:
    """The content of summary.json. ``temporal_consistency`` stays None unless ``extra`` sets it
    (--temporal-consistency 1)."""
    return {"frames": result.frames, "keyframes": result.keyframes, "num_keyframes": len(result.keyframes),
            "processing_fps": result.fps, "video_fps": video_fps, "temporal_consistency": None,
            "seconds": result.seconds, "outputs": list(outputs), "stage_seconds": result.stages, **extra}


def publish(staging: Path, dest: Path) -> Path:
    """Move a finished staging folder into place. An earlier summary.json of ``dest`` is removed first,
    so that ``dest`` counts as complete (engine.evaluation.save_results.is_complete) only once everything has moved
    (commit_staged moves summary.json last: entries go in name order)."""
    (dest / SUMMARY_NAME).unlink(missing_ok=True)
    return commit_staged(staging, dest)


def run_to_folder(items: Iterable[Item], predictor: VideoPredictor, dest: Path, outputs: Sequence[str], palette,
                  fps: float, video_fps: float | None, what: str, clock: StageClock | None = None,
                  live: bool = False, progress: bool = False, total: int | None = None,
                  on_frame=None, extra: Callable[[], dict] | None = None,
                  video_codec: str = "auto") -> tuple[StreamResult, dict]:
    """Run the stream into the staging folder of ``dest``, write summary.json there, publish ``dest``.
    ``what`` names the input in errors; ``extra()``, called after the stream, returns more summary fields
    (e.g. the temporal consistency an ``on_frame`` accumulator measured); ``video_codec`` is the overlay
    video's (dataset.video.VideoWriter). On any error (or Ctrl-C) the staging folder is removed and the
    error propagates; ``dest`` is untouched. Returns the stream result and the summary."""
    dest = Path(dest)
    staging = staging_dir(dest)
    discard_staged(staging)  # leftovers of a crashed run
    staging.mkdir(parents=True)
    clock = clock or StageClock()
    try:
        writer = FrameWriter(staging, outputs, palette, fps, clock, video_codec) if outputs else None
        result = run_stream(items, predictor, writer, clock, live=live, progress=progress, total=total,
                            on_frame=on_frame)
        if result.frames == 0:
            raise UserError(f"{what}: no frame could be read")
        info = summary(result, video_fps, outputs, **(extra() if extra else {}))
        write_json(staging / SUMMARY_NAME, info)
    except BaseException:
        discard_staged(staging)
        raise
    publish(staging, dest)
    return result, info
