"""Clip-consistent augmentation: one random draw per clip, applied to every frame and the label.

Geometry of one draw (``ClipParams``): scale the frame to ``scaled_size`` = round(s·H), round(s·W)
of the ACTUAL frame size; pad bottom/right to the crop size if smaller (images with 0, labels
with ``ignore_index``); crop ``crop_size`` at (top, left); optionally flip horizontally. Images are
resampled bilinearly with ``align_corners=False`` (pixel centres aligned, what a plain resize of a
photo means), labels with nearest-exact, the same centre-aligned mapping, so label and image stay
registered. Only the crop window is computed (no full-size intermediate at scale 2), and the
result equals ``F.interpolate(..., align_corners=False)`` + pad + crop + flip (tested).

Photometric jitter (brightness, contrast, saturation factors in [1−s, 1+s]) uses the same factors
for every frame and, for contrast, the mean grey level of the whole clip, so identical input
frames stay identical. Frames stay ``uint8`` T×3×h×w (rounded), labels ``int64`` h×w.

Randomness: by default the global torch RNG, which DataLoader seeds differently per worker. A
``generator`` (or ``seed``) makes draws reproducible, but a generator copied into several workers
repeats the same draws in each of them; use it for tests and single-process runs.

Fixes relative to the official augmentation: every listed scale can be drawn (incl. 2.0), flip
probability is as given (default 0.5), photometric jitter is real, sizes are not floored to
multiples of 32 and the crop comes from the actual frame size, not a hard-coded 1024×2048.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, RGB order


@dataclass(frozen=True)
class ClipParams:
    """One draw: scaled size (H', W'), crop origin in the scaled frame, flip, colour factors."""
    scaled_size: tuple[int, int]
    top: int
    left: int
    flip: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0


def _axis_positions(start: int, length: int, flip: bool) -> torch.Tensor:
    positions = torch.arange(start, start + length, dtype=torch.float64)
    return positions.flip(0) if flip else positions


def _bilinear_taps(size_in: int, size_out: int, positions: torch.Tensor):
    """Source taps of scaled-grid ``positions`` (align_corners=False, as F.interpolate).

    Returns (lower index, upper index, float32 weight of the upper tap), each of len(positions).
    """
    src = ((positions + 0.5) * (size_in / size_out) - 0.5).clamp(min=0.0)
    lower = src.floor().long().clamp(max=size_in - 1)
    upper = (lower + 1).clamp(max=size_in - 1)
    return lower, upper, (src - lower).float().clamp(max=1.0)


def _bilinear_crop(frames: torch.Tensor, rows: tuple, cols: tuple) -> torch.Tensor:
    """Bilinear samples of ``frames`` (…×H×W, any dtype) at the given taps -> float32 …×h×w.

    All gathers run on the input dtype (uint8) and only the crop window is ever converted to
    float, so a ×2 scale of a 2048-wide clip costs no more than the crop itself.
    """
    (r0, r1, wr), (c0, c1, wc) = rows, cols
    top, bottom = frames.index_select(-2, r0), frames.index_select(-2, r1)

    def blend_columns(x: torch.Tensor) -> torch.Tensor:
        left = x.index_select(-1, c0).float()
        right = x.index_select(-1, c1).float()
        return left.add_(right.sub_(left).mul_(wc))  # left + (right − left)·wc

    upper, lower = blend_columns(top), blend_columns(bottom)
    return upper.add_(lower.sub_(upper).mul_(wr[:, None]))


def _nearest_axis(size_in: int, size_out: int, positions: torch.Tensor) -> torch.Tensor:
    """Nearest-exact source indices of scaled-grid ``positions``."""
    return ((positions + 0.5) * (size_in / size_out)).floor().long().clamp(0, size_in - 1)


def resample_clip(frames: torch.Tensor, label: torch.Tensor | None, params: ClipParams,
                  crop_size: tuple[int, int], ignore_index: int = 255):
    """Scale, pad, crop and flip a clip and its label with one geometry.

    frames: uint8/float T×3×H×W; label: int64 H×W or None.
    Returns (float32 T×3×h×w, int64 h×w or None) with (h, w) = crop_size.
    """
    height, width = frames.shape[-2:]
    (scaled_h, scaled_w), (crop_h, crop_w) = params.scaled_size, crop_size
    rows = _axis_positions(params.top, crop_h, False)
    cols = _axis_positions(params.left, crop_w, params.flip)
    inside_rows, inside_cols = rows < scaled_h, cols < scaled_w  # False = padding
    out = _bilinear_crop(frames, _bilinear_taps(height, scaled_h, rows),
                         _bilinear_taps(width, scaled_w, cols))
    inside = inside_rows[:, None] & inside_cols[None, :]  # h×w
    if not inside.all():
        out.mul_(inside.to(out.dtype))
    out_label = None
    if label is not None:
        if tuple(label.shape) != (height, width):
            raise ValueError(f"label size {tuple(label.shape)} differs from the frame size "
                             f"{(height, width)}")
        row_idx = _nearest_axis(height, scaled_h, rows)
        col_idx = _nearest_axis(width, scaled_w, cols)
        out_label = label[row_idx[:, None], col_idx[None, :]]  # advanced indexing copies
        out_label[~inside] = ignore_index
    return out, out_label


def _grey(frames: torch.Tensor) -> torch.Tensor:
    """T×3×h×w RGB -> T×1×h×w luma."""
    red, green, blue = GREY_WEIGHTS
    return (frames[:, 0:1] * red).add_(frames[:, 1:2], alpha=green).add_(frames[:, 2:3],
                                                                         alpha=blue)


def photometric(frames: torch.Tensor, params: ClipParams) -> torch.Tensor:
    """Brightness, contrast, saturation (in that order) on float 0–255 T×3×h×w, same for all T.

    Each step is a blend clamped to [0, 255] (as torchvision's adjust_* functions); returns a
    new tensor.
    """
    out = (frames * params.brightness).clamp_(0, 255)
    if params.contrast != 1.0:
        mean = _grey(out).mean()  # whole clip: one transform for all frames
        out.sub_(mean).mul_(params.contrast).add_(mean).clamp_(0, 255)
    if params.saturation != 1.0:
        grey = _grey(out)
        out.sub_(grey).mul_(params.saturation).add_(grey).clamp_(0, 255)
    return out


def _to_uint8(frames: torch.Tensor) -> torch.Tensor:
    return frames.round_().clamp_(0, 255).to(torch.uint8)


def _check_frames(sample: dict) -> torch.Tensor:
    frames = sample["frames"]
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"sample['frames'] must be uint8 T×3×H×W, got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    return frames


class ClipTransform:
    """Training augmentation; ``__call__(sample) -> sample`` with one draw for the whole clip."""

    def __init__(self, crop_size: tuple[int, int],
                 scales: tuple[float, ...] | None = (0.75, 1.0, 1.5, 1.75, 2.0),
                 scale_range: tuple[float, float] | None = None, flip_prob: float = 0.5,
                 brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 ignore_index: int = 255, generator: torch.Generator | None = None,
                 seed: int | None = None):
        """``scales``: discrete choices; ``scale_range=(lo, hi)`` (continuous) replaces them.
        brightness/contrast/saturation: strength s, factor uniform in [1−s, 1+s] (0 = off)."""
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        if min(self.crop_size) <= 0:
            raise ValueError(f"crop_size must be positive (h, w), got {crop_size}")
        if scale_range is not None:
            if not 0 < scale_range[0] <= scale_range[1]:
                raise ValueError("scale_range must be (lo, hi) with 0 < lo <= hi, "
                                 f"got {scale_range}")
            scales = None
        elif not scales or min(scales) <= 0:
            raise ValueError(f"scales must be a non-empty list of positive numbers, got {scales}")
        for label, value in (("brightness", brightness), ("contrast", contrast),
                             ("saturation", saturation)):
            if not 0 <= value < 1:
                raise ValueError(f"{label} strength must be in [0, 1), got {value}")
        if not 0 <= flip_prob <= 1:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        self.scales = tuple(scales) if scales is not None else None
        self.scale_range = scale_range
        self.flip_prob, self.ignore_index = flip_prob, ignore_index
        self.strengths = (brightness, contrast, saturation)
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        self.generator = generator

    def _rand(self) -> float:
        return float(torch.rand((), generator=self.generator, dtype=torch.float64))

    def _randint(self, high: int) -> int:
        """Uniform integer in [0, high] (inclusive)."""
        return int(torch.randint(0, high + 1, (), generator=self.generator))

    def sample_params(self, height: int, width: int) -> ClipParams:
        """Draw the geometry and colour factors for a clip of frames of size height×width."""
        if self.scales is not None:
            scale = self.scales[self._randint(len(self.scales) - 1)]
        else:
            low, high = self.scale_range
            scale = low + (high - low) * self._rand()
        scaled = (max(1, round(height * scale)), max(1, round(width * scale)))
        top = self._randint(max(0, scaled[0] - self.crop_size[0]))
        left = self._randint(max(0, scaled[1] - self.crop_size[1]))
        flip = self._rand() < self.flip_prob
        factors = [1.0 + s * (2 * self._rand() - 1) if s > 0 else 1.0 for s in self.strengths]
        return ClipParams(scaled, top, left, flip, *factors)

    def apply(self, sample: dict, params: ClipParams) -> dict:
        """Apply a given draw to every frame and the label of ``sample``."""
        frames = _check_frames(sample)
        out, label = resample_clip(frames, sample.get("label"), params, self.crop_size,
                                   self.ignore_index)
        if (params.brightness, params.contrast, params.saturation) != (1.0, 1.0, 1.0):
            out = photometric(out, params)
        result = dict(sample, frames=_to_uint8(out))
        if label is not None:
            result["label"] = label
        return result

    def __call__(self, sample: dict) -> dict:
        height, width = sample["frames"].shape[-2:]
        return self.apply(sample, self.sample_params(height, width))


class ResizeClip:
    """Deterministic evaluation transform: resize frames to ``size`` (h, w), or identity if None.

    The label keeps its full resolution unless ``resize_label`` (evaluation scores at the
    label's resolution; the pipeline upsamples its prediction).
    """

    def __init__(self, size: tuple[int, int] | None = None, resize_label: bool = False,
                 ignore_index: int = 255):
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.resize_label, self.ignore_index = resize_label, ignore_index

    def __call__(self, sample: dict) -> dict:
        frames = _check_frames(sample)
        if self.size is None or tuple(frames.shape[-2:]) == self.size:
            return dict(sample)
        params = ClipParams(self.size, 0, 0)
        label = sample.get("label") if self.resize_label else None
        out, out_label = resample_clip(frames, label, params, self.size, self.ignore_index)
        result = dict(sample, frames=_to_uint8(out))
        if out_label is not None:
            result["label"] = out_label
        return result
