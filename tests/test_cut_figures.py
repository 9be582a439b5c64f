"""The cut experiment's policy figures (tools/cut_figures.py) and footage clips (tools/cut_footage.py) on clips of
flat colours, whose scene scores are exactly 0 (same colour) or 1 (another colour: disjoint histograms), so every
count is worked out by hand; the in-memory synthetic snippets against the generator's PNGs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from models.gsvnet import GSVNet
from models.keyframe_spec import parse_spec
from tools.cut_figures import ScoredClip, _window_max, footage_figures, policy_lines, stream_figures
from dataset.video import read_rgb
from tools.cut_footage import Clip, cross_fade, splice_clips, synthetic_snippets


def flat(value: int, frames: int) -> list[np.ndarray]:
    return [np.full((64, 96, 3), value, np.uint8) for _ in range(frames)]


@pytest.fixture(scope="module")
def model():
    return GSVNet.build(parse_spec("swiftnet")).eval()


def test_scores_of_flat_clips_are_zero_or_one(model):
    scored = ScoredClip(model, Clip("cut:x", flat(40, 3) + flat(200, 2), cuts=(3,)))
    assert scored.scene == [None, 0.0, 0.0, 1.0, 0.0]
    assert scored.drift(0, 4) == 1.0 and scored.drift(3, 4) == 0.0


def test_cut_counted_from_every_start_frame(model):
    """A cut at 10 of a 20-frame clip, l = 3: 10 is off the schedule from every start s (stream frame 10 − s:
    10, 9, 8, of which 9 is scheduled), and keyed every time."""
    scored = ScoredClip(model, Clip("cut:x", flat(40, 10) + flat(200, 10), cuts=(10,)))
    for start in range(3):
        f = stream_figures(scored, 3, start)
        assert f["cuts"] == 1 and f["cuts_keyed"] == 1
        assert f["fixed_keys"] == math.ceil((20 - start) / 3) and f["frames"] == 20 - start
    # the adaptive stream from 0: 0, 3, 6, 9 (schedule), 10 (cut), 13, 16, 19 (schedule restarted)
    assert stream_figures(scored, 3, 0)["keys"] == 8


def test_strobe_reaches_the_bound_and_uncut_adds_nothing(model):
    strobe = [frame for pair in zip(flat(40, 30), flat(200, 30)) for frame in pair]       # every frame differs
    f = stream_figures(ScoredClip(model, Clip("strobe:x", strobe, flashes=tuple(range(1, 60, 2)))), 20, 0)
    assert f["ratio"] == 2.0                        # e.g. frames 0 and 1 keyed against the fixed schedule's 1
    assert f["keys"] <= 2 * f["fixed_keys"]
    u = stream_figures(ScoredClip(model, Clip("uncut:x", flat(90, 200))), 20, 0)
    assert (u["uncut_frames"], u["uncut_added"], u["uncut_window_max"], u["keys"]) == (200, 0, 0, 10)


def test_fade_window_and_pooled_summary(model):
    """Fade bookkeeping (blended frames 24..39, window 28..40) at l = 20. A grey that turns at frame 30 is keyed
    there: counted from start 3 (fixed keyframes 3, 23, 43: none in the window), not from start 0 (fixed 40 is
    in it). A real blend of flat greys is a strobe to the policy (every blended grey differs from the one
    before): it spends its budget on blended frames 24 and 25 and misses the window."""
    turn = Clip("fade:x", flat(40, 30) + flat(200, 34), fades=(24,))
    f0, f3 = (stream_figures(ScoredClip(model, turn), 20, s) for s in (0, 3))
    assert (f0["fades"], f3["fades"], f3["fades_keyed"]) == (0, 1, 1)
    blend = Clip("fade:x", cross_fade(flat(40, 40), flat(200, 40)), fades=(24,))
    assert len(blend.frames) == 64
    f3 = stream_figures(ScoredClip(model, blend), 20, 3)
    assert (f3["fades"], f3["fades_keyed"]) == (1, 0)
    totals = footage_figures(model, [Clip("fade:x", flat(40, 30) + flat(200, 34), fades=(24,))],
                             intervals=(20,))
    # starts 0..19 (fixed at s, s + 20, s + 40): counted where no fixed keyframe falls in 28..40, keyed each time
    counted = sum(not any(28 <= k <= 40 for k in range(s, 64, 20)) for s in range(20))
    assert totals[20]["fades"] == counted and totals[20]["fades_keyed"] == 1.0 and totals[20]["max_ratio"] <= 2.0
    lines = policy_lines({"development": {"grey 96×64": totals}})
    row = f"| development: grey 96×64 | 20 | — | 100 % of {counted} | — | — | 2.00 (—) |"
    assert lines[-1].startswith(row)


def test_window_max_and_splice_clips():
    assert _window_max([0, 50, 79, 200]) == 3 and _window_max([0, 80, 160]) == 1 and _window_max([]) == 0
    shots = [flat(10 * (i + 1), 30) for i in range(3)]
    clips = splice_clips(shots, "g")
    assert [c.kind for c in clips[:5]] == ["uncut", "cut", "fade", "flash", "strobe"] and len(clips) == 15
    cut, fade, flash = clips[1], clips[2], clips[3]
    assert cut.cuts == (30,) and len(cut.frames) == 60 and cut.frames[30][0, 0, 0] == 20
    assert fade.fades == (14,) and len(fade.frames) == 44
    assert flash.flashes == (12,) and flash.frames[12][0, 0, 0] == round(10 + 0.7 * 245)
    assert clips[-4].cuts == (30,) and clips[-4].frames[30][0, 0, 0] == 10          # the last shot wraps to the first


def test_synthetic_snippets_equal_the_generators_frames(synthetic_data):
    """Rendered in memory, the frames equal the PNGs `dataset.synthetic.generate` writes (same seed, snippet,
    size), byte for byte."""
    data = synthetic_data(num_val=1, num_frames=6, gt_index=4)
    paths = sorted((data / "leftImg8bit_sequence" / "val").glob("*/*_leftImg8bit.png"))
    rendered = synthetic_snippets(0, count=1, frames=6, size=(64, 128))
    assert len(paths) == 6 and len(rendered) == 1
    for path, frame in zip(paths, rendered[0]):
        np.testing.assert_array_equal(read_rgb(path), frame)
