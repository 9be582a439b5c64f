"""Appearance of the synthetic street videos: procedural texture tiles per surface and object kind, and
shading a rendered frame's geometry with them (deterministic given the generator's random stream)."""
from __future__ import annotations

import cv2
import numpy as np

from dataset.synthetic_scene import SKY_OBJ, TILE, TILE_NAMES


# ----------------------------------------------------------------------------- appearance
def _noise(rng, cells, size=TILE):
    """Periodic smooth noise (size×size, zero mean, unit std): bicubic upsampling of a tiled grid."""
    grid = np.tile(rng.standard_normal((cells, cells), dtype=np.float32), (3, 3))
    n = cv2.resize(grid, (3 * size, 3 * size), interpolation=cv2.INTER_CUBIC)[size:2 * size, size:2 * size]
    return (n - n.mean()) / (n.std() + 1e-6)


def _fbm(rng, cells=(4, 8, 16, 32)):
    n = sum(_noise(rng, c) / (i + 1) for i, c in enumerate(cells))
    return n / n.std()


def _rgb(rng, lo, hi):
    return rng.uniform(lo, hi, 3).astype(np.float32)


def _paint(colour, shade, *spots):
    """A T×T×4 tile: colour × shade (T×T) in RGB, with spots = (mask, colour) painted over them;
    channel 3 is the tint mask (1 = takes the object's tint, 0 = keeps its own colour)."""
    rgb, tint = np.float32(colour) * shade[..., None], np.ones(shade.shape, np.float32)
    for mask, c in spots:
        rgb[mask], tint[mask] = np.float32(c) * shade[mask, None], 0.0
    return np.dstack([np.clip(rgb, 0, 1), tint]).astype(np.float32)


def _mix(rng, cells, light, dark, amp=0.45):
    w = np.clip(0.5 + amp * _fbm(rng, cells), 0, 1)[..., None]
    return np.dstack([w * light + (1 - w) * dark, np.ones((TILE, TILE))]).astype(np.float32)


def _surface_tiles(rng, u, v):
    """Ground and facade materials (u across, v down, both in [0, 1) over one tile)."""
    x, glass, fine = np.abs(u - 0.5), (0.14, 0.18, 0.24), 1 + 0.05 * _noise(rng, 64)
    row = np.floor(v * 8)
    mortar = (v * 8 % 1 < 0.14) | ((u * 4 + 0.5 * (row % 2)) % 1 < 0.06)
    return {
        "road": _paint((0.36, 0.36, 0.38), 1 + 0.1 * _fbm(rng) * fine,
                       (((x < 0.012) & (v < 0.5)) | (np.abs(x - 0.475) < 0.01), (0.85,) * 3)),
        "sidewalk": _paint((0.62, 0.6, 0.57), (1 + 0.07 * _fbm(rng))
                           * np.where((u % 0.5 < 0.025) | (v % 0.5 < 0.025), 0.72, 1.0)),
        "terrain": _mix(rng, (4, 8), (0.42, 0.55, 0.2), (0.55, 0.45, 0.3), 0.4),
        "building0": _paint((0.85, 0.83, 0.8), 1 + 0.04 * _fbm(rng),
                            ((x < 0.26) & (np.abs(v - 0.55) < 0.29), (0.95,) * 3),
                            ((x < 0.22) & (np.abs(v - 0.55) < 0.25), glass)),
        "building1": _paint((0.66, 0.36, 0.27), np.where(mortar, 1.2, 1 + 0.1 * _noise(rng, 32)),
                            ((x < 0.18) & (np.abs(v - 0.5) < 0.22), glass)),
        "building2": _paint((0.25, 0.33, 0.42), 1 + 0.3 * (0.5 - v) + 0.03 * _fbm(rng),
                            ((u % 0.5 < 0.04) | (v < 0.12), (0.72,) * 3)),
        "vegetation": _mix(rng, (8, 16, 32, 64), (0.36, 0.52, 0.16), (0.08, 0.18, 0.05)),
        "wall": _paint((0.6, 0.6, 0.58), (1 + 0.07 * _fbm(rng)) * np.where(u % 0.5 < 0.015, 0.75, 1)),
        "fence": _paint((0.58, 0.47, 0.36),
                        (1 + 0.06 * _noise(rng, 64)) * np.where(u * 8 % 1 < 0.15, 0.45, 1)),
    }


