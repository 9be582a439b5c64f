"""Compiled CPU kernels (numba) for the streaming hot spots; each equals a PyTorch reference.

- ``labels``: bilinear upsample + argmax of low-resolution logits without the C×H×W upsampled tensor
  (reference: models.labels.logits_to_labels_plain);
- ``shrink_normalise``: a uint8 H×W×3 frame -> the normalised BGR 1/8 image (reference:
  GSVNet.lowres_bgr on the float frame);
- ``warp``: bilinear backward warp with zeros outside (reference: F.grid_sample in models.warp);
- ``edge``: the GSV's edge map (reference: GSV.edge_map's argmax + Laplacian);
- ``resize``: bilinear align_corners=True resize of feature maps (reference: F.interpolate).
The callers use them only on CPU float32 tensors that need no gradient, and only if numba is
installed; otherwise the PyTorch code runs. They are compiled on first use (a few seconds) and
cached next to this file. Arithmetic follows the reference's order, so results agree to float
rounding (the edge map and labels exactly, up to ties).

``with cpu_kernels.disabled():`` turns them off for the code inside (the ONNX export traces the plain
PyTorch path of the same model this way); ``available()`` is what every caller consults, after its
cheaper device and dtype checks.

Start-up: numba is imported by the first ``available()`` (~0.15 s), not with this module, so a process
that never runs a kernel (CUDA, export, training steps) does not pay it; the first kernel call of a
process then loads its cached machine code (~0.3 s on a 2-core EPYC, most of it numba setting up its
typing registries once, which imports scipy.linalg for its BLAS check; each further kernel ~10 ms).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import threading
from typing import Iterator

import numpy as np
import torch

_NOT_IMPORTED = "numba: not imported yet"
# The numba module once imported; None when it is not installed (the PyTorch paths give the same
# results, only slower) or while a test switches the kernels off this way.
numba = _NOT_IMPORTED
_IMPORT_LOCK = threading.Lock()


# A context variable, not a plain flag: the switch holds for the thread (and asyncio task) that set it.
_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("cpu_kernels_enabled", default=True)


def _numba():
    """The numba module, imported on the first call; None if it cannot be imported."""
    global numba
    if numba is _NOT_IMPORTED:
        with _IMPORT_LOCK:
            if numba is _NOT_IMPORTED:
                try:
                    numba = importlib.import_module("numba")
                except ImportError:
                    numba = None
    return numba


def available() -> bool:
    """True when numba is installed and no ``disabled()`` context is active (imports numba the first time)."""
    return _ENABLED.get() and _numba() is not None


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the block on the PyTorch reference paths (nests; the previous state returns on exit, also
    after an exception)."""
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def follow_torch_threads() -> None:
    """Use as many threads as torch does. numba and torch share one OpenMP runtime here, so lowering
    numba's count below torch's could lower torch's too: in that case (NUMBA_NUM_THREADS set lower) leave it."""
    nb, threads = _numba(), torch.get_num_threads()
    if threads <= nb.config.NUMBA_NUM_THREADS and threads != nb.get_num_threads():
        nb.set_num_threads(threads)


class _Kernel:
    """``numba.njit(parallel=True, cache=True)`` of ``fn``, made on the first call (after ``available()``);
    the plain Python function is never called."""

    def __init__(self, fn):
        functools.update_wrapper(self, fn)
        self.py_func = fn
        self._dispatcher = None
        self._lock = threading.Lock()

    def __call__(self, *args):
        if self._dispatcher is None:
            with self._lock:
                if self._dispatcher is None:
                    self._dispatcher = _numba().njit(parallel=True, cache=True, nogil=True)(self.py_func)
        return self._dispatcher(*args)


@_Kernel
def labels(v, cy, ay, col_start, ax, out):  # pragma: no cover - compiled
    """Bilinear upsample + argmax. v: h×w×C float32 logits; cy/ay: cell row and weight of the lower
    corner per output row; col_start: cell j covers output columns [col_start[j], col_start[j+1]);
    ax: weight of the right corner per output column; out: H×W uint8, filled in place.

    Per cell, a class whose best corner is below the best worst corner (a value some class keeps
    everywhere in the cell) cannot win: only the remaining candidates are interpolated, and a cell
    with one candidate is filled without interpolating.
    """
    h, w, num_classes = v.shape
    one = np.float32(1.0)
    cand = np.empty((h - 1, w - 1, num_classes), np.uint8)   # candidates in ascending class order:
    count = np.empty((h - 1, w - 1), np.int32)               # ties then resolve like argmax
    for i in numba.prange(h - 1):
        for j in range(w - 1):
            guaranteed = -np.inf
            for c in range(num_classes):
                low = min(min(v[i, j, c], v[i, j + 1, c]), min(v[i + 1, j, c], v[i + 1, j + 1, c]))
                guaranteed = max(guaranteed, low)
            n = 0
            for c in range(num_classes):
                high = max(max(v[i, j, c], v[i, j + 1, c]), max(v[i + 1, j, c], v[i + 1, j + 1, c]))
                if high >= guaranteed:
                    cand[i, j, n] = c
                    n += 1
            count[i, j] = n
    for y in numba.prange(out.shape[0]):
        i, a = cy[y], ay[y]
        a1 = one - a
        left = np.empty(num_classes, np.float32)    # candidates blended along y: left / right column
        right = np.empty(num_classes, np.float32)
        for j in range(w - 1):
            x0, x1, n = col_start[j], col_start[j + 1], count[i, j]
            if x0 == x1:
                continue
            if n == 1:
                out[y, x0:x1] = cand[i, j, 0]
                continue
            for k in range(n):
                c = cand[i, j, k]
                left[k] = a1 * v[i, j, c] + a * v[i + 1, j, c]
                right[k] = a1 * v[i, j + 1, c] + a * v[i + 1, j + 1, c]
            for x in range(x0, x1):
                b = ax[x]
                b1 = one - b
                best, arg = b1 * left[0] + b * right[0], 0
                for k in range(1, n):
                    value = b1 * left[k] + b * right[k]
                    if value > best:
                        best, arg = value, k
                out[y, x] = cand[i, j, arg]


