"""Loading PIDNet weights from the official files, unchanged, and from our plain state_dicts.

Accepted layouts (the official ones as the official training script writes them):

    "released"             a released model (e.g. PIDNet_S_Cityscapes_val.pt): the state_dict of the
                           official FullModel wrapper, i.e. every network key prefixed "model." (the
                           training-only heads seghead_p.* / seghead_d.* included) plus loss buffers
                           such as "sem_loss.criterion.weight" (the class weights).
    "training_checkpoint"  {"epoch", "best_mIoU", "state_dict": <the released layout>, "optimizer"}.
    "imagenet_backbone"    {"state_dict": <unprefixed keys>} (PIDNet_S_ImageNet.pth.tar and the like);
                           covers only part of the network by design.
    "plain"                our own state_dict: unprefixed keys, the whole network.

One rule for all: every key of the model must come from the file with its exact shape, otherwise a
ValueError names the file, the counts and the first offending keys and nothing is loaded. What the
model has no place for is dropped and reported: the heads for an inference-form model
(``augment=False``) and everything outside "model." (loss buffers). The only exception is the
keyframe-net training start: an "imagenet_backbone" file with ``allow_partial_backbone=True`` loads
the keys it has (still with exact shapes), reports the rest as missing and drops its extra keys.

The official loader instead keeps whatever matches in name and shape and loads with strict=False, so
a wrong file (an M file for an S model shares every key name) loads silently in part; we refuse it.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from models.pidnet import HEAD_PREFIXES

NETWORK_PREFIX = "model."  # the official FullModel stores the network as `self.model`
SHOWN = 5                  # offending keys named in an error message


@dataclass
class LoadReport:
    """What :func:`load_pidnet_weights` did: the file's layout, how many model keys it set, the file
    keys it dropped (heads of an inference-form model, loss buffers, a backbone's extra keys) and
    the model keys it left untouched (only ever non-empty for a partial backbone load)."""

    path: str
    layout: str
    loaded: int
    dropped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _read(path: str) -> Any:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such PIDNet weights file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt file, or one that holds more than tensors and containers
        raise ValueError(f"{path}: cannot be read as a PIDNet weights file "
                         f"(torch.load, weights_only=True): {err}") from err


def _tensor_dict(obj: Any, path: str, what: str) -> "OrderedDict[str, Tensor]":
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: the {what} is not a non-empty state_dict of tensors")
    return OrderedDict((str(k), v) for k, v in obj.items())


def split_pidnet_file(obj: Any, path: str) -> tuple[str, "OrderedDict[str, Tensor]", list[str]]:
    """(layout, network state_dict with unprefixed keys, file keys outside the network) of a loaded file."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        inner = _tensor_dict(obj["state_dict"], path, "'state_dict' entry")
        prefixed = any(k.startswith(NETWORK_PREFIX) for k in inner)
        layout = "training_checkpoint" if prefixed else "imagenet_backbone"
    else:
        inner = _tensor_dict(obj, path, "file")
        prefixed = any(k.startswith(NETWORK_PREFIX) for k in inner)
        layout = "released" if prefixed else "plain"
    if not prefixed:
        return layout, inner, []
    network = OrderedDict((k[len(NETWORK_PREFIX):], v) for k, v in inner.items() if k.startswith(NETWORK_PREFIX))
    return layout, network, [k for k in inner if not k.startswith(NETWORK_PREFIX)]


def _file_key(layout: str, key: str) -> str:
    """A network key as the file spells it (with the "model." prefix in the prefixed layouts)."""
    return NETWORK_PREFIX + key if layout in ("released", "training_checkpoint") else key


def _refuse(path: str, layout: str, problems: list[tuple[str, int, int, list[str]]]) -> None:
    """Raise one ValueError listing each (title, count, out of, keys) problem of the file."""
    lines = [f"{path}: PIDNet weights ({layout} layout) do not fit the model; nothing was loaded"]
    for title, count, total, keys in problems:
        more = f", ... ({count - SHOWN} more)" if count > SHOWN else ""
        lines.append(f"  {count} of {total} {title}: " + ", ".join(keys[:SHOWN]) + more)
    raise ValueError("\n".join(lines))


def load_pidnet_weights(model: nn.Module, path: str, *, allow_partial_backbone: bool = False) -> LoadReport:
    """Load an official PIDNet file (any layout of the module docstring) or our plain state_dict.

    ``model`` is a :class:`models.pidnet.PIDNet` in either form. Raises ValueError (naming ``path``)
    on missing keys, shape mismatches or unknown network keys, before loading anything.
    """
    layout, network, extras = split_pidnet_file(_read(path), path)
    own = model.state_dict()
    partial = layout == "imagenet_backbone" and allow_partial_backbone
    dropped, unknown = [], []
    for k in network:
        if k in own:
            continue
        if k.startswith(HEAD_PREFIXES) or partial:  # heads of an inference-form model; backbone extras
            dropped.append(_file_key(layout, k))
        else:
            unknown.append(k)
    shapes = [f"{k} (file {tuple(network[k].shape)}, model {tuple(own[k].shape)})"
              for k in own if k in network and network[k].shape != own[k].shape]
    missing = [k for k in own if k not in network]
    problems = []
    if shapes:
        problems.append(("model keys have another shape in the file", len(shapes), len(own), shapes))
    if missing and not partial:
        hint = " (an ImageNet backbone needs allow_partial_backbone=True)" if layout == "imagenet_backbone" else ""
        problems.append((f"model keys are missing from the file{hint}", len(missing), len(own), missing))
    if unknown:
        problems.append(("network keys of the file are unknown to the model", len(unknown), len(network), unknown))
    if partial and len(missing) == len(own):
        problems.append(("model keys are missing from the file (it shares no key with the model)",
                         len(missing), len(own), missing))
    if problems:
        _refuse(path, layout, problems)
    selected = OrderedDict((k, network[k]) for k in own if k in network)
    dropped += extras
    model.load_state_dict(selected, strict=not partial)
    return LoadReport(path=str(path), layout=layout, loaded=len(selected), dropped=dropped, missing=missing)
