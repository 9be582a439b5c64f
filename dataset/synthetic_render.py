"""Rendering the synthetic street scenes (dataset/synthetic_scene.py): one ray per pixel centre gives
exact labels, object ids and depth; backward flow and its validity follow from the rigid motion of
each surface (the derivation is in synthetic_scene's docstring)."""
from __future__ import annotations

import numpy as np

from dataset.synthetic_scene import BOX, CAR_SHAPE, ELLIPSE, FAR, HOOD_OBJ, HUMAN, NEAR, RECT, SKY_OBJ, TRIANGLE, Scene


def _shape(kind, s, t, phase):
    """Billboard mask in normalised coordinates s (across, W') and t (down, H'×1)."""
    x = np.abs(s - 0.5)
    if kind == RECT:
        return np.ones(np.broadcast_shapes(s.shape, t.shape), bool)
    if kind == ELLIPSE:
        return x ** 2 + (t - 0.5) ** 2 < 0.25
    if kind == TRIANGLE:
        return t >= 2 * x
    if kind == CAR_SHAPE:      # body, narrower cabin, gap under the chassis between the wheels
        return ((t >= 0.42) | ((t >= 0.04) & (x < 0.3 + 0.45 * (t - 0.04)))) & ~((t > 0.9) & (x < 0.3))
    if kind == BOX:
        return (t <= 0.9) | (x >= 0.3)
    if kind == HUMAN:
        head = (x / 0.16) ** 2 + ((t - 0.075) / 0.075) ** 2 < 1
        torso = (t >= 0.14) & (t < 0.58) & (x < 0.36 - 0.1 * (t - 0.14))
        legs = (t >= 0.58) & (x < 0.22) & ~((x < 0.04) & (t > 0.75))   # gap only between the shins
        return head | torso | legs
    ang, r = np.arctan2(t - 0.5, s - 0.5), np.hypot(s - 0.5, t - 0.5)
    return r < 0.5 * (0.82 + 0.1 * np.sin(5 * ang + phase) + 0.08 * np.sin(9 * ang + 2 * phase))


def rays(scene: Scene):
    """Ray slopes of the pixel centres: dx (W,), dy (H,) float32 (ray = (dx, dy, 1))."""
    dx = (np.arange(scene.width) - scene.cx) / scene.focal
    dy = (np.arange(scene.height) - scene.cy) / scene.focal
    return dx.astype(np.float32), dy.astype(np.float32)


def render_geometry(scene: Scene, t: int) -> dict:
    """Ray-cast frame t: object index, camera depth Z, surface coordinates (a, b) in metres
    (billboards: normalised 0..1) and the texture obliquity (metres per pixel / (Z/f)), all H×W."""
    H, W = scene.height, scene.width
    cam, (dx, dy) = scene.cam[t], rays(scene)
    obj = np.zeros((H, W), np.int16)
    g = {"obj": obj, "depth": np.full((H, W), np.inf, np.float32),
         "a": np.zeros((H, W), np.float32), "b": np.zeros((H, W), np.float32),
         "obl": np.ones((H, W), np.float32)}
    r0 = int(np.ceil(scene.cy))                              # first row below the horizon
    z = np.float32(-cam[1]) / dy[r0:, None]                  # (H-r0)×1
    xw = np.float32(cam[0]) + z * dx
    bounds, ids = scene.ground
    obj[r0:] = ids[np.searchsorted(bounds, xw)]
    g["depth"][r0:], g["a"][r0:], g["b"][r0:] = z, xw, np.float32(cam[2]) + z
    g["obl"][r0:] = z / np.float32(-cam[1])
    for x, side, z0, height, wave, seg_ids in scene.facades:
        cols = slice(int(np.floor(scene.cx)) + 1, W) if side > 0 else slice(0, int(np.ceil(scene.cx)))
        zc = ((x - cam[0]) / dx[cols]).astype(np.float32)       # W'
        zw = cam[2] + zc
        j = np.searchsorted(z0, zw, side="right") - 1
        top = -height[j] + wave[j, 0] * np.sin(wave[j, 1] * zw + wave[j, 2])
        yw = (cam[1] + zc[None, :] * dy[:, None]).astype(np.float32)     # H×W'
        hit = (yw >= top) & (yw < 0) & (zc < g["depth"][:, cols])
        full = lambda v: np.broadcast_to(v, hit.shape)[hit]
        obj[:, cols][hit] = full(seg_ids[j])
        g["depth"][:, cols][hit], g["a"][:, cols][hit], g["b"][:, cols][hit] = full(zc), full(zw), yw[hit]
        g["obl"][:, cols][hit] = full(zc / np.float32(abs(x - cam[0])))
    _render_boards(scene, t, g)
    obj[scene.hood] = HOOD_OBJ
    g["depth"][scene.hood] = 1.0
    g["depth"][obj == SKY_OBJ] = 1e4
    return g


