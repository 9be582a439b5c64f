"""VideoPredictor with the keyframe policies: fixed (the paper's schedule, unchanged numbers) and adaptive
(an extra keyframe on a scene cut, the interval counter restarting after it; a cross-fade re-keyed, a strobe
bounded, at 320×180; the budget restored by reset() and by a new frame size)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from engine.streaming.keyframe_policy import KeyframePolicy
from engine.streaming.predictor import VideoPredictor
from models.gsvnet import GSVNet
from models.keyframe_spec import parse_spec
from tools.cut_footage import cross_fade, with_flashes


def shot(seed: int, frames: int, size=(128, 256)) -> list[np.ndarray]:
    """A static textured shot: smooth random colours (one palette per seed), identical frames."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[0] // 16, size[1] // 16, 3)).astype(np.float32)
    tint = rng.uniform(0.3, 1.0, 3).astype(np.float32)
    image = np.kron(small * tint, np.ones((16, 16, 1), np.float32)).astype(np.uint8)
    return [image.copy() for _ in range(frames)]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GSVNet.build(parse_spec("swiftnet"), "light", 19).eval()


def keyframes(predictor: VideoPredictor, frames: list[np.ndarray]) -> list[int]:
    return [i for i, f in enumerate(frames) if predictor.step(f).is_keyframe]


def test_fixed_schedule_and_numbers_unchanged(model):
    frames = shot(1, 7)
    predictor = VideoPredictor(model, key_interval=3, fold_bn=False)
    outs = [predictor.step(f) for f in frames]
    assert [i for i, o in enumerate(outs) if o.is_keyframe] == [0, 3, 6]
    assert all(o.scene_score is None for o in outs)
    # an independent loop over the model's own methods gives the same logits
    with torch.inference_mode():
        x = [torch.from_numpy(f).permute(2, 0, 1)[None] for f in frames]
        logits, prev = None, None
        for i, xi in enumerate(x):
            low = predictor.model.lowres_bgr(xi)
            logits = (predictor.model.keyframe(xi.float(), 0.75) if i % 3 == 0
                      else predictor.model.propagate(logits, prev, low, "gsv"))
            prev = low
            torch.testing.assert_close(outs[i].logits, logits, rtol=0, atol=0)


def test_adaptive_adds_a_keyframe_at_the_cut_and_restarts_the_count(model):
    frames = shot(1, 5) + shot(2, 7)  # the new shot starts at frame 5
    adaptive = VideoPredictor(model, key_interval=3, fold_bn=False, keyframe_policy="adaptive")
    assert keyframes(adaptive, frames) == [0, 3, 5, 8, 11]
    fixed = VideoPredictor(model, key_interval=3, fold_bn=False)
    assert keyframes(fixed, frames) == [0, 3, 6, 9]


def test_adaptive_never_triggers_on_a_static_clip_and_keeps_the_schedule(model):
    predictor = VideoPredictor(model, key_interval=4, fold_bn=False, keyframe_policy="adaptive")
    frames = shot(3, 9)
    outs = [predictor.step(f) for f in frames]
    assert [i for i, o in enumerate(outs) if o.is_keyframe] == [0, 4, 8]
    assert all(o.scene_score == 0.0 for i, o in enumerate(outs) if i not in (0,))


def test_threshold_is_used(model):
    frames = shot(1, 3) + shot(2, 3)
    never = VideoPredictor(model, key_interval=10, fold_bn=False, keyframe_policy="adaptive", scene_threshold=0.999)
    assert keyframes(never, frames) == [0]
    with pytest.raises(ValueError):
        VideoPredictor(model, key_interval=3, keyframe_policy="sometimes")


# ---------------------------------------------------------------- the bounded policy at 320×180
def pan(seed: int, frames: int, tint, size=(180, 320)) -> list[np.ndarray]:
    """A camera panning 2 px per frame over a smooth texture of colour ``tint``, with sensor noise."""
    rng = np.random.default_rng(seed)
    (h, w), m = size, 2 * frames
    noise = rng.standard_normal(((h + m) // 16 + 2, (w + m) // 16 + 2, 3)).astype(np.float32)
    scene = np.clip(np.array(tint, np.float32) + 35 * cv2.resize(noise, (w + m, h + m),
                                                                interpolation=cv2.INTER_CUBIC), 0, 255)
    return [np.clip(scene[t:t + h, 2 * t:2 * t + w] + rng.normal(0, 2, (h, w, 3)), 0, 255).astype(np.uint8)
            for t in range(frames)]


def test_adaptive_at_320x180_cut_fade_strobe(model):
    """320×180 frames (1/8 grid 22×40: 180/8 = 22.5 rounds down, the logits and both 1/8 images alike), l = 20:
    a hard cut at 30 is keyed on 30 or 31; a 16-frame cross-fade (blended frames 50..65) gets a triggered
    keyframe in 54..66 (the schedule restarted at the cut has 50 and 70, outside); a strobe (every other frame
    of 70..109 flashed) never lifts the count above twice the fixed schedule's on any prefix. The decisions are
    KeyframePolicy.decide's on the predictor's own 1/8 images."""
    clip = pan(1, 30, (90, 120, 170)) + cross_fade(pan(2, 36, (170, 130, 80)), pan(3, 60, (110, 160, 110)))
    clip = with_flashes(clip, range(71, 110, 2))
    assert len(clip) == 110
    predictor = VideoPredictor(model, key_interval=20, fold_bn=False, keyframe_policy="adaptive")
    outs, reasons = [], []
    for frame in clip:
        outs.append(predictor.step(frame))
        reasons.append(predictor.policy.reason)
    assert outs[0].logits.shape == (1, 19, 22, 40)
    keys = [i for i, o in enumerate(outs) if o.is_keyframe]
    assert 30 in keys or 31 in keys
    assert {reasons[k] for k in keys if 54 <= k <= 66} & {"cut", "gradual"}, [(k, reasons[k]) for k in keys]
    assert all(sum(k < n for k in keys) <= 2 * -(-n // 20) for n in range(1, len(clip) + 1))
    assert len(keys) > len(range(0, 110, 20))                       # the strobe did add keyframes
    assert any(o.drift_score is not None for o in outs) and outs[1].drift_score is None   # not 1 after a key
    with torch.inference_mode():
        lowres = [predictor.model.lowres_bgr(torch.from_numpy(f).permute(2, 0, 1)[None]) for f in clip]
    assert KeyframePolicy(20, "adaptive").decide(lowres) == reasons


def test_reset_and_a_new_frame_size_restore_the_budget(model):
    """A strobe spends the budget (l = 10); after reset(), or a frame of another size, the stream starts again
    with one extra keyframe in hand, so a cut on the second frame is keyed at once."""
    frames = with_flashes(pan(4, 12, (90, 120, 170), (128, 256)), range(1, 12, 2))
    cut = [pan(4, 1, (90, 120, 170), (128, 256))[0], pan(5, 1, (170, 130, 80), (128, 256))[0]]
    predictor = VideoPredictor(model, key_interval=10, fold_bn=False, keyframe_policy="adaptive")
    assert keyframes(predictor, frames) == [0, 1, 10]              # one in hand at 1, the next earned by 10
    assert keyframes(predictor, cut) == []                          # no credit left: the cut waits
    predictor.reset()
    assert keyframes(predictor, cut) == [0, 1]
    smaller = [cv2.resize(f, (128, 64)) for f in cut]
    assert keyframes(predictor, smaller) == [0, 1]                  # new size: a new stream
