"""Temporal consistency (utils/temporal_consistency.py) and DIS flow (utils/optical_flow.py):
hand-computed cases, an independent loop implementation, a flip invariance, the synthetic
generator's true flow, and DIS on a known shift."""
import math

import cv2
import numpy as np
import pytest

from dataset.synthetic import extras_paths, generate
from utils.optical_flow import (DisFlowCache, dis_backward_flow, forward_backward_valid)
from utils.temporal_consistency import TemporalConsistency, warp_labels_nearest


def _zero_flow(h, w):
    return np.zeros((h, w, 2), np.float32)


def _tc(pairs, num_classes=3):
    tc = TemporalConsistency(num_classes)
    for pair in pairs:
        tc.add(*pair)
    return tc.result()


# ---------------------------------------------------------------- hand-made cases
def test_identical_labels_zero_flow_is_100():
    labels = np.random.default_rng(0).integers(0, 3, (5, 7)).astype(np.uint8)
    r = _tc([(labels, labels, _zero_flow(5, 7))])
    assert r == {"miou": 100.0, "miou_unmasked": 100.0, "excluded_fraction": 0.0, "pairs": 1}


def test_integer_shift_with_exact_flow_is_100():
    h, w, (u, v) = 6, 9, (2, 1)
    rng = np.random.default_rng(1)
    prev = rng.integers(0, 3, (h, w))
    cur = rng.integers(0, 3, (h, w))                  # right/bottom edge: content new to frame t
    cur[:h - v, :w - u] = prev[v:, u:]                # frame_t(x, y) = frame_{t-1}(x + 2, y + 1)
    flow = np.broadcast_to(np.float32([u, v]), (h, w, 2))
    r = _tc([(prev, cur, flow)])
    assert r["miou"] == 100.0 and r["miou_unmasked"] == 100.0
    # pixels whose flow leaves the frame: the last u columns and the last v rows
    assert r["excluded_fraction"] == (h * w - (h - v) * (w - u)) / (h * w)
    # the opposite flow samples the wrong pixels
    assert _tc([(prev, cur, -flow)])["miou"] < 60


# 4×4, zero flow. Frame t-1: columns 0-1 class 0, columns 2-3 class 1. Frame t: the same, except
# the two pixels (0, 0) and (1, 0) flipped to class 1.
PREV = np.array([[0, 0, 1, 1]] * 4)
CUR = PREV.copy()
CUR[0, 0] = CUR[1, 0] = 1
# class 0: intersection 6, union 8 (in t-1: 8, in t: 6) -> 3/4
# class 1: intersection 8, union 10 (in t-1: 8, in t: 10) -> 4/5
FLIPPED_TC = 100 * (3 / 4 + 4 / 5) / 2          # 77.5


def test_flipped_region_hand_computed():
    r = _tc([(PREV, CUR, _zero_flow(4, 4))])
    assert r["miou"] == pytest.approx(FLIPPED_TC, abs=1e-9)
    assert r["miou_unmasked"] == pytest.approx(FLIPPED_TC, abs=1e-9)
    assert r["excluded_fraction"] == 0.0
    # symmetric in the two frames (IoU is)
    assert _tc([(CUR, PREV, _zero_flow(4, 4))])["miou"] == pytest.approx(FLIPPED_TC, abs=1e-9)


def test_pairs_are_pooled_not_averaged():
    # second pair: 16 pixels of class 1 in both frames (its own mIoU is 100)
    ones = np.ones((4, 4), int)
    r = _tc([(PREV, CUR, _zero_flow(4, 4)), (ones, ones, _zero_flow(4, 4))])
    # class 0: 6 / 8; class 1: (8 + 16) / (10 + 16); a mean of per-pair mIoUs would give 88.75
    assert r["miou"] == pytest.approx(100 * (6 / 8 + 24 / 26) / 2, abs=1e-9)
    assert r["pairs"] == 2


def test_masked_pixels_are_excluded_exactly():
    valid = np.ones((4, 4), bool)
    valid[0, 0] = valid[1, 0] = False               # exactly the flipped pixels
    r = _tc([(PREV, CUR, _zero_flow(4, 4), valid)])
    assert r["miou"] == 100.0
    assert r["miou_unmasked"] == pytest.approx(FLIPPED_TC, abs=1e-9)
    assert r["excluded_fraction"] == 2 / 16


