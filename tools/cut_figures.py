"""What the adaptive keyframe policy (engine/streaming/keyframe_policy.py) does on the cut footage (tools/cut_footage.py):
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
from tqdm import tqdm

from engine.streaming.keyframe_policy import KeyframePolicy, scene_change_score
from tools.cut_footage import FADE, SNIPPETS, Clip, footage

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
    """{l: pooled figures} over every clip and start frame (module docstring). Frees each clip's frames
    once its 1/8 images are made."""
    totals = {l: defaultdict(float) for l in intervals}
    for clip in clips:
        scored = ScoredClip(model, clip)
        clip.frames = []
        for l in intervals:
            for start in range(min(l, len(scored.lowres) - 1)):
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


def policy_figures(model, quick: bool = False) -> dict:
    """{"development"|"held-out": {"<source> <W×H>": {l: summary}}}: the calibration footage and the held-out
    footage (tools/cut_footage.py) at their own size and at 320×180 (quick: 3 snippets per seed, 320×180 only)."""
    out: dict = {}
    for which in ("development", "held-out"):
        out[which] = {}
        for small in ((True,) if quick else (False, True)):
            clips = footage(which, small, count=3 if quick else SNIPPETS)
            sources: dict[str, list[Clip]] = defaultdict(list)
            for clip in clips:
                height, width = clip.frames[0].shape[:2]
                source = clip.name.split(":")[1].split("/")[0] if "seed" in clip.name else {
                    "development": "bikes.mp4", "held-out": "bigbuckbunny + carphone"}[which]
                sources[f"{source.replace('seed', 'synthetic seed ')} {width}×{height}"].append(clip)
            with tqdm(total=len(clips), desc=f"cut footage, {which}", unit="clip") as bar:
                for name, group in sources.items():
                    out[which][name] = footage_figures(model, group, progress=bar)
    return out


def _pct(x: float) -> str:
    return "—" if x != x else f"{100 * x:.0f} %"


def policy_lines(figures: dict) -> list[str]:
    """The markdown section of tools/cut_experiment.py: calibration and held-out footage side by side."""
    lines = ["## (c) The policy alone: calibration footage vs held-out footage", "",
             "Every clip streamed from every start frame s < l. Cuts: keyed on the first frame of the new shot or "
             "the next. Fades (16 frames): a keyframe between the 5th blended frame and the first frame after the "
             "fade, counted where the fixed schedule has none there. Added: keyframes the scores triggered on uncut "
             f"clips, per {WINDOW} frames (most within any {WINDOW}). Flash: extra keyframes per isolated flash. "
             "Ratio: the largest adaptive/fixed keyframe count over every prefix of every stream (strobe: whole "
             "strobe clips).", "",
             "| footage | l | cuts keyed | fades re-keyed | added per 80 uncut frames (most in 80) | extra per flash "
             "| max ratio (strobe) | keyframes / frame (fixed) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for which, sources in figures.items():
        for name, by_l in sources.items():
            for l, f in by_l.items():
                cuts, fades = (f"{_pct(f[k + '_keyed'])} of {f[k]}" if f[k] else "—" for k in ("cuts", "fades"))
                added = f"{f['uncut_added_per_80']:.2f} ({f['uncut_window_max']})" if f["uncut_frames"] else "—"
                flash = f"{f['flash_added']:.2f}" if f["flashes"] else "—"
                strobe = f"{f['strobe_ratio']:.2f}" if f["strobe_ratio"] else "—"
                lines.append(f"| {which}: {name} | {l} | {cuts} | {fades} | {added} | {flash} | "
                             f"{f['max_ratio']:.2f} ({strobe}) | {f['key_rate']:.3f} ({f['fixed_key_rate']:.3f}) |")
    return lines