def _object_tiles(rng, u, v):
    """Billboard materials; each tile spans its whole object (u across, v down)."""
    x, r, one, glass = np.abs(u - 0.5), np.hypot(u - 0.5, v - 0.5), np.ones_like(u), (0.14, 0.18, 0.24)
    fine = lambda a: 1 + a * _noise(rng, 64)
    lit, lamps = rng.integers(3), ((1.0, 0.15, 0.1), (1.0, 0.75, 0.1), (0.2, 1.0, 0.4))
    wheels, white = (v > 0.88) & (x > 0.28), (0.93,) * 3
    skin = _rgb(rng, 0.35, 0.9) * np.float32((1, 0.78, 0.62))
    return {
        "pole": _paint((0.55, 0.56, 0.58), (0.45 + 0.5 * np.sin(np.pi * u)) * fine(0.03)),
        "sign0": _paint(white, one, (r > 0.36, (0.8, 0.08, 0.08)),
                        ((np.abs(v - 0.5) < 0.07) & (x < 0.24), (0.1,) * 3)),
        "sign1": _paint((0.8, 0.08, 0.08), one, ((v > 0.3) & (v < 0.86) & (v - 0.3 > 2.3 * x), white)),
        "sign2": _paint((0.1, 0.3, 0.75), one, ((x > 0.44) | (np.abs(v - 0.5) > 0.44), white),
                        ((x < 0.08) & (np.abs(v - 0.52) < 0.28), white)),
        "light": _paint((0.12, 0.12, 0.12), fine(0.05), *[
            (np.hypot((u - 0.5) / 0.34, (v - c) / 0.13) < 1, np.float32(col) * (1 if i == lit else 0.25))
            for i, (c, col) in enumerate(zip((1 / 6, 0.5, 5 / 6), lamps))]),
        "car": _paint((0.85, 0.85, 0.85), fine(0.03), ((v > 0.08) & (v < 0.42) & (x < 0.3), glass),
                      ((v > 0.5) & (v < 0.62) & (x > 0.32) & (x < 0.46), (0.9, 0.1, 0.1)),
                      ((v > 0.66) & (v < 0.76) & (x < 0.12), (0.9,) * 3), (v > 0.8, (0.15,) * 3),
                      (wheels, (0.05,) * 3)),
        "truck": _paint((0.8, 0.8, 0.8), fine(0.04) * np.where((x < 0.01) | (v * 6 % 1 < 0.05), 0.7, 1),
                        (v > 0.84, (0.12,) * 3), (wheels, (0.05,) * 3)),
        "bus": _paint((0.85, 0.85, 0.85), fine(0.03), ((v > 0.08) & (v < 0.45) & (x < 0.42), glass),
                      ((v > 0.02) & (v < 0.07) & (x < 0.3), (1.0, 0.6, 0.1)), (v > 0.86, (0.12,) * 3)),
        "person": _paint((0.85, 0.85, 0.85), fine(0.04), (v < 0.14, skin),
                         (v >= 0.58, _rgb(rng, 0.08, 0.45)), (v > 0.95, (0.08,) * 3)),
        "bark": _paint((0.33, 0.24, 0.17),
                       (1 + 0.2 * np.broadcast_to(_noise(rng, 16)[:1], u.shape)) * fine(0.1)),
        "canopy": _mix(rng, (8, 16, 32, 64), (0.4, 0.55, 0.2), (0.1, 0.2, 0.06)),
    }


def _tiles(rng):
    """One T×T×4 tile per TILE_NAMES entry (RGB in [0, 1] + tint mask), freshly drawn."""
    v, u = (np.mgrid[0:TILE, 0:TILE].astype(np.float32) + 0.5) / TILE
    tiles = {**_surface_tiles(rng, u, v), **_object_tiles(rng, u, v)}
    return [tiles[name] for name in TILE_NAMES]


