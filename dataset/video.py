"""Image and video I/O: single images, frame sources for inference, an mp4 writer.

Every frame that leaves this module is RGB ``np.uint8`` H×W×3 (OpenCV decodes BGR; we flip
once, here). Label images are read as single-channel ``np.uint8`` H×W.

``open_frames(source)`` accepts a video file, a folder of images, a single image, or a camera
id ("0"), and yields ``(name, frame)`` pairs:

* video file ``clip.mp4``  -> names ``clip_000000``, ``clip_000001``, ... (0-based decode order);
* folder                   -> the image stems, in natural order (``img2`` before ``img10``);
* camera id ``N``          -> ``camera{N}_000000``, ...
"""
from __future__ import annotations

import importlib.util
import re
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from utils.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm")


def _decode(path: str | Path, flags: int) -> np.ndarray:
    """Read and decode one image file; errors name the file and say what went wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    # np.fromfile + imdecode separates "cannot read" from "cannot decode" (cv2.imread merges them).
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise UserError(f"cannot decode image file {path} ({data.size} bytes): "
                           "the file is empty, truncated or not an image")
    return image


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image as RGB ``np.uint8`` H×W×3 (grey images are replicated, alpha dropped)."""
    return bgr_to_rgb(_decode(path, cv2.IMREAD_COLOR))


def bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    """Swap the first and third channels of a uint8 H×W×3 image into a new contiguous array.
    ``cv2.cvtColor``: 0.3 ms at 1280×720, against 3.5 ms for ``np.ascontiguousarray(x[:, :, ::-1])``
    (the same bytes); the swap is its own inverse, so this also turns RGB into BGR."""
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2RGB)


def read_label(path: str | Path) -> np.ndarray:
    """Read a single-channel id image (labelIds / CamVid ids) as ``np.uint8`` H×W.

    A 3-channel file with equal channels (an id map saved as RGB) is accepted; a real colour
    image (channels differ) is rejected because it is almost certainly a ``*_color.png``.
    """
    label = _decode(path, cv2.IMREAD_UNCHANGED)
    if label.ndim == 3:
        channels = label[:, :, :3]
        if not (np.array_equal(channels[:, :, 0], channels[:, :, 1])
                and np.array_equal(channels[:, :, 0], channels[:, :, 2])):
            raise ValueError(f"label file {path} is a colour image; expected a single-channel "
                             "id image (e.g. *_gtFine_labelIds.png or label_id/*_L.png)")
        label = channels[:, :, 0]
    if label.dtype != np.uint8:
        if label.min() < 0 or label.max() > 255:
            raise ValueError(f"label file {path} has values outside 0..255 (dtype {label.dtype})")
        label = label.astype(np.uint8)
    return label


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers numerically: img2 < img10."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", text)]


class FrameSource:
    """Iterable of ``(name, RGB uint8 H×W×3)``; see ``open_frames``.

    Attributes: ``kind`` ("video" | "folder" | "image" | "camera"), ``fps`` (float or None when
    unknown), ``size`` ((H, W) of the first frame, or None when unknown before decoding),
    ``num_frames`` (int or None for cameras / unknown counts). Iterating a video raises UserError at
    the end when decoding stopped well short of ``num_frames`` (``missing_frames_allowed``): a
    truncated or corrupt file is an error, not a shorter video.
    """

    def __init__(self, kind: str, target, fps: float | None, size, num_frames: int | None,
                 stem: str = ""):
        self.kind, self._target, self.fps = kind, target, fps
        self.size, self.num_frames, self._stem = size, num_frames, stem

    def __len__(self) -> int:
        if self.num_frames is None:
            raise TypeError(f"the number of frames of this {self.kind} source is unknown")
        return self.num_frames

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        if self.kind in ("folder", "image"):
            for path in self._target:
                yield path.stem, read_rgb(path)
            return
        capture = cv2.VideoCapture(self._target)
        if not capture.isOpened():
            raise UserError(f"cannot open {self.kind} {self._target!r}")
        try:
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield f"{self._stem}_{index:06d}", bgr_to_rgb(bgr)
                index += 1
        finally:
            capture.release()
        announced = self.num_frames if self.kind == "video" else None
        if announced and index < announced - missing_frames_allowed(announced):
            raise UserError(f"video file {self._target}: decoding stopped after {index} of the {self.num_frames} "
                            "frames its container announces (truncated or corrupt file)")


