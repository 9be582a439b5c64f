"""Procedural street scenes for the synthetic dataset: a layered 2.5-D world with exact flow.

World frame: X right, Y down, Z forward, in metres; the ground is the plane Y = 0. The camera only
translates (no rotation, so sky and ego hood are static on screen): C_t = (x_t, -h + bob_t, z_t).
Pinhole with pixel centres at integer coordinates: u = cx + f * X_cam / Z_cam (cy is a half-pixel
so no row lies on the horizon). Every surface is planar and rigid, and one per-snippet object table
describes them all:
  ground strips  Y = 0, class by X (road with lane marks, sidewalk, terrain);
  facades        planes X = const split along Z into building / vegetation / wall / fence / gap
                 segments (a near and a far plane per side give parallax and disocclusion);
  billboards     planes Z = const with a shape mask: pole, sign, traffic light, tree, car, truck,
                 bus, person; vehicles move along Z, people along X or Z.
Rendering casts one ray per pixel at its centre, so labels are exact (nearest by construction);
the colours are shaded from the same ray hits in dataset/synthetic.py. Backward flow is
exact: a pixel p at depth Z sees P = C_t + Z d(p); that material point was at P - m at t-1 (m = the
object's motion per frame), which projects to p' in camera t-1, so flow_t(p) = p' - p with
Z_cam' = Z + delta_z and delta = (C_t - C_{t-1}) - m. Valid = p' inside the frame and frame t-1
shows the same object at round(p').
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Cityscapes labelIds (tests check them against cityscapesscripts.helpers.labels).
EGO, ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE = 1, 7, 8, 11, 12, 13, 17
LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR, TRUCK, BUS = 19, 20, 21, 22, 23, 24, 26, 27, 28
SKY_OBJ, HOOD_OBJ = 0, 1                      # fixed object indices of the two screen-space layers
RECT, ELLIPSE, TRIANGLE, CAR_SHAPE, BOX, HUMAN, BLOB = range(7)   # billboard shapes
TILE = 128                                    # texture tile size (texels)
TILE_NAMES = ("road", "sidewalk", "terrain", "building0", "building1", "building2", "vegetation",
              "wall", "fence", "pole", "sign0", "sign1", "sign2", "light", "car", "truck", "bus",
              "person", "bark", "canopy")
NEAR, FAR = 0.5, 260.0                        # billboard clipping depths (m)


@dataclass
class Scene:
    """One snippet's geometry: camera path, object table and surfaces (appearance is separate)."""
    height: int
    width: int
    focal: float
    cx: float
    cy: float
    cam: np.ndarray          # T×3 float64 camera centres
    obj: dict                # object table: field -> array over objects (see _Table.FIELDS)
    ground: tuple            # (X bounds (S-1,), object ids (S,))
    facades: list            # per plane: (x, side, z0 (n,), height (n,), wave (n,3), ids (n,))
    boards: dict             # billboard arrays: id, x0, x1, y0, y1, z, shape
    hood: np.ndarray         # H×W bool, the ego vehicle's bonnet


class _Table:
    """Growing object table; every field is one array entry per object."""
    FIELDS = dict(label=0, tile=0, su=1.0, sv=1.0, ou=0.0, ov=0.0, tpm=1.0, instance=False,
                  phase=0.0, tint=(1.0, 1.0, 1.0), vel=(0.0, 0.0, 0.0))

    def __init__(self):
        self.rows = []

    def add(self, **kw) -> int:
        self.rows.append({**self.FIELDS, **kw})
        return len(self.rows) - 1

    def arrays(self) -> dict:
        out = {k: np.array([r[k] for r in self.rows]) for k in self.FIELDS}
        for k in ("su", "sv", "ou", "ov", "tpm", "phase", "tint", "vel"):
            out[k] = out[k].astype(np.float32)
        return out


def _tile(name: str) -> int:
    return TILE_NAMES.index(name)


def _colour(rng, lo=0.25, hi=1.0):
    return tuple(float(c) for c in rng.uniform(lo, hi, 3))


