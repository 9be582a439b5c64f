"""Video consistency VC_n (utils/video_consistency.py): a case worked out by hand, invariances, and the streaming
form against the window-by-window definition."""
from __future__ import annotations

import math

import numpy as np
import pytest

from utils.video_consistency import StreamingVC, mean_video_consistency, video_consistency, window_consistency

V = 255  # void
# 4 frames of 2×3 ground truth and prediction
GTS = [np.array(g, np.uint8) for g in ([[0, 0, 1], [1, 2, V]],
                                       [[0, 0, 1], [2, 2, V]],
                                       [[0, 1, 1], [2, 2, 2]],
                                       [[0, 1, 1], [2, 2, 2]])]
PREDS = [np.array(p, np.uint8) for p in ([[0, 0, 1], [1, 1, 0]],
                                         [[0, 0, 0], [1, 1, 0]],
                                         [[0, 1, 0], [2, 1, 0]],
                                         [[0, 1, 0], [2, 1, 1]])]


def test_windows_worked_out_by_hand():
    # frames 0-1: gt constant at (0,0) (0,1) (0,2) (1,1); (1,0) changes 1->2; (1,2) is void in both, so not
    # common (the VSPW script would count it). Prediction constant at all but (0,2): 3 of the 4 agree.
    assert window_consistency(PREDS[0:2], GTS[0:2]) == (3, 4)
    # frames 1-2: gt constant at (0,0) (0,2) (1,0) (1,1); (1,2) void -> 2 is a change. Pred keeps (0,0) (0,2) (1,1).
    assert window_consistency(PREDS[1:3], GTS[1:3]) == (3, 4)
    # frames 2-3: gt constant everywhere (6); the prediction changes only at (1,2)
    assert window_consistency(PREDS[2:4], GTS[2:4]) == (5, 6)
    # frames 0-2: gt constant at (0,0) (0,2) (1,1); the prediction at (0,0) and (1,1)
    assert window_consistency(PREDS[0:3], GTS[0:3]) == (2, 3)
    # frames 1-3: gt constant at (0,0) (0,2) (1,0) (1,1); the prediction at (0,0) (0,2) (1,1)
    assert window_consistency(PREDS[1:4], GTS[1:4]) == (3, 4)


def test_vc_of_the_hand_case():
    # the VSPW script's windows: range(T - n) starts, so the window ending on the last frame is left out
    assert video_consistency(PREDS, GTS, 2) == pytest.approx(100 * (3 / 4 + 3 / 4) / 2)          # 75
    assert video_consistency(PREDS, GTS, 3) == pytest.approx(100 * 2 / 3)
    assert math.isnan(video_consistency(PREDS, GTS, 4))                                             # no window
    # every window
    assert video_consistency(PREDS, GTS, 2, all_windows=True) == pytest.approx(100 * 7 / 9)     # (3/4+3/4+5/6)/3
    assert video_consistency(PREDS, GTS, 3, all_windows=True) == pytest.approx(100 * 17 / 24)   # (2/3+3/4)/2
    assert video_consistency(PREDS, GTS, 4, all_windows=True) == pytest.approx(100 * 2 / 3)
    # a window of one frame: every non-void pixel is common and every prediction constant
    assert video_consistency(PREDS, GTS, 1) == 100.0


@pytest.mark.parametrize("all_windows", [False, True])
def test_streaming_equals_the_definition(all_windows):
    rng = np.random.default_rng(0)
    # few classes and sticky frames, so runs of equal values of every length occur
    gts, preds = [rng.integers(0, 3, (5, 7))], [rng.integers(0, 3, (5, 7))]
    for _ in range(24):
        gts.append(np.where(rng.random((5, 7)) < 0.85, gts[-1], rng.choice([0, 1, 2, V], (5, 7))))
        preds.append(np.where(rng.random((5, 7)) < 0.8, preds[-1], rng.integers(0, 3, (5, 7))))
    stream = StreamingVC((2, 3, 5, 8, 16), all_windows=all_windows)
    for p, g in zip(preds, gts):
        stream.add(p, g)
    assert stream.frames == 25
    for n in (2, 3, 5, 8, 16):
        expected = video_consistency(preds, gts, n, all_windows=all_windows)
        assert 0 < expected < 100
        assert stream.value(n) == pytest.approx(expected, abs=1e-12), n
    short = StreamingVC((8,))
    for p, g in zip(preds[:8], gts[:8]):
        short.add(p, g)
    assert math.isnan(short.value(8))   # 8 frames: the only window ends on the last frame


def test_invariances():
    rng = np.random.default_rng(1)
    gts = [rng.integers(0, 4, (6, 5)) for _ in range(10)]
    static = [gts[0]] * 10
    # a constant prediction scores 100 on any ground truth (VC never compares prediction and ground truth) ...
    assert video_consistency([np.full((6, 5), 2)] * 10, gts, 3) == 100.0
    assert video_consistency([rng.integers(0, 4, (6, 5))] * 10, static, 8) == 100.0
    # ... and so does the ground truth itself
    assert video_consistency(gts, gts, 3) == 100.0
    # renaming the predicted classes changes nothing
    preds = [np.where(rng.random((6, 5)) < 0.7, gts[t], rng.integers(0, 4, (6, 5))) for t in range(10)]
    renamed = [(p + 1) % 4 for p in preds]
    assert video_consistency(renamed, gts, 3) == video_consistency(preds, gts, 3) < 100
    # played backwards, the same windows with every window counted
    assert video_consistency(preds[::-1], gts[::-1], 3, all_windows=True) == \
        pytest.approx(video_consistency(preds, gts, 3, all_windows=True))
    # all void: no common pixel, undefined
    assert math.isnan(video_consistency(preds, [np.full((6, 5), V)] * 10, 3))


def test_mean_over_clips_and_errors():
    assert mean_video_consistency([80.0, math.nan, 90.0]) == pytest.approx(85.0)
    assert math.isnan(mean_video_consistency([math.nan]))
    with pytest.raises(ValueError, match="one size"):
        window_consistency([np.zeros((2, 3))] * 2, [np.zeros((2, 3)), np.zeros((3, 2))])
    with pytest.raises(ValueError, match="n: expected"):
        video_consistency(PREDS, GTS, 0)
    stream = StreamingVC((2,))
    stream.add(PREDS[0], GTS[0])
    with pytest.raises(ValueError, match="frame 1 has size"):
        stream.add(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(KeyError, match="window 3"):
        stream.value(3)
