"""Reading and writing weights in the official file formats (DESIGN.md §5) and in ours.

Official formats accepted as they are:
- SwiftNet: the raw state_dict (``backbone.*``, ``logits.*``).
- BiSeNet: ``{'state_dict' | 'model': state_dict}``.
- GSVNet: ``{'state_dict': grm.* (GSV), 'state_dict_of': flow net, 'args': argparse.Namespace, 'epoch', ...}``
  in the zip or the legacy pickle format; third-party files may store ``num_batches_tracked`` as float32.
Ours use the same two GSVNet keys (so the official code can read them) plus plain-typed extras:
``config`` (dict), ``segnet_state_dict``, ``optimizer``, ``scheduler``, ``best_pred``, ``format``.
Every load is strict: wrong keys or shapes fail with a message listing them.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any, Mapping

import torch
from torch import nn

from utils.checkpoint import load_file

GSV_PREFIX = "grm."  # the official End2End wrapper stores the GSV module as `self.grm`
FORMAT = "gsvnet-repro/1"


def _plain_state_dict(sd: Mapping[str, Any], path: str, what: str) -> "OrderedDict[str, torch.Tensor]":
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
        return _plain_state_dict(obj["segnet_state_dict"], path, "segnet_state_dict")
    for key in ("state_dict", "model"):  # BiSeNet: {'state_dict'|'model': sd}
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            return _plain_state_dict(obj[key], path, key)
    return _plain_state_dict(obj, path, "raw state_dict")


def load_flow_weights(flow_net: nn.Module, path: str) -> None:
    """FlowNetS start weights (official flownet.pth.tar, a raw state_dict or {'state_dict': sd}), loaded
    non-strictly as officially, but with every missing/unexpected key reported in a warning."""
    obj = load_file(path)
    sd = obj["state_dict"] if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping) else obj
    result = flow_net.load_state_dict(_plain_state_dict(sd, path, "flow"), strict=False)
    if result.missing_keys or result.unexpected_keys:
        warnings.warn(f"{path}: flow weights loaded non-strictly; missing {result.missing_keys}, "
                      f"unexpected {result.unexpected_keys}")


def gsvnet_parts(path: str) -> dict[str, Any]:
    """Split a GSVNet checkpoint (official or ours) into plain parts.

    Returns {"gsv": sd without "grm.", "flow": sd or None, "segnet": sd or None, "epoch": int,
    "best_pred": float or None, "config": dict or None, "raw": the loaded dict}.
    """
    obj = load_file(path)
    if not isinstance(obj, Mapping) or "state_dict" not in obj:
        raise ValueError(f"{path}: not a GSVNet checkpoint (expected a dict with 'state_dict' = grm.* GSV "
                         f"weights and 'state_dict_of' = flow weights)")
    gsv = _plain_state_dict(obj["state_dict"], path, "state_dict")
    if not all(k.startswith(GSV_PREFIX) for k in gsv):
        odd = [k for k in gsv if not k.startswith(GSV_PREFIX)][:5]
        raise ValueError(f"{path}: 'state_dict' keys must start with '{GSV_PREFIX}' (GSV module), got e.g. {odd}")
    gsv = OrderedDict((k[len(GSV_PREFIX):], v) for k, v in gsv.items())
    flow = obj.get("state_dict_of")
    segnet = obj.get("segnet_state_dict")
    config = obj.get("config")
    return {
        "gsv": gsv,
        "flow": _plain_state_dict(flow, path, "state_dict_of") if flow is not None else None,
        "segnet": _plain_state_dict(segnet, path, "segnet_state_dict") if segnet is not None else None,
        "epoch": int(obj.get("epoch", 0)),
        "best_pred": obj.get("best_pred"),
        "config": dict(config) if isinstance(config, Mapping) else None,
        "raw": obj,
    }


def gsv_num_classes(gsv_sd: Mapping[str, torch.Tensor]) -> int:
    """Classes a GSV state_dict was trained for (guide input = classes + edge)."""
    return int(gsv_sd["guide.guide_conv.0.weight"].shape[1]) - 1


def gsv_has_intra(gsv_sd: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("intra_net.") for k in gsv_sd)


def guess_flow_name(flow_sd: Mapping[str, torch.Tensor]) -> str:
    return "light" if "toflow.weight" in flow_sd else "flownet"


def gsvnet_checkpoint(gsv: nn.Module, flow: nn.Module, **extra: Any) -> dict[str, Any]:
    """Our checkpoint dict: official keys for the two trained modules + plain-typed extras."""
    ckpt = {
        "format": FORMAT,
        "state_dict": OrderedDict((GSV_PREFIX + k, v.detach().cpu().contiguous()) for k, v in gsv.state_dict().items()),
        "state_dict_of": OrderedDict((k, v.detach().cpu().contiguous()) for k, v in flow.state_dict().items()),
    }
    ckpt.update(extra)
    return ckpt