def _camera(rng, num_frames):
    """Camera path: mostly driving forward, sometimes slow; a little lateral drift and bob."""
    speed = rng.uniform(0.0, 0.25) if rng.random() < 0.15 else rng.uniform(0.3, 0.8)
    t = np.arange(num_frames, dtype=np.float64)
    height = rng.uniform(1.15, 1.45)
    bob = 0.015 * np.sin(2 * np.pi * t / rng.uniform(8, 16) + rng.uniform(0, 2 * np.pi))
    cam = np.stack([rng.uniform(-0.02, 0.02) * t, -height + bob, speed * t], axis=1)
    return cam, speed


def _street(rng, tab, cam):
    """Ground strips and facade planes on both sides of a straight street."""
    half_road = rng.uniform(3.4, 6.5)
    walk = rng.uniform(1.8, 4.5, 2)
    verge = np.where(rng.random(2) < 0.5, rng.uniform(0.8, 3.5, 2), 0.0)
    walk_tint, verge_tint = (rng.uniform(0.8, 1.15),) * 3, _colour(rng, 0.75, 1.1)
    strips = [(TERRAIN, "terrain", verge_tint), (TERRAIN, "terrain", verge_tint),
              (SIDEWALK, "sidewalk", walk_tint), (ROAD, "road", _colour(rng, 0.85, 1.1)),
              (SIDEWALK, "sidewalk", walk_tint), (TERRAIN, "terrain", verge_tint),
              (TERRAIN, "terrain", verge_tint)]
    scale = {"road": TILE / (2 * half_road), "sidewalk": TILE / 2.0, "terrain": TILE / 4.0}
    ids = []
    for label, name, tint in strips:
        su = scale[name]
        ids.append(tab.add(label=label, tile=_tile(name), su=su, sv=TILE / 12.0 if name == "road"
                           else su, ou=half_road * su if name == "road" else 0.0, tpm=su, tint=tint))
    edge = half_road + walk + verge + rng.uniform(0, 1.0, 2)
    bounds = np.array([-half_road - walk[0] - verge[0], -half_road - walk[0],
                       -half_road, half_road, half_road + walk[1], half_road + walk[1] + verge[1]])
    z_lo, z_hi = cam[0, 2] - 5.0, cam[-1, 2] + 400.0
    facades = []
    for side, x in ((-1, -edge[0]), (1, edge[1])):
        shade = rng.uniform(0.6, 1.05)
        facades.append(_facade(rng, tab, side, x, z_lo, z_hi, shade, near=True))
        facades.append(_facade(rng, tab, side, x + side * rng.uniform(10, 25), z_lo, z_hi,
                               shade, near=False))
    return half_road, walk, (bounds, np.array(ids)), facades


def _facade(rng, tab, side, x, z_lo, z_hi, shade, near):
    """Segments of one facade plane: (x, side, z0, height, wave(amp, freq, phase), ids)."""
    z0s, heights, waves, ids = [], [], [], []
    z = z_lo
    kinds = ("building", "vegetation", "wall", "fence", "gap")
    probs = (0.6, 0.18, 0.07, 0.07, 0.08) if near else (0.7, 0.3, 0.0, 0.0, 0.0)
    while z < z_hi:
        kind = kinds[rng.choice(5, p=probs)]
        length = rng.uniform(8, 30) if near else rng.uniform(15, 45)
        wave = (0.0, 0.0, 0.0)
        if kind == "building":
            height = rng.uniform(6, 24) if near else rng.uniform(10, 35)
            bay, storey = rng.uniform(2.4, 4.0), rng.uniform(2.8, 3.6)
            tint = tuple(shade * c for c in _colour(rng, 0.45, 1.05))
            oid = tab.add(label=BUILDING, tile=_tile(f"building{rng.integers(3)}"), su=TILE / bay,
                          sv=TILE / storey, ou=rng.uniform(0, TILE), tpm=TILE / bay, tint=tint)
        elif kind == "vegetation":
            height = rng.uniform(3, 9) if near else rng.uniform(8, 16)
            wave = (rng.uniform(0.3, 1.2), rng.uniform(0.3, 1.0), rng.uniform(0, 6.3))
            oid = tab.add(label=VEGETATION, tile=_tile("vegetation"), su=TILE / 3, sv=TILE / 3,
                          tpm=TILE / 3, tint=tuple(shade * c for c in _colour(rng, 0.75, 1.1)))
        elif kind in ("wall", "fence"):
            height = rng.uniform(1.0, 2.5)
            oid = tab.add(label=WALL if kind == "wall" else FENCE, tile=_tile(kind), su=TILE / 2,
                          sv=TILE / height, tpm=TILE / 2,
                          tint=tuple(shade * c for c in _colour(rng, 0.7, 1.1)))
        else:
            height, oid = -1.0, tab.add(label=0)       # a gap shows what lies behind
        z0s.append(z), heights.append(height), waves.append(wave), ids.append(oid)
        z += length
    return x, side, np.array(z0s), np.array(heights), np.array(waves), np.array(ids)