def missing_frames_allowed(announced: int) -> int:
    """How many fewer frames than its container announces a video may decode and still count as read
    completely: 2, or 1 % of a long video. OpenCV's count is exact for MP4/MOV (the sample table) but
    estimated from duration × fps for some other containers; a truncated file falls far short."""
    return max(2, announced // 100)


def _video_info(capture: cv2.VideoCapture) -> tuple[float | None, tuple | None, int | None]:
    fps = capture.get(cv2.CAP_PROP_FPS)
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return (fps if fps > 0 else None, (height, width) if height > 0 and width > 0 else None,
            count if count > 0 else None)


def open_frames(source: str | int | Path) -> FrameSource:
    """Open a video file, image folder, single image or camera id (int or digit string)."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        camera_id = int(source)
        capture = cv2.VideoCapture(camera_id)
        if not capture.isOpened():
            raise UserError(f"cannot open camera id {camera_id} (is a camera attached?)")
        fps, size, _ = _video_info(capture)
        capture.release()
        return FrameSource("camera", camera_id, fps, size, None, stem=f"camera{camera_id}")
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path} (expected a video file, an image "
                                "folder or a camera id)")
    if path.is_dir():
        files = sorted((p for p in path.iterdir()
                        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                       key=lambda p: natural_key(p.name))
        if not files:
            raise FileNotFoundError(f"image folder {path} holds no images with extensions "
                                    f"{', '.join(IMAGE_EXTENSIONS)}")
        size = read_rgb(files[0]).shape[:2]
        return FrameSource("folder", files, None, size, len(files))
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return FrameSource("image", [path], None, read_rgb(path).shape[:2], 1)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise UserError(f"cannot open video file {path}: unknown format or corrupt file")
        fps, size, count = _video_info(capture)
        ok, _ = capture.read()
        if not ok:
            raise UserError(f"video file {path} opened but no frame could be decoded")
    finally:
        capture.release()
    return FrameSource("video", str(path), fps, size, count, stem=path.stem)


VIDEO_CODECS = ("h264", "mp4v")
# x264 settings of the H.264 writer, chosen on 1280×720 overlay frames (docs/formats.md, "Overlay video"):
# "ultrafast" is the cheapest preset (no B-frames, no lookahead, CAVLC); at CRF 23 (x264's default quality)
# the overlay's colour boundaries and textures stay clean, at about 2/3 of the bits of OpenCV's mp4v.
H264_PRESET = "ultrafast"
H264_CRF = 23
_SMPTE170M, _MPEG_RANGE = 6, 1  # FFmpeg's AVCOL_SPC_SMPTE170M (the BT.601 matrix) and AVCOL_RANGE_MPEG (16-235)


def h264_available() -> bool:
    """True when PyAV (PyPI ``av``, whose wheels bundle FFmpeg with libx264) is installed; checked
    without importing it."""
    return importlib.util.find_spec("av") is not None


def rgb_to_yuv420(rgb: np.ndarray, out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB uint8 H×W×3 (H, W even) -> the planes of YUV 4:2:0: Y H×W, U and V (H/2)×(W/2), uint8, BT.601
    matrix, limited range (Y 16..235, U/V 16..240): what an H.264 stream tagged SMPTE170M / MPEG range means.
    Chroma is that of the 2×2 mean of the RGB pixels (the conversion is linear: the same as converting then
    averaging, up to rounding). ``out``: three arrays of those shapes to write into (e.g. views of an
    encoder's frame buffers, rows may be padded), which saves assembling and copying the planes.
    0.9 ms of CPU at 1280×720 (2-core EPYC), against 3.5 ms for FFmpeg's swscale."""
    height, width = rgb.shape[:2]
    if out is None:
        out = (np.empty((height, width), np.uint8),
               np.empty((height // 2, width // 2), np.uint8), np.empty((height // 2, width // 2), np.uint8))
    luma, u_plane, v_plane = out
    _written(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY, dst=luma), luma)  # Y = 0.299 R + 0.587 G + 0.114 B
    _written(cv2.convertScaleAbs(luma, dst=luma, alpha=219 / 255, beta=16), luma)
    half = cv2.resize(rgb, (width // 2, height // 2), interpolation=cv2.INTER_AREA)  # 2×2 means
    _, cr, cb = cv2.split(cv2.cvtColor(half, cv2.COLOR_RGB2YCrCb))  # full-range Cr, Cb
    for full, plane in ((cb, u_plane), (cr, v_plane)):  # -> 16..240
        _written(cv2.convertScaleAbs(full, dst=plane, alpha=224 / 255, beta=128 * (1 - 224 / 255)), plane)
    return luma, u_plane, v_plane


def _written(result: np.ndarray, dst: np.ndarray) -> None:
    """Make sure an OpenCV result is in ``dst`` (OpenCV writes into a view with padded rows in place; if it
    ever returned a new array instead, copy it)."""
    if not np.shares_memory(result, dst):
        np.copyto(dst, result)


def pad_to_even(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` with its last row / last column repeated once where the height / width is odd (4:2:0
    needs even sizes); even sizes are returned as they are."""
    height, width = rgb.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return rgb
    return cv2.copyMakeBorder(rgb, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)


class _H264Encoder:
    """libx264 through PyAV into an MP4 with the index (moov) first, so that browsers play it while it
    loads; one encoder thread; the frame rate as an exact fraction (29.97 -> 30000/1001)."""

    def __init__(self, path: Path, fps: float, height: int, width: int):
        import av  # only here: --video-codec mp4v and every other mode never load FFmpeg

        self._container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        try:
            rate = Fraction(fps).limit_denominator(1001)
            self._stream = self._container.add_stream("libx264", rate=rate)
            context = self._stream.codec_context
            context.width, context.height, context.pix_fmt = width + width % 2, height + height % 2, "yuv420p"
            context.time_base = 1 / rate
            context.thread_count = 1  # the writer pool is the parallelism; x264's own threads would compete
            context.colorspace, context.color_range = _SMPTE170M, _MPEG_RANGE  # what rgb_to_yuv420 computes
            context.options = {"preset": H264_PRESET, "crf": str(H264_CRF)}
        except BaseException:
            self._container.close()
            raise
        self._av, self._index = av, 0

    def write(self, rgb: np.ndarray) -> None:
        rgb = pad_to_even(rgb)
        frame = self._av.VideoFrame(rgb.shape[1], rgb.shape[0], "yuv420p")
        planes = tuple(np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:p.height, :p.width] for p in frame.planes)
        rgb_to_yuv420(rgb, out=planes)  # straight into the frame's buffers
        frame.pts = self._index
        self._index += 1
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        try:
            self._container.mux(self._stream.encode(None))  # flush the encoder
        finally:
            self._container.close()


class _OpenCVEncoder:
    """OpenCV's FFmpeg writer with a FourCC (``mp4v``: MPEG-4 Part 2, read back as ``FMP4``)."""

    def __init__(self, path: Path, fps: float, height: int, width: int, fourcc: str = "mp4v"):
        size = (width + width % 2, height + height % 2)  # odd sizes: padded as for H.264 (FFmpeg would crop)
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not self._writer.isOpened():
            raise UserError(f"cannot open {path} for writing with fourcc {fourcc!r}")

    def write(self, rgb: np.ndarray) -> None:
        self._writer.write(bgr_to_rgb(pad_to_even(rgb)))

    def close(self) -> None:
        self._writer.release()


class VideoWriter:
    """Write RGB uint8 frames to an mp4; opened lazily at the first frame, which fixes the size.

    ``codec``: "h264" (PyAV/libx264: yuv420p, ``+faststart``), "mp4v" (OpenCV, MPEG-4 Part 2: most
    browsers do not play it) or "auto" (h264 when PyAV is installed, else mp4v). Either way the file
    holds every frame at ``fps``, and an odd height or width is padded to even by repeating the last
    row or column (a 57×101 frame reads back as 58×102 with the original in its top-left corner).
    Usage: ``with VideoWriter("out.mp4", fps=17) as w: w.write(frame)``.
    """

    def __init__(self, path: str | Path, fps: float = 30.0, codec: str = "auto"):
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if codec == "auto":
            codec = "h264" if h264_available() else "mp4v"
        if codec not in VIDEO_CODECS:
            raise ValueError(f"video codec: expected one of {', '.join(VIDEO_CODECS)} or auto, got {codec!r}")
        if codec == "h264" and not h264_available():
            raise ValueError("video codec h264 needs PyAV: pip install av (see requirements.txt), "
                             "or choose mp4v")
        self.path, self.fps, self.codec = Path(path), float(fps), codec
        self.size: tuple[int, int] | None = None
        self.frames_written = 0
        self._encoder: _H264Encoder | _OpenCVEncoder | None = None

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB ``np.uint8`` H×W×3 frame; all frames must have the same size."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 H×W×3 frame, got {frame.dtype} "
                             f"{tuple(frame.shape)}")
        height, width = frame.shape[:2]
        if self._encoder is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            make = _H264Encoder if self.codec == "h264" else _OpenCVEncoder
            self._encoder = make(self.path, self.fps, height, width)
            self.size = (height, width)
        elif (height, width) != self.size:
            raise ValueError(f"frame size {(height, width)} differs from the video size "
                             f"{self.size} of {self.path}")
        self._encoder.write(np.ascontiguousarray(frame))
        self.frames_written += 1

    def close(self) -> None:
        if self._encoder is not None:
            encoder, self._encoder = self._encoder, None
            encoder.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
