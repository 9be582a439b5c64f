"""Every speed-up of the streaming path is exact against the plain implementation (issue: performance).

The plain reference: an NCHW float32 GSVNet, frames converted to float first, F.interpolate for every
resize, and labels from a full bilinear upsample + argmax. The optimised path is VideoPredictor
(channels-last weights, uint8 frames shrunk by gathering only the sampled rows/columns, the
shrink-then-normalise order, max().indices for argmax, slice shifts, BatchNorm folding, and the
compiled CPU kernels: labels, frame shrink, warp, edge map).
"""
from __future__ import annotations

import copy
from unittest import mock
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.streaming.predictor import VideoPredictor
from models.gsvnet import GSVNet, lowres_size, shrink_uint8
from models import cpu_kernels
from models.labels import logits_to_labels_plain
from models.keyframe_spec import parse_spec

REAL_CKPT = Path(__file__).parent / "data" / "gsvnet_swnet_seq_checkpoint.pth.tar"


def plain_stream(model: GSVNet, frames: np.ndarray, key_interval: int, key_scale: float = 0.75):
    """The reference loop: no layout tricks, float frames, F.interpolate everywhere."""
    outs, prev, prev_lowres = [], None, None
    with torch.inference_mode():
        for i, frame in enumerate(frames):
            x = torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0).float()
            size = lowres_size(*x.shape[-2:])
            lowres = F.interpolate((x / model.seg_divisor - model.rgb_mean) / model.rgb_std, size=size,
                               mode="bilinear", align_corners=True).flip(1)
            logits = model.keyframe(x, key_scale) if i % key_interval == 0 else model.propagate(prev, prev_lowres, lowres)
            outs.append((logits, logits_to_labels_plain(logits, tuple(x.shape[-2:]))[0]))
            prev, prev_lowres = logits, lowres
    return outs


def _compare(model: GSVNet, frames: np.ndarray, key_interval: int = 3) -> None:
    with mock.patch.object(cpu_kernels, "numba", None):  # the reference runs the PyTorch code only
        reference = plain_stream(copy.deepcopy(model).eval(), frames, key_interval)
    predictor = VideoPredictor(model, key_interval=key_interval)
    for t, (frame, (ref_logits, ref_labels)) in enumerate(zip(frames, reference)):
        out = predictor.step(frame)
        scale = max(1.0, ref_logits.abs().max().item())
        assert (out.logits - ref_logits).abs().max().item() <= 1e-5 * scale, f"logits of frame {t}"
        differ = torch.from_numpy(out.labels).long() != ref_labels.long()
        if differ.any():  # only where the top two classes tie within float rounding
            up = F.interpolate(ref_logits, size=frame.shape[:2], mode="bilinear", align_corners=True)[0]
            top2 = up.topk(2, dim=0).values[:, differ]
            assert (top2[0] - top2[1]).abs().max() <= 1e-4 * scale, f"labels of frame {t}"


def _frames(n: int, h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(h // 4, w // 4, 3)).astype(np.uint8)
    big = np.kron(base, np.ones((4, 4, 1), np.uint8))                   # blocky texture, then a pan
    return np.stack([np.roll(big, 3 * t, axis=1) for t in range(n)])


@pytest.mark.parametrize("segnet,size", [("swiftnet", (128, 256)), ("bisenet", (96, 160))])
def test_streaming_path_equals_plain_implementation_random_weights(segnet, size):
    torch.manual_seed(0)
    _compare(GSVNet.build(parse_spec(segnet), "light", 19).eval(), _frames(5, *size, seed=1))


def test_streaming_path_equals_plain_implementation_real_checkpoint():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = VideoPredictor.from_checkpoints(checkpoint=str(REAL_CKPT), fold_bn=False).model  # unfolded
    _compare(model, _frames(4, 128, 256, seed=2), key_interval=4)


@pytest.mark.parametrize("shape", [(1024, 2048), (720, 1280), (97, 61)])
def test_shrink_uint8_equals_interpolate(shape):
    frame = torch.randint(0, 256, (1, 3, *shape), dtype=torch.uint8)
    size = lowres_size(*shape)
    reference = F.interpolate(frame.float(), size=size, mode="bilinear", align_corners=True)
    torch.testing.assert_close(shrink_uint8(frame, size), reference, rtol=0, atol=1e-4)


def test_memory_stays_flat_while_streaming():
    """The predictor keeps only the previous frame's 1/8 logits and image: no state grows per frame."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = VideoPredictor.from_checkpoints(key_interval=3)
    frames = _frames(7, 64, 128, seed=3)
    held = []
    for frame in frames:
        p.step(frame)
        held.append(sum(t.numel() for t in (p._prev_logits, p._prev_lowres)))
    assert len(set(held)) == 1
