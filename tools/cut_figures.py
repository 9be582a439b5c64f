"""What the adaptive keyframe policy (engine/keyframe_policy.py) does on the cut footage (tools/cut_footage.py):
the policy alone on the 1/8 images GSVNet.lowres_bgr makes, no network run.

Each clip is streamed from every start frame s < l (so every event meets every phase of the schedule), at
l = 3 (the default) and l = 20. Figures, pooled over clips and start frames:
- cuts keyed: a keyframe on the cut's first frame or the next;
- fades re-keyed: a keyframe between the fade's 5th blended frame and the first frame after it, counted
  only where the fixed schedule has none there (elsewhere the schedule does it anyway);
- added per 80 frames on uncut clips (keyframes the scores triggered, "cut" or "gradual"), and the most
  added within any 80 consecutive frames;
- extra keyframes per isolated flash;
- the largest ratio, over every prefix of every stream, of adaptive to fixed keyframes (the bound: 2).
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch

from engine.keyframe_policy import KeyframePolicy, scene_change_score
from tools.cut_footage import FADE, Clip

INTERVALS = (3, 20)
WINDOW = 80                   # frames: an uncut clip adds at most one keyframe per WINDOW frames
ADDED = ("cut", "gradual")


class ScoredClip:
    """A clip's 1/8 images and consecutive scores, computed once; drift scores cached per (key, frame)."""

    def __init__(self, model, clip: Clip):
        self.clip = clip
        with torch.inference_mode():
            self.lowres = [model.lowres_bgr(torch.from_numpy(f).permute(2, 0, 1)[None]) for f in clip.frames]
        self.scene = [None] + [scene_change_score(a, b) for a, b in zip(self.lowres, self.lowres[1:])]
        self._drift: dict[tuple[int, int], float] = {}

    def drift(self, key: int, i: int) -> float:
        if (key, i) not in self._drift:
            self._drift[key, i] = scene_change_score(self.lowres[key], self.lowres[i])
        return self._drift[key, i]

    def reasons(self, policy: KeyframePolicy, start: int = 0) -> list[str | None]:
        """The policy's reason for every frame of the stream that starts at frame ``start``."""
        out, since, key = [], 0, start
        for i in range(start, len(self.lowres)):
            scene = self.scene[i] if since else None
            drift = self.drift(key, i) if since and policy.wants_drift(since, scene) else None
            is_key = policy.is_keyframe(since, scene, drift)
            out.append(policy.reason)
            since, key = (1, i) if is_key else (since + 1, key)
        return out


def _window_max(frames: list[int], window: int = WINDOW) -> int:
    """Most entries of the sorted list ``frames`` within any ``window`` consecutive frames."""
    return max((sum(1 for g in frames if f <= g < f + window) for f in frames), default=0)


def stream_figures(scored: ScoredClip, key_interval: int, start: int) -> dict:
    """Counts of one stream (module docstring) of the adaptive policy against the fixed one."""
    clip = scored.clip
    adaptive = scored.reasons(KeyframePolicy(key_interval, "adaptive"), start)
    keys = [i for i, r in enumerate(adaptive) if r]
    fixed = set(range(0, len(adaptive), key_interval))
    added = [i for i, r in enumerate(adaptive) if r in ADDED]
    ratio, count = 0.0, 0
    for n, reason in enumerate(adaptive, 1):                      # every prefix of n frames
        count += reason is not None
        ratio = max(ratio, count / math.ceil(n / key_interval))
    f = defaultdict(float, frames=len(adaptive), keys=len(keys), fixed_keys=len(fixed), ratio=ratio)
    for cut in (c - start for c in clip.cuts if c - start > 0):
        f["cuts"] += 1
        f["cuts_keyed"] += cut in keys or cut + 1 in keys
    for fade in (c - start for c in clip.fades if c - start > 0):
        window = set(range(fade + 4, fade + FADE + 1))
        if not window & fixed:
            f["fades"] += 1
            f["fades_keyed"] += bool(window & set(keys))
    if clip.kind == "uncut":
        f["uncut_frames"], f["uncut_added"] = len(adaptive), len(added)
        f["uncut_window_max"] = _window_max(added)
    if clip.kind == "flash":
        f["flashes"] = sum(1 for c in clip.flashes if c - start > 0)
        f["flash_added"] = len(added)
    return f


def footage_figures(model, clips: list[Clip], intervals=INTERVALS, progress=None) -> dict:
    """{l: pooled figures} over every clip and start frame (module docstring)."""
    totals = {l: defaultdict(float) for l in intervals}
    for clip in clips:
        scored = ScoredClip(model, clip)
        for l in intervals:
            for start in range(min(l, len(clip.frames) - 1)):
                f = stream_figures(scored, l, start)
                t = totals[l]
                t["ratio"] = max(t["ratio"], f.pop("ratio"))
                t["uncut_window_max"] = max(t["uncut_window_max"], f.pop("uncut_window_max", 0))
                if clip.kind == "strobe":
                    t["strobe_ratio"] = max(t["strobe_ratio"], f["keys"] / max(f["fixed_keys"], 1))
                for k, v in f.items():
                    t[k] += v
        if progress is not None:
            progress.update()
    return {l: summary(t) for l, t in totals.items()}


def summary(t: dict) -> dict:
    """Rates from the pooled counts (NaN where there was nothing to count)."""
    rate = lambda a, b: t[a] / t[b] if t[b] else float("nan")
    return {"cuts_keyed": rate("cuts_keyed", "cuts"), "cuts": int(t["cuts"]),
            "fades_keyed": rate("fades_keyed", "fades"), "fades": int(t["fades"]),
            "uncut_added_per_80": WINDOW * rate("uncut_added", "uncut_frames"),
            "uncut_window_max": int(t["uncut_window_max"]), "uncut_frames": int(t["uncut_frames"]),
            "flash_added": rate("flash_added", "flashes"), "flashes": int(t["flashes"]),
            "max_ratio": t["ratio"], "strobe_ratio": t["strobe_ratio"],
            "key_rate": rate("keys", "frames"), "fixed_key_rate": rate("fixed_keys", "frames")}
