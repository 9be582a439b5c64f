"""Memo of the frozen keyframe net's outputs during propagation training (``--cache-keyframes 1``).

The keyframe net never changes during propagation training, so without random augmentation
(``--use-crop 0``) its logits for a given frame are the same every epoch. Caching them (on the CPU)
makes an iteration cost only the flow net and the GSV: the demo's allowed shortcut (docs/deviations.md#demo-shortcuts).
Label-free training (``--pseudo-labels 1``) keeps its teacher targets per frame on disk instead, under any
augmentation (engine/teacher/cache.py).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor


class KeyframeCache:
    """Per-sample outputs keyed by a string; computes only the samples of a batch not seen before."""

    def __init__(self) -> None:
        self.store: dict[str, Tensor] = {}

    def __len__(self) -> int:
        return len(self.store)

    def get(self, keys: Sequence[str], inputs: Tensor, compute: Callable[[Tensor], Tensor]) -> Tensor:
        """keys: one per batch item of ``inputs`` (B×...); compute: batch -> B×... outputs."""
        missing = [i for i, k in enumerate(keys) if k not in self.store]
        if missing:
            with torch.no_grad():
                out = compute(inputs[missing])
            for i, value in zip(missing, out):
                self.store[keys[i]] = value.detach().to("cpu", copy=True)
        return torch.stack([self.store[k] for k in keys]).to(inputs.device)


def frame_key(name: str, offset: int) -> str:
    """Key of the frame ``offset`` frames from ``name`` (a Cityscapes-style city_seq_frame name), so a
    frame seen as a keyframe in one clip and as a last frame in another is computed once."""
    from dataset.cityscapes import frame_name, parse_frame_name
    try:
        city, seq, frame = parse_frame_name(name)
    except ValueError:
        return f"{name}@{offset}"
    return frame_name(city, seq, frame + offset)


def clip_keys(names: Sequence[str], distance: int) -> tuple[list[str], list[str]]:
    """(keyframe keys, last-frame keys) of a batch of clips ending at ``names`` with ``distance`` steps."""
    return [frame_key(n, -distance) for n in names], list(names)