def _spaced(rng, lo, hi, gap_min, gap_max):
    z, out = lo + rng.uniform(0, gap_max), []
    while z < hi:
        out.append(z)
        z += rng.uniform(gap_min, gap_max)
    return out


CAR_PAINT = ((0.95, 0.95, 0.95), (0.15, 0.15, 0.17), (0.55, 0.56, 0.58), (0.75, 0.1, 0.1),
             (0.15, 0.25, 0.6), (0.72, 0.74, 0.77), (0.2, 0.35, 0.22), (0.85, 0.72, 0.3))


def _vehicle(rng):
    """(label, tile, shape, width, height, tint) of a random car, truck or bus."""
    tint = tuple(c * rng.uniform(0.9, 1.1) for c in CAR_PAINT[rng.integers(len(CAR_PAINT))])
    r = rng.random()
    if r < 0.82:
        return CAR, "car", CAR_SHAPE, rng.uniform(1.7, 1.95), rng.uniform(1.4, 1.65), tint
    if r < 0.91:
        return TRUCK, "truck", BOX, rng.uniform(2.3, 2.55), rng.uniform(2.8, 3.6), tint
    return BUS, "bus", BOX, 2.55, rng.uniform(2.9, 3.2), tint


def _boards(rng, tab, cam, speed, half_road, walk, lanes):
    """Billboards: street furniture, trees, parked and moving vehicles, people."""
    rows = []

    def board(x, width, top, bottom, z, shape, **kw):
        kw.setdefault("su", TILE), kw.setdefault("sv", TILE), kw.setdefault("tpm", TILE / width)
        rows.append((tab.add(**kw), x - width / 2, x + width / 2, top, bottom, z, shape))

    n_frames, z0 = len(cam), cam[0, 2]
    z_lo, z_hi = z0 + 1.0, cam[-1, 2] + 120.0
    for i, side in enumerate((-1, 1)):
        curb = side * (half_road + 0.35)
        for z in _spaced(rng, z_lo, z_hi, 12, 30):
            # Poles are thicker than real ones so they stay a few pixels wide at 256×512.
            h, r, w = rng.uniform(4, 7.5), rng.random(), rng.uniform(0.2, 0.3)
            board(curb, w, -h, 0.0, z, RECT, label=POLE, tile=_tile("pole"), sv=TILE * h / 2)
            if r < 0.35:
                k, s, y = rng.integers(3), rng.uniform(0.6, 0.9), -rng.uniform(2.2, 3.0)
                board(curb, s, y - s / 2, y + s / 2, z - 0.03, (ELLIPSE, TRIANGLE, RECT)[k],
                      label=SIGN, tile=_tile(f"sign{k}"), tint=_colour(rng, 0.85, 1.1))
            elif r < 0.5:
                board(curb, 0.35, -h, -h + 0.9, z - 0.03, RECT, label=LIGHT, tile=_tile("light"))
        if rng.random() < 0.6:
            for z in _spaced(rng, z_lo, z_hi, 7, 18):
                x, th = side * (half_road + rng.uniform(0.8, max(walk[i] - 0.3, 0.9))), rng.uniform(1.8, 3)
                w, hc = rng.uniform(2.5, 4.5), rng.uniform(2.5, 4.0)
                board(x, 0.3, -th, 0.0, z, RECT, label=VEGETATION, tile=_tile("bark"), sv=TILE * th / 2)
                board(x + rng.uniform(-0.3, 0.3), w, -th + 0.4 - hc, -th + 0.4, z - 0.02, BLOB,
                      label=VEGETATION, tile=_tile("canopy"), su=TILE * w / 3, sv=TILE * hc / 3,
                      tpm=TILE / 3, phase=rng.uniform(0, 6.3), tint=_colour(rng, 0.8, 1.1))
        if lanes[3][i]:
            for z in _spaced(rng, z_lo, z_hi, 6, 22):
                label, tile, shape, w, h, tint = _vehicle(rng)
                board(side * (half_road - 1.2), w, -h, 0.0, z, shape, label=label, tile=_tile(tile),
                      tint=tint, instance=True)
        for _ in range(rng.integers(1, 6)):
            x = side * (half_road + rng.uniform(0.5, max(walk[i] - 0.3, 0.6)))
            _person(rng, board, x, z0 + rng.uniform(4, speed * n_frames + 80),
                    (0.0, 0.0, rng.choice((-1, 1)) * rng.uniform(0.03, 0.1)))
    for _ in range(rng.integers(0, 3)):                  # people crossing the street ahead
        _person(rng, board, rng.uniform(-half_road, half_road), cam[-1, 2] + rng.uniform(12, 60),
                (rng.choice((-1, 1)) * rng.uniform(0.05, 0.12), 0.0, 0.0))
    _traffic(rng, board, cam, speed, lanes)
    cols = list(zip(*rows))
    return {k: np.array(v, dtype=np.int32 if k in ("id", "shape") else np.float64)
            for k, v in zip(("id", "x0", "x1", "y0", "y1", "z", "shape"), cols)}