def test_out_of_frame_and_non_finite_flow_are_excluded():
    flow = _zero_flow(4, 4)
    flow[:, 3, 0] = 0.6            # column 3: x + 0.6 rounds to 4, outside a 4-wide frame
    flow[3, 0] = np.nan            # one non-finite vector
    flow[2, 0] = (-0.4, 0.49)      # rounds back onto itself: stays inside
    r = _tc([(PREV, CUR, flow)])
    assert r["excluded_fraction"] == 5 / 16
    # left: column 3 (4 px) and (3, 0). class 0: I 5, U 7 (t-1: 7, t: 5); class 1: I 4, U 6
    expected = 100 * (5 / 7 + 4 / 6) / 2
    assert r["miou"] == pytest.approx(expected, abs=1e-9)
    assert r["miou_unmasked"] == pytest.approx(expected, abs=1e-9)   # out-of-frame is out in both


def test_ignored_current_pixels_are_not_scored():
    cur = CUR.copy()
    cur[0, 0] = cur[1, 0] = 255                      # the flipped pixels become "ignore"
    valid = np.ones((4, 4), bool)
    valid[3, 3] = False
    r = _tc([(PREV, cur, _zero_flow(4, 4), valid)])
    assert r["excluded_fraction"] == 1 / 14          # denominator: the 14 scored pixels
    assert r["miou_unmasked"] == 100.0


def test_warp_labels_nearest_rounding_and_fill():
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    flow = _zero_flow(3, 4)
    flow[0, 0] = (1.4, 0.0)        # -> x 1
    flow[0, 1] = (0.6, 1.2)        # -> x 2, y 1
    flow[1, 0] = (0.5, 0.0)        # x 0.5 rounds half to even -> 0
    flow[1, 1] = (0.5, 0.0)        # x 1.5 -> 2
    flow[2, 3] = (0.0, -2.6)       # y -0.6 -> -1: outside
    warped, inside = warp_labels_nearest(labels, flow, fill=99)
    expected = labels.copy()
    expected[0, 0], expected[0, 1], expected[1, 0], expected[1, 1], expected[2, 3] = 1, 6, 4, 6, 99
    np.testing.assert_array_equal(warped, expected)
    assert warped.dtype == np.uint8 and inside.sum() == 11 and not inside[2, 3]


# ---------------------------------------------------------------- independent checks
def _reference_tc(pairs, num_classes):
    """Pixel loops and per-class sets: an implementation sharing no code with the module."""
    inter, union = [0] * num_classes, [0] * num_classes
    for prev, cur, flow, valid in pairs:
        h, w = cur.shape
        for y in range(h):
            for x in range(w):
                sx, sy = x + float(flow[y, x, 0]), y + float(flow[y, x, 1])
                if not (valid[y, x] and -0.5 < sx < w - 0.5 and -0.5 < sy < h - 0.5):
                    continue
                a, b = int(prev[int(round(sy)), int(round(sx))]), int(cur[y, x])
                inter[a] += a == b
                union[a] += 1
                union[b] += a != b
    return 100 * np.mean([i / u for i, u in zip(inter, union) if u])


def test_matches_independent_loop_implementation():
    rng = np.random.default_rng(3)
    pairs = []
    for _ in range(3):
        prev, cur = rng.integers(0, 4, (7, 9)), rng.integers(0, 4, (7, 9))
        # quarter-pixel offsets keep every position away from a rounding tie
        flow = (rng.integers(-12, 13, (7, 9, 2)) + 0.25).astype(np.float32)
        pairs.append((prev, cur, flow, rng.random((7, 9)) < 0.8))
    assert _tc(pairs, 4)["miou"] == pytest.approx(_reference_tc(pairs, 4), abs=1e-9)


def test_horizontal_flip_invariance():
    rng = np.random.default_rng(4)
    prev, cur = rng.integers(0, 3, (6, 10)), rng.integers(0, 3, (6, 10))
    flow = rng.uniform(-3, 3, (6, 10, 2)).astype(np.float32)
    valid = rng.random((6, 10)) < 0.7
    flipped_flow = flow[:, ::-1] * np.float32([-1, 1])    # mirror the field and its x component
    a = _tc([(prev, cur, flow, valid)])
    b = _tc([(prev[:, ::-1], cur[:, ::-1], flipped_flow, valid[:, ::-1])])
    for key in ("miou", "miou_unmasked", "excluded_fraction"):
        assert a[key] == pytest.approx(b[key], abs=1e-9)


