"""Deterministic "random but fixed" weights in the official file formats, for parity tests.

Written from the recipe of the parity fixture (tests/data/case_a_*): entry number i of a key list gets
its own ``numpy.random.default_rng(seed * 100003 + i)``, so values depend only on numpy's generator
streams. Values by key: BN counters 0; running_mean N(0, .1); running_var U(.5, 1.5); BN weight
U(.5, 1.5) and bias N(0, .1); other biases N(0, .05); weights with >= 2 dims N(0, sqrt(2 / fan_in))
with fan_in = shape[1] * kernel area; SwiftNet's img_mean/img_std and the ideal-delay kernels take
their fixed official values. The fixture's sha256 fingerprints confirm the result is bit-identical.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from models.swiftnet import SWIFTNET_MEAN, SWIFTNET_STD

SEED_STRIDE = 100003
DATA = Path(__file__).parent / "data"


def read_keys(name: str) -> list[tuple[str, tuple[int, ...], str]]:
    """[(key, shape, dtype)] of an official state_dict, from tests/data/<name>."""
    return [(k, tuple(s), d) for k, s, d in json.loads((DATA / name).read_text())]


def _draw(key: str, shape: tuple[int, ...], is_bn: bool, rng: np.random.Generator) -> np.ndarray:
    parent, _, leaf = key.rpartition(".")
    if leaf == "num_batches_tracked":
        return np.zeros(shape)
    if leaf in ("img_mean", "img_std"):
        return np.array(SWIFTNET_MEAN if leaf == "img_mean" else SWIFTNET_STD).reshape(shape)
    if leaf == "filter_copy_s":
        kernels = np.zeros(shape)
        off_centre = [t for t in range(9) if t != 4]
        for n, tap in enumerate(off_centre[: shape[0]]):
            kernels[n, ..., tap // 3, tap % 3] = 1.0
        return kernels
    if leaf == "running_mean" or (is_bn and leaf == "bias"):
        return rng.normal(0.0, 0.1, size=shape)
    if leaf == "running_var" or (is_bn and leaf == "weight"):
        return rng.uniform(0.5, 1.5, size=shape)
    if len(shape) >= 2:
        return rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), size=shape)
    if leaf == "bias":
        return rng.normal(0.0, 0.05, size=shape)
    raise ValueError(f"no value rule for {key} {shape}")


def make_state_dict(keys: list[tuple[str, tuple[int, ...], str]], seed: int) -> "OrderedDict[str, torch.Tensor]":
    bn_modules = {k.rpartition(".")[0] for k, _, _ in keys if k.endswith(".running_mean")}
    sd = OrderedDict()
    for i, (key, shape, dtype) in enumerate(keys):
        rng = np.random.default_rng(seed * SEED_STRIDE + i)
        values = _draw(key, shape, key.rpartition(".")[0] in bn_modules, rng)
        np_dtype = np.int64 if dtype == "int64" else np.float32
        sd[key] = torch.from_numpy(np.array(np.reshape(values, shape), dtype=np_dtype))
    return sd


def fingerprint(sd) -> str:
    """sha256 over key, dtype, shape and raw bytes of every entry, in order (the fixture's definition)."""
    h = hashlib.sha256()
    for k, v in sd.items():
        t = v.detach().cpu().contiguous()
        for part in (k.encode(), str(t.dtype).encode(), str(tuple(t.shape)).encode(), t.numpy().tobytes()):
            h.update(part)
    return h.hexdigest()


def case_state_dicts(case: dict) -> "dict[str, OrderedDict[str, torch.Tensor]]":
    """The stand-in weights of a parity case (segnet, gsv, flow), each checked against the case's fingerprint."""
    sds = {part: make_state_dict(read_keys(case[f"keylist_{part}"]), case[f"seed_{part}"])
           for part in ("segnet", "gsv", "flow")}
    for part, sd in sds.items():
        assert fingerprint(sd) == case[f"fingerprint_{part}"], f"stand-in {part} weights differ from the recipe"
    return sds


def official_args(segnet: str = "swiftnet", flow: str = "light") -> argparse.Namespace:
    """A few fields of the official trainer's Namespace, as its checkpoints carry one."""
    return argparse.Namespace(segnet=segnet, optical_flow_network=flow, dataset="cityscapes", batch_size=8,
                              lr=0.01, guide_lr=0.04, optical_flow_lr=1e-4, train_optical_flow=True)


def save_official_gsvnet(grm_sd, flow_sd, path, legacy: bool = False, args=None) -> None:
    """A GSVNet checkpoint laid out as the official trainer writes it."""
    obj = {"epoch": 1, "state_dict": OrderedDict(grm_sd), "optimizer": {}, "best_pred": 0.0,
           "current_pred": 0.0, "args": args if args is not None else official_args(),
           "state_dict_of": OrderedDict(flow_sd)}
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