def _render_boards(scene, t, g):
    bd, vel, cam = scene.boards, scene.obj["vel"][scene.boards["id"]], scene.cam[t]
    zc = bd["z"] + vel[:, 2] * t - cam[2]
    u0 = scene.cx + scene.focal * (bd["x0"] + vel[:, 0] * t - cam[0]) / zc
    u1 = scene.cx + scene.focal * (bd["x1"] + vel[:, 0] * t - cam[0]) / zc
    v0 = scene.cy + scene.focal * (bd["y0"] - cam[1]) / zc
    v1 = scene.cy + scene.focal * (bd["y1"] - cam[1]) / zc
    c0, c1 = (np.clip(np.ceil(u), 0, scene.width).astype(int) for u in (u0, u1))
    r0, r1 = (np.clip(np.ceil(v), 0, scene.height).astype(int) for v in (v0, v1))
    for i in np.flatnonzero((zc > NEAR) & (zc < FAR) & (c1 > c0) & (r1 > r0)):
        s = ((np.arange(c0[i], c1[i]) - u0[i]) / (u1[i] - u0[i])).astype(np.float32)[None, :]
        tt = ((np.arange(r0[i], r1[i]) - v0[i]) / (v1[i] - v0[i])).astype(np.float32)[:, None]
        box = (slice(r0[i], r1[i]), slice(c0[i], c1[i]))
        hit = _shape(bd["shape"][i], s, tt, scene.obj["phase"][bd["id"][i]]) & (zc[i] < g["depth"][box])
        g["obj"][box][hit] = bd["id"][i]
        g["depth"][box][hit] = zc[i]
        g["a"][box][hit] = np.broadcast_to(s, hit.shape)[hit]
        g["b"][box][hit] = np.broadcast_to(tt, hit.shape)[hit]
        g["obl"][box][hit] = 1.0


def backward_flow(scene: Scene, t: int, obj: np.ndarray, depth: np.ndarray):
    """Exact backward flow of frame t (H×W×2 float32, x first, pixels) and a mask of pixels whose
    material point lies in front of camera t-1 (H×W bool). Frame 0 gets zero flow."""
    H, W = obj.shape
    if t == 0:
        return np.zeros((H, W, 2), np.float32), np.zeros((H, W), bool)
    dx, dy = rays(scene)
    delta = (scene.cam[t] - scene.cam[t - 1]).astype(np.float32) - np.take(scene.obj["vel"], obj, axis=0)
    z_prev = depth + delta[..., 2]
    ahead = z_prev > 0.05
    z_prev = np.where(ahead, z_prev, 1.0)
    fx = scene.focal * (depth * dx[None, :] + delta[..., 0]) / z_prev - scene.focal * dx[None, :]
    fy = scene.focal * (depth * dy[:, None] + delta[..., 1]) / z_prev - scene.focal * dy[:, None]
    flow = np.stack([fx, fy], axis=-1).astype(np.float32)
    flow[(obj <= HOOD_OBJ) | ~ahead] = 0.0                   # sky and hood are static on screen
    return flow, ahead


def flow_validity(obj: np.ndarray, prev_obj: np.ndarray, flow: np.ndarray, ahead: np.ndarray):
    """H×W bool: p + flow(p) rounds to a pixel inside frame t-1 that shows the same object."""
    H, W = obj.shape
    xs = np.rint(np.arange(W)[None, :] + flow[..., 0]).astype(np.int64)
    ys = np.rint(np.arange(H)[:, None] + flow[..., 1]).astype(np.int64)
    inside = (xs >= 0) & (xs < W) & (ys >= 0) & (ys < H)
    same = prev_obj[np.clip(ys, 0, H - 1), np.clip(xs, 0, W - 1)] == obj
    return inside & same & ahead


def instance_ids(scene: Scene, obj: np.ndarray) -> np.ndarray:
    """Cityscapes instanceIds (H×W int32): labelId*1000 + per-class index for visible instances
    (numbered from 0 in object order), the plain labelId elsewhere."""
    labels = scene.obj["label"].astype(np.int32)
    out = np.take(labels, obj)
    counters = {}
    for oid in np.unique(obj[scene.obj["instance"][obj]]):
        k = counters.get(labels[oid], 0)
        out[obj == oid] = labels[oid] * 1000 + k
        counters[labels[oid]] = k + 1
    return out