def _person(rng, board, x, z, vel):
    w, h = rng.uniform(0.5, 0.62), rng.uniform(1.55, 1.9)
    board(x, w, -h, 0.0, z, HUMAN, label=PERSON, tile=_tile("person"), vel=vel,
          tint=_colour(rng, 0.15, 1.0), instance=True)


def _traffic(rng, board, cam, speed, lanes):
    """Moving vehicles: same-direction lanes (x > 0) and oncoming lanes (x < 0)."""
    (lane_w, n_lanes, own, _), n_frames, z0 = lanes, len(cam), cam[0, 2]
    for lane in range(-n_lanes, n_lanes):
        x = (lane + 0.5) * lane_w
        last = -np.inf
        for z_rel in np.sort(rng.uniform(8, 120, rng.integers(0, 4))):
            if lane < 0:
                v = -rng.uniform(0.4, 1.3)
            elif lane == own:          # keep a safe distance ahead of the camera
                v = speed + rng.uniform(-0.05, 0.35)
                if z_rel + (v - speed) * n_frames < 7:
                    continue
            else:
                v = max(0.0, speed + rng.uniform(-0.6, 0.4))
            if z_rel - last < 10:
                continue
            last = z_rel
            label, tile, shape, w, h, tint = _vehicle(rng)
            board(x, w, -h, 0.0, z0 + z_rel, shape, label=label, tile=_tile(tile), tint=tint,
                  vel=(0.0, 0.0, v), instance=True)


def sample_scene(rng: np.random.Generator, height: int, width: int, num_frames: int) -> Scene:
    """Draw one snippet's world (geometry, motion, per-object texture parameters)."""
    tab = _Table()
    tab.add(label=SKY), tab.add(label=EGO)                  # SKY_OBJ, HOOD_OBJ
    cam, speed = _camera(rng, num_frames)
    half_road, walk, ground, facades = _street(rng, tab, cam)
    parking = (rng.random(2) < 0.5) & (half_road > 5.5)      # parked cars need a free lane
    drive = half_road - 2.3 * parking.any()
    n_lanes = max(1, int(drive // 3.0))
    lanes = (drive / n_lanes, n_lanes, int(rng.integers(n_lanes)), parking)
    cam[:, 0] += (lanes[2] + 0.5) * lanes[0]
    boards = _boards(rng, tab, cam, speed, half_road, walk, lanes)
    cols = np.arange(width) - width / 2
    hood_top = height * (1 - rng.uniform(0.05, 0.1)) + 0.05 * height * (cols / (width / 2)) ** 2
    return Scene(height, width, focal=float(width), cx=(width - 1) / 2,   # f = W: 53 degrees wide
                 cy=round(height * rng.uniform(0.40, 0.47)) - 0.5, cam=cam, obj=tab.arrays(),
                 ground=ground, facades=facades, boards=boards,
                 hood=np.arange(height)[:, None] >= hood_top[None, :])
