"""Tests for the video writer of dataset/video.py: H.264 MP4 through PyAV (codec read back, frames within
the encoder's loss, odd sizes padded, frame rate kept, index first, one x264 thread), the BT.601 4:2:0
conversion against hand values and FFmpeg's own, the mp4v fallback and the codec choice."""
from fractions import Fraction

import cv2
import numpy as np
import pytest

from dataset import video
from dataset.video import VideoWriter, pad_to_even, rgb_to_yuv420

av = pytest.importorskip("av")

# Measured on these smooth moving patterns at CRF 23 (av 18.1.0): 34.8-36.1 dB between a frame and its decoded
# copy, at most 27.9 dB against the neighbouring frame; 33 dB separates the two with margin on both sides.
PSNR_BOUND_DB = 33.0


def pattern(n: int, h: int, w: int) -> list[np.ndarray]:
    """RGB frames of smooth sinusoids that shift 2 px per frame."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return [np.stack([128 + 100 * np.sin((x + 2 * t) / 9), 128 + 100 * np.cos(y / 7),
                      128 + 60 * np.sin((x + y + 2 * t) / 13)], -1).astype(np.uint8) for t in range(n)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255 ** 2 / np.mean((a.astype(np.float64) - b) ** 2)))


def write(path, frames, fps, codec):
    with VideoWriter(path, fps=fps, codec=codec) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def decode(path):
    """(codec name, pix_fmt, average rate, RGB frames) of the video stream, decoded by PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return stream.codec_context.name, stream.codec_context.pix_fmt, stream.average_rate, frames


def top_level_boxes(path) -> list[bytes]:
    """The types of the MP4 file's top-level boxes, in file order (32-bit sizes; 1 = a 64-bit size follows)."""
    data, boxes, pos = path.read_bytes(), [], 0
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        boxes.append(kind)
        pos += size if size else len(data)
    return boxes


@pytest.mark.parametrize("size, fps, rate", [((64, 96), 10.0, Fraction(10)),
                                             ((96, 160), 30000 / 1001, Fraction(30000, 1001))])
def test_h264_reads_back_as_written(tmp_path, size, fps, rate):
    frames = pattern(8, *size)
    path = write(tmp_path / "v.mp4", frames, fps, "h264")
    codec, pix_fmt, average_rate, decoded = decode(path)
    assert (codec, pix_fmt, average_rate) == ("h264", "yuv420p", rate)  # 29.97 kept as 30000/1001 exactly
    assert len(decoded) == len(frames) and decoded[0].shape == size + (3,)
    for i, got in enumerate(decoded):
        scores = [psnr(got, f) for f in frames]
        assert scores[i] > PSNR_BOUND_DB and int(np.argmax(scores)) == i  # its own frame, in order
    cap = cv2.VideoCapture(str(path))  # OpenCV reads it too, at the same rate
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(fps) and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    cap.release()


def test_h264_file_layout_and_encoder_settings(tmp_path):
    path = write(tmp_path / "v.mp4", pattern(3, 64, 96), 10.0, "h264")
    boxes = top_level_boxes(path)
    assert boxes[0] == b"ftyp" and boxes.index(b"moov") < boxes.index(b"mdat")  # +faststart: index first
    data = path.read_bytes()  # x264 writes its settings into the stream (an SEI message)
    assert b"threads=1 " in data and b"crf=23.0" in data and b"cabac=0" in data and b"bframes=0" in data
    with av.open(str(path)) as container:  # tagged as what rgb_to_yuv420 computes: BT.601 matrix, limited range
        context = container.streams.video[0].codec_context
        assert (context.colorspace, context.color_range) == (6, 1)


def test_odd_size_is_padded_by_repeating_the_last_row_and_column(tmp_path):
    frames = pattern(5, 57, 101)
    padded = pad_to_even(frames[0])
    assert padded.shape == (58, 102, 3)
    np.testing.assert_array_equal(padded[:57, :101], frames[0])
    np.testing.assert_array_equal(padded[57, :101], frames[0][56])
    np.testing.assert_array_equal(padded[:57, 101], frames[0][:, 100])
    assert padded[57, 101].tolist() == frames[0][56, 100].tolist()
    assert pad_to_even(padded) is padded  # even sizes pass through
    for codec in ("h264", "mp4v"):
        decoded = decode(write(tmp_path / f"{codec}.mp4", frames, 10.0, codec))[3]
        assert len(decoded) == 5 and decoded[0].shape == (58, 102, 3)
        for got, want in zip(decoded, frames):
            assert psnr(got, pad_to_even(want)) > PSNR_BOUND_DB


