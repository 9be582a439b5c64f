"""Plain state_dicts from files: unwrapping the usual containers, strict loading that names every
mismatch. The lowest layer of weight loading (models/checkpoints.py builds the file formats on it)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping

import torch
from torch import nn

from utils.checkpoint import load_file


def plain_state_dict(sd: Mapping[str, Any], path: str, what: str) -> "OrderedDict[str, torch.Tensor]":
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: the {what} entry is not a state_dict of tensors")
    out = OrderedDict()
    for k, v in sd.items():
        k = k[len("module."):] if k.startswith("module.") else k  # saved from a DDP/DataParallel wrapper
        # float32 counters (seen in third-party checkpoints) are cast back to the int64 torch expects
        out[k] = v.long() if k.endswith("num_batches_tracked") else v
    return out


def load_strict(module: nn.Module, sd: Mapping[str, torch.Tensor], what: str, path: str) -> None:
    """load_state_dict(strict=True), but failing with every missing/unexpected/mis-shaped key named."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        lines = [f"{path}: the {what} weights do not fit the model"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                shown = items[:20] + ([f"... ({len(items) - 20} more)"] if len(items) > 20 else [])
                lines.append(f"  {title} ({len(items)}): " + ", ".join(shown))
        raise ValueError("\n".join(lines))
    module.load_state_dict(sd, strict=True)


def segnet_state_dict(path: str) -> "OrderedDict[str, torch.Tensor]":
    """The keyframe-net state_dict of an official SwiftNet/BiSeNet file or of one of our checkpoints."""
    obj = load_file(path)
    if isinstance(obj, Mapping) and "segnet_state_dict" in obj:
        return plain_state_dict(obj["segnet_state_dict"], path, "segnet_state_dict")
    for key in ("state_dict", "model"):  # BiSeNet: {'state_dict'|'model': sd}
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            return plain_state_dict(obj[key], path, key)
    return plain_state_dict(obj, path, "raw state_dict")