def test_synthetic_true_flow_gives_full_consistency(tmp_path):
    """The generator's labels, carried by its stored flow (same convention), agree on every valid
    pixel; the negated or zero flow does not."""
    generate(tmp_path, num_train=0, num_val=1, height=64, width=128, num_frames=4, gt_index=1,
             progress=False, workers=1)
    ex = [extras_paths(tmp_path, "val", f"corrington_000000_{275 + t:06d}") for t in range(4)]
    labels = [cv2.imread(str(e["train_ids"]), cv2.IMREAD_UNCHANGED) for e in ex]
    flows = [np.load(e["flow"]).astype(np.float32) for e in ex]
    valids = [cv2.imread(str(e["valid"]), cv2.IMREAD_UNCHANGED) > 0 for e in ex]
    assert min(np.abs(f).max() for f in flows[1:]) > 2          # the camera really moves
    results = {}
    for name, sign in (("true", 1), ("negated", -1), ("zero", 0)):
        tc = TemporalConsistency(19)
        for t in range(1, 4):
            tc.add(labels[t - 1], labels[t], sign * flows[t], valids[t])
        results[name] = tc.result()
    # float16 storage may move a rare rounding; in practice 100.0 here
    assert results["true"]["miou"] >= 99.9
    assert results["true"]["miou_unmasked"] < results["true"]["miou"]
    assert results["negated"]["miou"] < 95 and results["zero"]["miou"] < 95


def test_empty_accumulator_is_nan():
    r = TemporalConsistency(3).result()
    assert math.isnan(r["miou"]) and math.isnan(r["excluded_fraction"]) and r["pairs"] == 0


# ---------------------------------------------------------------- DIS flow
def _texture(rng, h, w):
    noise = rng.standard_normal((h // 4, w // 4, 3)).astype(np.float32)
    image = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    image += 0.3 * rng.standard_normal(image.shape).astype(np.float32)
    return np.clip(128 + 40 * image, 0, 255).astype(np.uint8)


def test_dis_recovers_a_known_shift():
    h, w = 96, 128
    big = _texture(np.random.default_rng(5), h + 20, w + 20)
    prev, cur = big[10:10 + h, 10:10 + w], big[12:12 + h, 13:13 + w]   # cur(x, y) = prev(x+3, y+2)
    flow, valid = dis_backward_flow(prev, cur)
    assert flow.shape == (h, w, 2) and flow.dtype == np.float32 and valid.dtype == bool
    interior = (slice(8, h - 8), slice(8, w - 8))
    assert np.abs(flow[interior] - np.float32([3, 2])).max() < 0.5
    assert valid[interior].mean() > 0.9
    assert not valid[:, w - 3:].any()          # x + 3 leaves the frame: never reliable


def test_forward_backward_rule_hand_computed():
    h, w = 4, 32
    bwd = np.broadcast_to(np.float32([10, 0]), (h, w, 2))
    check = lambda fx: forward_backward_valid(bwd, np.broadcast_to(np.float32([fx, 0]), (h, w, 2)))
    # |b+f|^2 <= 0.01 (|b|^2 + |f|^2) + 0.5, b = 10:
    # f = -8.6: 1.96 <= 2.2396 reliable; f = -8.4: 2.56 > 2.2056 not
    assert check(-8.6)[:, :22].all() and not check(-8.4).any()
    assert not check(-8.6)[:, 22:].any()       # x + 10 > 31: outside frame t-1
    zero = np.zeros((h, w, 2), np.float32)
    off = zero.copy()
    off[..., 1] = 0.75                         # 0.5625 > 0.5 (no motion: only beta counts)
    assert forward_backward_valid(zero, zero).all() and not forward_backward_valid(zero, off).any()


def test_dis_cache_computes_each_pair_once():
    rng = np.random.default_rng(6)
    frames = [_texture(rng, 32, 48) for _ in range(4)]
    cache = DisFlowCache(max_pairs=2)
    first = cache.get(0, 1, frames[0], frames[1])
    assert cache.get(0, 1, frames[0], frames[1]) is first and cache.computed == 1
    cache.get(1, 2, frames[1], frames[2])
    cache.get(2, 3, frames[2], frames[3])        # evicts (0, 1), the least recently used
    assert len(cache) == 2 and cache.computed == 3
    again = cache.get(0, 1, frames[0], frames[1])
    assert cache.computed == 4 and again is not first
    np.testing.assert_array_equal(again[0], first[0])   # DIS is deterministic