def test_rgb_to_yuv420_hand_values_and_ffmpeg():
    # BT.601 limited range: white (235, 128, 128), black (16, 128, 128), red (81, Cb 90, Cr 240),
    # blue (41, Cb 240, Cr 110); Y = 16 + 219/255 (0.299 R + 0.587 G + 0.114 B), rounded
    colours = {(255, 255, 255): (235, 128, 128), (0, 0, 0): (16, 128, 128), (255, 0, 0): (81, 90, 240),
               (0, 0, 255): (41, 240, 110)}
    for rgb, (y, u, v) in colours.items():
        planes = rgb_to_yuv420(np.full((4, 6, 3), rgb, np.uint8))
        assert [p.shape for p in planes] == [(4, 6), (2, 3), (2, 3)]
        assert [set(p.ravel().tolist()) for p in planes] == [{y}, {u}, {v}]
    # chroma is the 2×2 mean: a block of two red and two blue pixels has the mean of their Cb and Cr
    block = np.array([[[255, 0, 0], [0, 0, 255]], [[0, 0, 255], [255, 0, 0]]], np.uint8)
    assert [p.item() for p in rgb_to_yuv420(block)[1:]] == [165, 175]  # (90 + 240) / 2, (240 + 110) / 2
    # FFmpeg's swscale (an independent implementation of the same conversion) agrees within rounding
    frame = pattern(1, 58, 102)[0]
    theirs = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p", interpolation="AREA")
    theirs = theirs.to_ndarray().astype(int)  # Y rows, then U and V (each 29×51) laid out row after row
    ours = [p.astype(int) for p in rgb_to_yuv420(frame)]
    assert np.abs(ours[0] - theirs[:58]).max() <= 1  # luma
    chroma = np.concatenate([ours[1].ravel(), ours[2].ravel()])
    assert np.abs(chroma - theirs[58:].ravel()).max() <= 2  # averaged before vs after the conversion
    # written into given planes whose rows are padded (as an encoder's frame buffers are)
    buffers = [np.zeros((58, 112), np.uint8), np.zeros((29, 64), np.uint8), np.zeros((29, 64), np.uint8)]
    views = (buffers[0][:, :102], buffers[1][:, :51], buffers[2][:, :51])
    rgb_to_yuv420(frame, out=views)
    for view, want in zip(views, ours):
        np.testing.assert_array_equal(view, want)
    assert not buffers[0][:, 102:].any() and not buffers[1][:, 51:].any()  # the padding is left alone


def test_mp4v_still_writes_mpeg4_part2(tmp_path):
    frames = pattern(4, 64, 96)
    path = write(tmp_path / "v.mp4", frames, 10.0, "mp4v")
    cap = cv2.VideoCapture(str(path))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    cap.release()
    codec, _, average_rate, decoded = decode(path)
    assert fourcc == "FMP4" and codec == "mpeg4" and average_rate == 10 and len(decoded) == 4
    assert min(psnr(got, want) for got, want in zip(decoded, frames)) > PSNR_BOUND_DB


def test_codec_choice(tmp_path, monkeypatch):
    assert video.h264_available()
    assert VideoWriter(tmp_path / "a.mp4").codec == "h264"  # auto with PyAV
    with pytest.raises(ValueError, match="'h265'"):
        VideoWriter(tmp_path / "b.mp4", codec="h265")
    monkeypatch.setattr(video, "h264_available", lambda: False)
    assert VideoWriter(tmp_path / "c.mp4").codec == "mp4v"  # auto without PyAV
    with pytest.raises(ValueError, match="needs PyAV"):
        VideoWriter(tmp_path / "d.mp4", codec="h264")
    assert not list(tmp_path.iterdir())  # nothing is opened before the first frame


def test_writer_rejects_a_size_change(tmp_path):
    with VideoWriter(tmp_path / "v.mp4", fps=10, codec="h264") as writer:
        writer.write(pattern(1, 64, 96)[0])
        with pytest.raises(ValueError, match=r"\(32, 48\) differs from the video size \(64, 96\)"):
            writer.write(pattern(1, 32, 48)[0])
    assert writer.frames_written == 1 and len(decode(tmp_path / "v.mp4")[3]) == 1
