"""VideoPredictor with the keyframe policies: fixed (the paper's schedule, unchanged numbers) and adaptive
(an extra keyframe on a scene cut, the interval counter restarting after it)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.predictor import VideoPredictor
from models.gsvnet import GSVNet


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
    return GSVNet.build("swiftnet", "light", 19).eval()


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
