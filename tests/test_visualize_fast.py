"""Tests for the lookup-table colorize, the uint8 overlay blend and PNG compression levels of
utils/visualize.py: equality with naive per-pixel implementations, hand-computed pixels, lossless
round trips."""
from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch

from utils import visualize

PALETTE = [(10, 20, 30), (200, 100, 0), (1, 2, 3)]
IGNORE = (7, 8, 9)


def _naive_colorize(labels, palette, ignore_color):
    out = np.zeros(labels.shape + (3,), dtype=np.uint8)
    for (y, x), value in np.ndenumerate(labels):
        value = int(value)
        out[y, x] = palette[value] if 0 <= value < len(palette) else ignore_color
    return out


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int32, np.int64])
def test_colorize_equals_naive_loop(dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    specials = [v for v in (255, 3, 4, 254, -1, -5, 256, 300, 2**40, -2**40, info.min, info.max)
                if info.min <= v <= info.max]
    labels = rng.integers(0, len(PALETTE), size=(13, 17)).astype(dtype)
    flat = labels.reshape(-1)
    flat[rng.choice(flat.size, size=4 * len(specials), replace=False)] = np.repeat(specials, 4)
    expected = _naive_colorize(labels, PALETTE, IGNORE)
    got = visualize.colorize(labels, PALETTE, ignore_color=IGNORE)
    assert got.dtype == np.uint8 and got.shape == (13, 17, 3)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(visualize.colorize(torch.from_numpy(labels.astype(np.int64)),
                                                     PALETTE, IGNORE), expected)


def test_colorize_cityscapes_palette_every_id():
    labels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    got = visualize.colorize(labels, visualize.CITYSCAPES_PALETTE)
    np.testing.assert_array_equal(got, _naive_colorize(labels, visualize.CITYSCAPES_PALETTE, (0, 0, 0)))
    assert got[0, 0].tolist() == [128, 64, 128] and got[1, 2].tolist() == [119, 11, 32]  # ids 0, 18
    assert (got.reshape(-1, 3)[19:] == 0).all()


def test_color_table_rows_and_palette_limit():
    table = visualize.color_table(PALETTE, IGNORE)
    assert table.shape == (256, 3) and table.dtype == np.uint8
    assert table[:3].tolist() == [list(c) for c in PALETTE]
    assert (table[3:] == IGNORE).all()
    with pytest.raises(ValueError, match="255 colours"):
        visualize.color_table([(0, 0, 0)] * 256)


def test_overlay_hand_computed_pixels():
    frame = np.array([[[100, 100, 100], [0, 255, 40]],
                      [[100, 100, 100], [9, 9, 9]]], dtype=np.uint8)
    labels = np.array([[0, 1], [255, -3]], dtype=np.int32)
    # alpha 0.5: (100+10)/2=55 (100+20)/2=60 (100+30)/2=65; (0+200)/2=100, (255+100)/2=177.5 -> 178
    # (tie to even), (40+0)/2=20; ignore ids 255 and -3 keep the frame
    out = visualize.overlay(frame, labels, PALETTE, alpha=0.5)
    assert out.tolist() == [[[55, 60, 65], [100, 178, 20]], [[100, 100, 100], [9, 9, 9]]]
    # alpha 0.25: 0.75*100 + 0.25*10 = 77.5 -> 78 (tie to even), 80, 82.5 -> 82
    out = visualize.overlay(frame, labels, PALETTE, alpha=0.25)
    assert out[0, 0].tolist() == [78, 80, 82]
    # the colour image passed in is used as is (here not the palette's colours)
    shared = np.full((2, 2, 3), 200, dtype=np.uint8)
    out = visualize.overlay(frame, labels, PALETTE, alpha=0.5, color_rgb=shared)
    assert out.tolist() == [[[150, 150, 150], [100, 228, 120]], [[100, 100, 100], [9, 9, 9]]]
    # overlay_colored blends every pixel, ignore ones too: (100 + (7, 8, 9))/2 = 53.5, 54, 54.5,
    # ties to even -> 54, 54, 54
    color = visualize.colorize(labels, PALETTE, ignore_color=IGNORE)
    assert visualize.overlay_colored(frame, color, 0.5)[1, 0].tolist() == [54, 54, 54]
    assert visualize.overlay_colored(frame, color, 0.0).tolist() == frame.tolist()
    assert visualize.overlay_colored(frame, color, 1.0).tolist() == color.tolist()
    empty = np.zeros((0, 4), dtype=np.int64)
    assert visualize.overlay(np.zeros((0, 4, 3), np.uint8), empty, PALETTE).shape == (0, 4, 3)
    with pytest.raises(ValueError, match="color_rgb"):
        visualize.overlay_colored(frame, color[:1], 0.5)
    with pytest.raises(ValueError, match="alpha"):
        visualize.overlay_colored(frame, color, 1.5)


def _all_pairs():
    f, c = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    as_rgb = lambda a: np.repeat(a.astype(np.uint8)[:, :, None], 3, axis=2)
    return as_rgb(f), as_rgb(c)


def test_overlay_rounding_against_float64_on_all_value_pairs():
    frame, color = _all_pairs()
    for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):  # exact, as the docstring states
        ref = np.rint((1.0 - alpha) * frame + alpha * color.astype(np.float64)).astype(np.uint8)
        np.testing.assert_array_equal(visualize.overlay_colored(frame, color, alpha), ref)
    alpha = 0.3  # off by at most 1, and only at (near-)ties of the exact blend
    ref = np.rint((1.0 - alpha) * frame + alpha * color.astype(np.float64)).astype(np.int64)
    diff = visualize.overlay_colored(frame, color, alpha).astype(np.int64) - ref
    assert np.abs(diff).max() == 1
    a = Fraction(alpha)
    for y, x in zip(*np.nonzero(diff[:, :, 0])):
        exact = (1 - a) * int(frame[y, x, 0]) + a * int(color[y, x, 0])
        assert abs(exact - (exact.numerator // exact.denominator) - Fraction(1, 2)) < Fraction(2, 10**5)


@pytest.mark.parametrize("compression", [None, 0, 1, 2, 3, 9])
def test_png_round_trip_lossless(tmp_path, compression):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 20, size=(40, 56)).astype(np.uint8)
    labels[:5] = 255
    rgb = visualize.colorize(labels, visualize.CITYSCAPES_PALETTE)
    path = visualize.save_png(tmp_path / f"c{compression}.png", rgb, compression=compression)
    np.testing.assert_array_equal(cv2.imread(str(path))[:, :, ::-1], rgb)
    path = visualize.save_label_png(tmp_path / f"l{compression}.png", labels.astype(np.int64),
                                    compression=compression)
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint8 and back.ndim == 2
    np.testing.assert_array_equal(back, labels)


def test_png_compression_level_takes_effect(tmp_path):
    labels = np.tile(np.arange(64, dtype=np.uint8) % 5, (48, 1))
    raw = visualize.save_label_png(tmp_path / "raw.png", labels, compression=0).stat().st_size
    small = visualize.save_label_png(tmp_path / "small.png", labels, compression=9).stat().st_size
    assert raw > 48 * 64 > small  # level 0 stores the 3072 bytes raw, level 9 compresses
    with pytest.raises(ValueError, match="compression"):
        visualize.save_png(tmp_path / "bad.png", labels, compression=10)