def appearance(rng, scene, num_frames):
    """Per-snippet look: texture atlases (sharp, blurred, tile means), sky, hood, illumination."""
    tiles = _tiles(rng)
    periodic_blur = lambda t: cv2.GaussianBlur(np.tile(t, (3, 3, 1)), (0, 0), 2.0)[TILE:-TILE, TILE:-TILE]
    pad = lambda t: np.pad(t, ((0, 1), (0, 1), (0, 0)), mode="wrap")   # so bilinear wraps
    H, W = scene.height, scene.width
    elev = np.clip((scene.cy - np.arange(H, dtype=np.float32)) / scene.focal / 0.35, 0, 1)
    horizon = _rgb(rng, 0.7, 0.95)
    zenith = np.float32([rng.uniform(0.2, 0.45), rng.uniform(0.4, 0.62), rng.uniform(0.7, 0.95)])
    sky = horizon + (zenith - horizon) * elev[:, None, None]
    clouds = cv2.resize(_fbm(rng, (3, 6, 12, 24)), (W, H), interpolation=cv2.INTER_LINEAR)
    cover = np.clip((clouds - rng.uniform(-0.5, 1.5)) * 0.7, 0, 1)[..., None]
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float32)
    glint = np.exp(-((cols - W * rng.uniform(0.2, 0.8)) / (0.15 * W)) ** 2) * (rows > 0.9 * H)
    drift = rng.uniform(-0.1, 0.1) * (np.arange(num_frames) / max(num_frames - 1, 1) - 0.5)
    return {"atlas": np.concatenate([pad(t) for t in tiles], axis=1),
            "atlas_soft": np.concatenate([pad(periodic_blur(t)) for t in tiles], axis=1),
            "means": np.stack([t.reshape(-1, 4).mean(0) for t in tiles]),
            "sky": sky + (np.float32(rng.uniform(0.8, 0.97)) - sky) * cover,
            "hood": _rgb(rng, 0.05, 0.35) * (1.2 - 0.6 * rows / H)[..., None] + 0.25 * glint[..., None],
            "fog": horizon, "fog_dist": rng.uniform(150, 600), "contrast": rng.uniform(0.8, 1.15),
            "gain": (rng.uniform(0.75, 1.25) * (1 + drift)).astype(np.float32),
            "rgb": _rgb(rng, 0.9, 1.1),     # sensor noise: windows of one field at random offsets
            "noise": rng.standard_normal((H + 32, W + 32, 3), dtype=np.float32) * rng.uniform(0.8, 2.5)}


def shade(scene, look, g, t, rng):
    """RGB uint8 H×W×3 of frame t from the ray hits g (see render_geometry)."""
    o, obj = scene.obj, g["obj"]
    take = lambda name: np.take(o[name], obj, axis=0)        # much faster than o[name][obj]
    wrap = lambda x: x - np.floor(x * np.float32(1 / TILE)) * np.float32(TILE)   # np.mod is slow
    tile = take("tile")
    tu = wrap(g["a"] * take("su") + take("ou")) + (tile * (TILE + 1)).astype(np.float32)
    tv = wrap(g["b"] * take("sv") + take("ov"))
    sharp = cv2.remap(look["atlas"], tu, tv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    soft = cv2.remap(look["atlas_soft"], tu, tv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # Texels per pixel decide the mip blend (sharp -> blurred -> tile mean): mild anti-aliasing.
    footprint = take("tpm") * g["depth"] * g["obl"] * np.float32(1 / scene.focal)
    col = sharp + (soft - sharp) * np.clip((footprint - 1) * np.float32(1 / 3), 0, 1)[..., None]
    far = np.clip((footprint - 4) * np.float32(1 / 12), 0, 1)[..., None]
    col += (np.take(look["means"], tile, axis=0) - col) * far
    rgb = col[..., :3] * (1 + col[..., 3:] * (take("tint") - 1))
    rgb += (look["fog"] - rgb) * (1 - np.exp(-g["depth"] / np.float32(look["fog_dist"])))[..., None]
    np.copyto(rgb, look["sky"], where=(obj == SKY_OBJ)[..., None])
    np.copyto(rgb, look["hood"], where=scene.hood[..., None])
    gain = look["gain"][t] * look["rgb"]
    rgb = rgb * (np.float32(look["contrast"]) * gain) + (0.5 - 0.5 * np.float32(look["contrast"])) * gain
    rgb = cv2.GaussianBlur(rgb, (3, 3), 0.6)
    dy, dx = rng.integers(0, 33, 2)
    rgb = rgb * 255 + look["noise"][dy:dy + rgb.shape[0], dx:dx + rgb.shape[1]]
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