@_Kernel
def shrink_normalise(frame, y0, y1, ay, x0, x1, ax, divisor, mean, std, out):  # pragma: no cover - compiled
    """frame: B×H×W×3 uint8 RGB; y0/y1/ay, x0/x1/ax: bilinear taps (align_corners=True) per output row /
    column; out: B×3×h×w float32 BGR = ((blend along x, then along y) / divisor − mean[c]) / std[c]."""
    batch, h, w = out.shape[0], out.shape[2], out.shape[3]
    one = np.float32(1.0)
    for by in numba.prange(batch * h):
        b, y = by // h, by % h
        a = ay[y]
        for x in range(w):
            bx = ax[x]
            for c in range(3):
                top = (one - bx) * np.float32(frame[b, y0[y], x0[x], c]) + bx * np.float32(frame[b, y0[y], x1[x], c])
                bot = (one - bx) * np.float32(frame[b, y1[y], x0[x], c]) + bx * np.float32(frame[b, y1[y], x1[x], c])
                out[b, 2 - c, y, x] = (((one - a) * top + a * bot) / divisor - mean[c]) / std[c]


@_Kernel
def warp(x, grid_x, grid_y, out):  # pragma: no cover - compiled
    """x: B×C×h×w float32; grid_x/grid_y: B×h×w normalised sampling positions (align_corners=True, as
    for F.grid_sample); out: B×C×h×w = bilinear samples of x, zero outside."""
    batch, channels, h, w = x.shape
    size = h * w
    half_w, half_h = np.float32((w - 1) / 2), np.float32((h - 1) / 2)
    one, zero = np.float32(1.0), np.float32(0.0)
    # pass 1: per output pixel, the flat index and weight of its 4 taps (weight 0 outside the map)
    index = np.zeros((batch, 4, size), np.int64)
    weight = np.zeros((batch, 4, size), np.float32)
    for by in numba.prange(batch * h):
        b, y = by // h, by % h
        for xx in range(w):
            p = y * w + xx
            ix = (grid_x[b, y, xx] + one) * half_w      # grid_sample's unnormalisation
            iy = (grid_y[b, y, xx] + one) * half_h
            fx, fy = np.floor(ix), np.floor(iy)
            tx, ty = ix - fx, iy - fy
            c0, r0 = int(fx), int(fy)
            for k in range(4):
                r, col = r0 + k // 2, c0 + k % 2
                if 0 <= r < h and 0 <= col < w:
                    index[b, k, p] = r * w + col
                    wx = tx if k % 2 else one - tx
                    wy = ty if k // 2 else one - ty
                    weight[b, k, p] = wx * wy
                else:
                    weight[b, k, p] = zero
    # pass 2: every map gathers its 4 taps (top-left, top-right, bottom-left, bottom-right)
    for bc in numba.prange(batch * channels):
        b, c = bc // channels, bc % channels
        src = x[b, c].ravel()
        dst = out[b, c].ravel()
        for p in range(size):
            dst[p] = (weight[b, 0, p] * src[index[b, 0, p]] + weight[b, 1, p] * src[index[b, 1, p]]
                      + weight[b, 2, p] * src[index[b, 2, p]] + weight[b, 3, p] * src[index[b, 3, p]])


@_Kernel
def edge(x, out):  # pragma: no cover - compiled
    """x: B×C×h×w float32 logits; out: B×1×h×w float32 = 1 where the 3×3 Laplacian (zero padding) of
    argmax_c x (first maximum on ties) is non-zero, else 0. Integer arithmetic: exact."""
    batch, num_classes, h, w = x.shape
    labels_map = np.empty((batch, h, w), np.int64)
    for by in numba.prange(batch * h):
        b, y = by // h, by % h
        for xx in range(w):
            best, arg = x[b, 0, y, xx], 0
            for c in range(1, num_classes):
                if x[b, c, y, xx] > best:
                    best, arg = x[b, c, y, xx], c
            labels_map[b, y, xx] = arg
    for by in numba.prange(batch * h):
        b, y = by // h, by % h
        for xx in range(w):
            response = -9 * labels_map[b, y, xx]
            for yy in range(max(y - 1, 0), min(y + 2, h)):
                for xs in range(max(xx - 1, 0), min(xx + 2, w)):
                    response += labels_map[b, yy, xs]
            out[b, 0, y, xx] = 1.0 if response != 0 else 0.0


@_Kernel
def resize(x, y0, y1, ay, x0, x1, ax, out):  # pragma: no cover - compiled
    """x: B×h×w×C float32 (any strides: pass NCHW tensors permuted); y0/y1/ay, x0/x1/ax: bilinear taps
    (align_corners=True) per output row / column; out: B×H×W×C. PyTorch's order: blend along x, then y."""
    batch, height, width, channels = out.shape
    one = np.float32(1.0)
    for by in numba.prange(batch * height):
        b, y = by // height, by % height
        a1 = ay[y]
        a0 = one - a1
        for xx in range(width):
            b1 = ax[xx]
            b0 = one - b1
            for c in range(channels):
                out[b, y, xx, c] = (a0 * (b0 * x[b, y0[y], x0[xx], c] + b1 * x[b, y0[y], x1[xx], c])
                                    + a1 * (b0 * x[b, y1[y], x0[xx], c] + b1 * x[b, y1[y], x1[xx], c]))
