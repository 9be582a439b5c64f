"""engine/streaming/video_job.py: the pipelined job gives the same files as a plain sequential loop over the same
predictor, keeps frame order and names, writes exactly the chosen outputs, stops with a writer's error
and leaves nothing published, and keeps a bounded number of frames in flight."""
from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest
import torch

from engine.streaming import video_job
from engine.streaming.predictor import VideoPredictor
from engine.evaluation.save_results import is_complete, parse_outputs, staging_dir
from engine.streaming.video_job import StageClock, run_stream, run_to_folder
from models.gsvnet import GSVNet
from models.keyframe_spec import parse_spec
from utils.visualize import CITYSCAPES_PALETTE, colorize, overlay

H, W, N = 64, 96, 8
NAMES = [f"{'zyxwvuts'[i]}_{i}" for i in range(N)]  # not in sorted order: names must come from the input


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GSVNet.build(parse_spec("swiftnet"), "light", 19).eval()


def frames(n: int = N) -> list[np.ndarray]:
    """A pattern shifting 3 px per frame, brighter frame by frame (so video frames are told apart)."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    return [np.clip(np.stack([90 + 60 * np.sin((x + 3 * t) / 7), 90 + 60 * np.cos(y / 5),
                              90 + 40 * np.sin((x + y) / 9)], -1) + 12 * t, 0, 255).astype(np.uint8)
            for t in range(n)]


def items(clip_starts=(0,)):
    return [(name, frame, i in clip_starts) for i, (name, frame) in enumerate(zip(NAMES, frames()))]


def sequential(model, clip_starts=(0,)) -> list[np.ndarray]:
    """The reference: one step after the other on a fresh predictor, no threads."""
    predictor = VideoPredictor(model, key_interval=3, key_scale=0.75)
    out = []
    for _, frame, starts in items(clip_starts):
        if starts:
            predictor.reset()
        out.append(predictor.step(frame).labels)
    return out


def read(path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def run(model, dest, outputs=("color", "label", "overlay"), clip_starts=(0,), **kw):
    predictor = VideoPredictor(model, key_interval=3, key_scale=0.75)
    return run_to_folder(items(clip_starts), predictor, dest, outputs, CITYSCAPES_PALETTE, 10.0, 25.0,
                         what="test clip", **kw)


def test_pipeline_equals_sequential_loop_order_and_names(model, tmp_path):
    expected = sequential(model)
    clock = StageClock()
    result, info = run(model, tmp_path / "out", clock=clock)
    out = tmp_path / "out"
    assert sorted(p.stem for p in (out / "label").glob("*.png")) == sorted(NAMES)
    for name, labels in zip(NAMES, expected):
        np.testing.assert_array_equal(read(out / "label" / f"{name}.png"), labels)
        np.testing.assert_array_equal(read(out / "color" / f"{name}.png")[:, :, ::-1],
                                      colorize(labels, CITYSCAPES_PALETTE))
    # the overlay video holds the frames in input order: each decoded frame is nearest its own blend
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    decoded = [cap.read()[1][:, :, ::-1].astype(np.float32) for _ in range(N)]
    assert not cap.read()[0]
    blends = [overlay(f, lab, CITYSCAPES_PALETTE, 0.5).astype(np.float32) for f, lab in zip(frames(), expected)]
    for i, frame in enumerate(decoded):
        errors = [np.abs(frame - b).mean() for b in blends]
        assert int(np.argmin(errors)) == i and errors[i] < 8.0  # mp4v is lossy; neighbours differ by > 10
    assert result.frames == info["frames"] == N
    assert result.keyframes == info["keyframes"] == [0, 3, 6]
    counts = clock.counts
    assert counts["keyframe_net"] == 3 and counts["propagation"] == 5 and counts["labels"] == N
    assert counts["decode"] == N and counts["colour"] == N and counts["encode"] == N and counts["png"] == N


def test_summary_json_and_clip_resets(model, tmp_path):
    expected = sequential(model, clip_starts=(0, 4))
    result, _ = run(model, tmp_path / "out", outputs=("label",), clip_starts=(0, 4))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["keyframes"] == [0, 3, 4, 7]  # the second clip starts with a keyframe
    assert summary["frames"] == N and summary["num_keyframes"] == 4 and summary["video_fps"] == 25.0
    assert summary["temporal_consistency"] is None and summary["outputs"] == ["label"]
    assert summary["processing_fps"] == pytest.approx(N / summary["seconds"])
    for name, labels in zip(NAMES, expected):
        np.testing.assert_array_equal(read(tmp_path / "out" / "label" / f"{name}.png"), labels)
    assert is_complete(tmp_path / "out") and not staging_dir(tmp_path / "out").exists()


@pytest.mark.parametrize("save, files", [
    ("none", {"summary.json"}),
    ("label", {"summary.json", "label"}),
    ("overlay,color", {"summary.json", "color", "overlay.mp4"}),
    ("labelIds", {"summary.json", "labelIds"}),
])
def test_save_writes_exactly_the_chosen_outputs(model, tmp_path, save, files):
    outputs = parse_outputs(save)
    run(model, tmp_path / "out", outputs=outputs)
    assert {p.name for p in (tmp_path / "out").iterdir()} == files
    for folder in files - {"summary.json", "overlay.mp4"}:
        assert sorted(p.stem for p in (tmp_path / "out" / folder).glob("*.png")) == sorted(NAMES)


def test_parse_outputs():
    assert parse_outputs("color,label,overlay") == ("color", "label", "overlay")
    assert parse_outputs(" Overlay , label ") == ("label", "overlay")  # any case and order, canonical order out
    assert parse_outputs("none") == () and parse_outputs("none", save_labelids=True) == ("labelIds",)
    assert parse_outputs("color,label,overlay", True) == ("color", "label", "overlay", "labelIds")
    for bad in ("colour", "color,none", ""):
        with pytest.raises(ValueError, match=r"--save .*color, label, overlay, labelIds"):
            parse_outputs(bad)


def test_writer_error_stops_the_run_and_publishes_nothing(model, tmp_path, monkeypatch):
    error = RuntimeError("disk full while writing a label PNG")
    calls = []

    def failing(labels, label_path=None, color_path=None, palette=None, compression=1):
        calls.append(label_path)
        if len(calls) == 3:
            raise error

    monkeypatch.setattr(video_job, "save_label_pngs", failing)
    with pytest.raises(RuntimeError) as caught:
        run(model, tmp_path / "out")
    assert caught.value is error  # the worker's own exception object, not a wrapper
    assert len(calls) < N  # the run stopped early
    assert not (tmp_path / "out").exists() and not staging_dir(tmp_path / "out").exists()


def test_interrupt_publishes_nothing(model, tmp_path):
    def interrupt(index, name, frame, out):
        if index == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(model, tmp_path / "out", on_frame=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_frames_in_flight_are_bounded(model, tmp_path, monkeypatch):
    """A slow writer: the decoder may run ahead only by the queue sizes, not by the whole video. Bound:
    the prefetch queue, one frame in the decoder's hand, one in the main thread's, the writer queue and
    one job per writer thread."""
    produced, written, in_flight = [0], [0], []
    lock = threading.Lock()
    source = frames(1)[0]

    def decode(n: int):
        for i in range(n):
            with lock:
                produced[0] += 1
                in_flight.append(produced[0] - written[0])
            yield f"f{i}", source, i == 0

    def slow_write(labels, label_path=None, color_path=None, palette=None, compression=1):
        time.sleep(0.004)
        with lock:
            written[0] += 1

    monkeypatch.setattr(video_job, "save_label_pngs", slow_write)

    writer = video_job.FrameWriter(tmp_path, ("label",), CITYSCAPES_PALETTE, 10.0, StageClock())
    predictor = VideoPredictor(model, key_interval=1000, key_scale=0.75)
    result = run_stream(decode(60), predictor, writer, StageClock())
    assert result.frames == 60 and written[0] == 60
    bound = video_job.PREFETCH_DEPTH + 2 + video_job.MAX_PENDING + video_job.WRITER_WORKERS
    assert max(in_flight) <= bound  # 20 with the defaults, for a 60-frame stream


def test_label_pngs_by_hand(tmp_path):
    """One deflate for a greyscale and an indexed-colour PNG of the same map; read back by OpenCV and by
    Pillow (an independent decoder), and the image data checked byte by byte."""
    import zlib

    from PIL import Image

    from utils.visualize import save_label_pngs
    labels = np.array([[0, 1, 2], [255, 1, 0]], np.uint8)  # 255: the ignore id, black in the colour PNG
    save_label_pngs(labels, tmp_path / "l.png", tmp_path / "c.png", CITYSCAPES_PALETTE)
    np.testing.assert_array_equal(read(tmp_path / "l.png"), labels)
    expected = np.array([[(128, 64, 128), (244, 35, 232), (70, 70, 70)],
                         [(0, 0, 0), (244, 35, 232), (128, 64, 128)]], np.uint8)
    np.testing.assert_array_equal(read(tmp_path / "c.png")[:, :, ::-1], expected)
    with Image.open(tmp_path / "c.png") as image:
        assert image.mode == "P" and image.getpalette()[:9] == [128, 64, 128, 244, 35, 232, 70, 70, 70]
        np.testing.assert_array_equal(np.asarray(image), labels)
    with Image.open(tmp_path / "l.png") as image:
        assert image.mode == "L"
    gray, color = (tmp_path / "l.png").read_bytes(), (tmp_path / "c.png").read_bytes()
    assert gray[25] == 0 and color[25] == 3  # IHDR colour type: greyscale, indexed
    idat = gray[gray.index(b"IDAT") + 4:gray.index(b"IEND") - 8]  # up to the IDAT CRC and IEND's length
    assert zlib.decompress(idat) == bytes([0, 0, 1, 2, 0, 255, 1, 0])  # filter byte 0, then each row
    assert idat in color  # the same compressed data in both files
