"""Colour label maps, overlays, image strips and PNG writing. All images here are RGB uint8 H×W×3;
the BGR order OpenCV expects on disk is handled only inside ``save_png``."""
from __future__ import annotations

import colorsys
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

Color = tuple[int, int, int]

# Standard Cityscapes colours of the 19 evaluated classes, in train-id order.
CITYSCAPES_PALETTE: tuple[Color, ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32))

# Standard CamVid colours of the 11 classes in SegNet order (sky, building, pole, road, sidewalk,
# tree, sign, fence, car, pedestrian, bicyclist).
CAMVID_PALETTE: tuple[Color, ...] = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))


def default_palette(num_classes: int) -> tuple[Color, ...]:
    """Palette for ``num_classes``: Cityscapes' for 19, CamVid's for 11, else evenly spaced hues."""
    if num_classes == len(CITYSCAPES_PALETTE):
        return CITYSCAPES_PALETTE
    if num_classes == len(CAMVID_PALETTE):
        return CAMVID_PALETTE
    hues = [(i * 0.618033988749895) % 1.0 for i in range(num_classes)]  # golden-ratio spacing
    return tuple(tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, 0.75, 0.95))
                 for h in hues)


def _labels_np(labels) -> np.ndarray:
    if hasattr(labels, "detach"):  # torch tensor, without importing torch here
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: expected an integer H×W array, got {labels.dtype} {labels.shape}")
    return labels


def colorize(labels, palette: Sequence[Color], ignore_color: Color = (0, 0, 0)) -> np.ndarray:
    """labels H×W int (numpy or torch) -> H×W×3 uint8 RGB. Ids outside [0, len(palette)) — the
    ignore value 255 included — get ``ignore_color``."""
    labels = _labels_np(labels)
    colors = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    out = np.empty(labels.shape + (3,), dtype=np.uint8)
    out[:] = np.asarray(ignore_color, dtype=np.uint8)
    valid = (labels >= 0) & (labels < len(colors))
    out[valid] = colors[labels[valid]]
    return out


def overlay(frame_rgb: np.ndarray, labels, palette: Sequence[Color], alpha: float = 0.5) -> np.ndarray:
    """Blend class colours over a frame: round((1 − alpha)·frame + alpha·colour), uint8 H×W×3.
    Pixels with ids outside the palette (ignore) keep the frame unchanged."""
    frame = np.asarray(frame_rgb)
    labels = _labels_np(labels)
    if frame.shape != labels.shape + (3,) or frame.dtype != np.uint8:
        raise ValueError(f"frame_rgb: expected uint8 {labels.shape + (3,)} to match labels, "
                         f"got {frame.dtype} {frame.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected a value in [0, 1], got {alpha}")
    blended = (1.0 - alpha) * frame + alpha * colorize(labels, palette).astype(np.float64)
    out = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    ignored = (labels < 0) | (labels >= len(palette))
    out[ignored] = frame[ignored]
    return out


def _as_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 H×W×3 or H×W, got {img.dtype} {img.shape}")
    return img


def _caption_band(text: str, width: int, height: int) -> np.ndarray:
    band = np.full((height, width, 3), 255, dtype=np.uint8)
    scale = height / 40.0
    cv2.putText(band, text, (3, int(height * 0.75)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 0, 0), max(1, int(round(scale * 2))), cv2.LINE_AA)
    return band


def grid(images: Sequence[np.ndarray], ncols: int | None = None,
         captions: Sequence[str] | None = None, gap: int = 4, caption_height: int = 20,
         background: Color = (255, 255, 255)) -> np.ndarray:
    """Tile images (uint8 H×W×3 RGB or H×W gray) row-major into one uint8 image.

    Each cell is as large as the largest image, images sit in the top-left of their cell, cells
    are separated by ``gap`` pixels of ``background``. With ``captions``, a white band of
    ``caption_height`` pixels with the caption text is drawn above every image.
    ncols defaults to len(images), i.e. a horizontal strip.
    """
    if not images:
        raise ValueError("images: expected at least one image")
    tiles = [_as_rgb(im) for im in images]
    if captions is not None and len(captions) != len(tiles):
        raise ValueError(f"captions: expected {len(tiles)} captions, got {len(captions)}")
    ncols = len(tiles) if ncols is None else ncols
    if ncols < 1:
        raise ValueError(f"ncols: expected >= 1, got {ncols}")
    band = caption_height if captions is not None else 0
    cell_h = max(t.shape[0] for t in tiles) + band
    cell_w = max(t.shape[1] for t in tiles)
    nrows = -(-len(tiles) // ncols)
    out = np.empty((nrows * cell_h + (nrows - 1) * gap, ncols * cell_w + (ncols - 1) * gap, 3),
                   dtype=np.uint8)
    out[:] = np.asarray(background, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        y, x = (i // ncols) * (cell_h + gap), (i % ncols) * (cell_w + gap)
        if captions is not None:
            out[y:y + band, x:x + cell_w] = _caption_band(str(captions[i]), cell_w, band)
        h, w = tile.shape[:2]
        out[y + band:y + band + h, x:x + w] = tile
    return out


def hstack(images: Sequence[np.ndarray], captions: Sequence[str] | None = None,
           gap: int = 4) -> np.ndarray:
    """A horizontal strip of images (see ``grid``)."""
    return grid(images, ncols=len(images), captions=captions, gap=gap)


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 H×W×3 (or gray H×W) image as PNG; creates parent folders."""
    path = Path(path)
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 3)):
        raise ValueError(f"{path}: expected a uint8 H×W×3 RGB or H×W image, got {rgb.dtype} {rgb.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = rgb if rgb.ndim == 2 else np.ascontiguousarray(rgb[:, :, ::-1])
    if not cv2.imwrite(str(path), bgr):
        raise RuntimeError(f"{path}: OpenCV could not write the image (check the extension and folder)")
    return path


def save_label_png(path: str | os.PathLike, labels) -> Path:
    """Write an H×W label map (values 0–255, e.g. train ids with 255 = ignore, or Cityscapes
    labelIds) as a single-channel 8-bit PNG; creates parent folders."""
    labels = _labels_np(labels)
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"{path}: label values must lie in 0–255 for an 8-bit PNG, "
                         f"got [{labels.min()}, {labels.max()}]")
    return save_png(path, labels.astype(np.uint8))
