"""Reading and writing weights in the official file formats (docs/formats.md) and in ours.

Official formats accepted as they are:
- SwiftNet: the raw state_dict (``backbone.*``, ``logits.*``).
- BiSeNet: ``{'state_dict' | 'model': state_dict}``.
- GSVNet: ``{'state_dict': grm.* (GSV), 'state_dict_of': flow net, 'args': argparse.Namespace, 'epoch', ...}``
  in the zip or the legacy pickle format; third-party files may store ``num_batches_tracked`` as float32.
- PIDNet: the official layouts of models/pidnet_weights.py.
Ours use the same two GSVNet keys (so the official code can read them) plus plain-typed extras:
``config`` (dict), ``segnet_state_dict``, ``optimizer``, ``scheduler``, ``best_pred``, ``format`` and
``model_args`` (the constructor arguments, :data:`MODEL_ARGS`), so a file rebuilds its model without
guessing from key names. Files without ``model_args`` (official, or ours before it) still load: their
``config`` entry or their key names stand in for it.
Every load is strict: wrong keys or shapes fail with a message listing them.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any, Mapping

import torch
from torch import nn

from models.gsvnet import keyframe_normalisation, normalisation_dict
from models.keyframe_net import propagation_normalisation
from models.keyframe_spec import KeyframeNetSpec, parse_spec
from models.pidnet import HEAD_PREFIXES
from models.pidnet_weights import load_pidnet_weights
from models.state_dicts import load_strict, plain_state_dict, segnet_state_dict
from utils.checkpoint import load_file

GSV_PREFIX = "grm."  # the official End2End wrapper stores the GSV module as `self.grm`
FORMAT = "gsvnet-repro/1"
# model_args: keyframe-net spec, classes, flow net, GSV intra branch, and the input statistics of the
# keyframe net and of the flow net/GSV as {"mean": [R, G, B], "std": [R, G, B], "divisor": d}
MODEL_ARGS = ("segnet", "num_classes", "flow", "intra", "keyframe_normalisation", "propagation_normalisation")


def load_flow_weights(flow_net: nn.Module, path: str) -> None:
    """FlowNetS start weights (official flownet.pth.tar, a raw state_dict or {'state_dict': sd}), loaded
    non-strictly as officially, but with every missing/unexpected key reported in a warning."""
    obj = load_file(path)
    sd = obj["state_dict"] if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping) else obj
    result = flow_net.load_state_dict(plain_state_dict(sd, path, "flow"), strict=False)
    if result.missing_keys or result.unexpected_keys:
        warnings.warn(f"{path}: flow weights loaded non-strictly; missing {result.missing_keys}, "
                      f"unexpected {result.unexpected_keys}")


def gsvnet_parts(path: str) -> dict[str, Any]:
    """Split a GSVNet checkpoint (official or ours) into plain parts.

    Returns {"gsv": sd without "grm.", "flow": sd or None, "segnet": sd or None, "epoch": int,
    "best_pred": float or None, "config": dict or None, "model_args": :func:`recorded_model_args`,
    "spec": the KeyframeNetSpec model_args name or None, "raw": the loaded dict}.
    """
    obj = load_file(path)
    if not isinstance(obj, Mapping) or "state_dict" not in obj:
        raise ValueError(f"{path}: not a GSVNet checkpoint (expected a dict with 'state_dict' = grm.* GSV "
                         f"weights and 'state_dict_of' = flow weights)")
    gsv = plain_state_dict(obj["state_dict"], path, "state_dict")
    if not all(k.startswith(GSV_PREFIX) for k in gsv):
        odd = [k for k in gsv if not k.startswith(GSV_PREFIX)][:5]
        raise ValueError(f"{path}: 'state_dict' keys must start with '{GSV_PREFIX}' (GSV module), got e.g. {odd}")
    gsv = OrderedDict((k[len(GSV_PREFIX):], v) for k, v in gsv.items())
    flow = obj.get("state_dict_of")
    segnet = obj.get("segnet_state_dict")
    config = obj.get("config")
    model_args = recorded_model_args(obj, gsv, flow, path)
    return {
        "gsv": gsv,
        "flow": plain_state_dict(flow, path, "state_dict_of") if flow is not None else None,
        "segnet": plain_state_dict(segnet, path, "segnet_state_dict") if segnet is not None else None,
        "epoch": int(obj.get("epoch", 0)),
        "best_pred": obj.get("best_pred"),
        "config": dict(config) if isinstance(config, Mapping) else None,
        "model_args": model_args,
        "spec": recorded_spec(model_args, path) if model_args is not None else None,
        "raw": obj,
    }


def gsv_num_classes(gsv_sd: Mapping[str, torch.Tensor]) -> int:
    """Classes a GSV state_dict was trained for (guide input = classes + edge)."""
    return int(gsv_sd["guide.guide_conv.0.weight"].shape[1]) - 1


def gsv_has_intra(gsv_sd: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("intra_net.") for k in gsv_sd)


def guess_flow_name(flow_sd: Mapping[str, torch.Tensor]) -> str:
    return "light" if "toflow.weight" in flow_sd else "flownet"


def _flow_name(flow: nn.Module) -> str:
    return guess_flow_name(getattr(flow, "module", flow).state_dict())


def model_args_from_config(config: Mapping[str, Any], num_classes: int, intra: bool, flow: str) -> dict | None:
    """model_args of a run whose saved config names the keyframe net (None if it does not)."""
    try:
        parsed = parse_spec(config["segnet"])  # a string in a file: parsed where it is read
        norm = keyframe_normalisation(parsed, config.get("segnet_mean"), config.get("segnet_std"),
                                      config.get("segnet_input_range", 0))
    except (KeyError, TypeError, ValueError):
        return None
    return {"segnet": parsed.spec, "num_classes": int(num_classes),
            "flow": str(config.get("optical_flow_network", flow)), "intra": bool(intra),
            "keyframe_normalisation": normalisation_dict(norm),
            "propagation_normalisation": normalisation_dict(propagation_normalisation(parsed))}


def recorded_spec(model_args: Mapping[str, Any], path: str) -> KeyframeNetSpec:
    """The keyframe net a checkpoint's model_args names (a string in the file), parsed; ValueError naming the file."""
    try:
        return parse_spec(model_args["segnet"])
    except ValueError as err:
        raise ValueError(f"{path}: model_args: {err}") from err


def recorded_model_args(obj: Mapping[str, Any], gsv_sd: Mapping[str, torch.Tensor],
                        flow_sd: Mapping[str, torch.Tensor] | None, path: str) -> dict | None:
    """The constructor arguments a GSVNet checkpoint records: its ``model_args`` entry, else those its
    ``config`` entry implies (ours before model_args), else None (official files)."""
    args = obj.get("model_args")
    if isinstance(args, Mapping):
        missing = [k for k in MODEL_ARGS if k not in args]
        if missing:
            raise ValueError(f"{path}: model_args lacks {missing}")
        return dict(args)
    config = obj.get("config")
    if not isinstance(config, Mapping):
        return None
    flow = guess_flow_name(flow_sd) if flow_sd is not None else "light"
    return model_args_from_config(config, gsv_num_classes(gsv_sd), gsv_has_intra(gsv_sd), flow)


def gsvnet_checkpoint(gsv: nn.Module, flow: nn.Module, *, model_args: Mapping[str, Any] | None = None,
                      **extra: Any) -> dict[str, Any]:
    """Our checkpoint dict: official keys for the two trained modules + plain-typed extras.

    model_args: ``GSVNet.constructor_args()``; None derives it from a ``config`` extra (the saved run
    configuration) and the modules themselves.
    """
    ckpt = {
        "format": FORMAT,
        "state_dict": OrderedDict((GSV_PREFIX + k, v.detach().cpu().contiguous()) for k, v in gsv.state_dict().items()),
        "state_dict_of": OrderedDict((k, v.detach().cpu().contiguous()) for k, v in flow.state_dict().items()),
    }
    if model_args is None and isinstance(extra.get("config"), Mapping):
        plain_gsv = getattr(gsv, "module", gsv)
        model_args = model_args_from_config(extra["config"], plain_gsv.num_classes, plain_gsv.intra, _flow_name(flow))
    if model_args is not None:
        ckpt["model_args"] = dict(model_args)
    ckpt.update(extra)
    return ckpt


# --- keyframe-net weights of every kind --------------------------------------------------------------
def load_keyframe_state(net: nn.Module, spec: KeyframeNetSpec, sd: Mapping[str, torch.Tensor], path: str) -> None:
    """Strictly load one of our keyframe-net state_dicts (unprefixed keys). A PIDNet saved in its
    training form fits an inference-form model: the training-only heads the model lacks are dropped."""
    if spec.is_pidnet:
        own = net.state_dict()
        sd = OrderedDict((k, v) for k, v in sd.items() if k in own or not k.startswith(HEAD_PREFIXES))
    load_strict(net, sd, f"keyframe net {spec}", path)


def load_keyframe_weights(net: nn.Module, spec: KeyframeNetSpec, path: str, *, partial_backbone: bool = False) -> None:
    """Load a keyframe-net weights file into ``net`` (built for ``spec``): official SwiftNet/BiSeNet/PIDNet
    files, our keyframe-net and GSVNet checkpoints, or a plain state_dict (torchvision:, module:, hf:).
    partial_backbone: a PIDNet ImageNet backbone file may cover only part of the net (training start)."""
    if spec.is_pidnet:
        obj = load_file(path)
        if isinstance(obj, Mapping) and "segnet_state_dict" in obj:  # one of our checkpoints
            load_keyframe_state(net, spec, plain_state_dict(obj["segnet_state_dict"], path, "segnet_state_dict"), path)
        else:
            load_pidnet_weights(net, path, allow_partial_backbone=partial_backbone)
        return
    load_strict(net, segnet_state_dict(path), f"keyframe net {spec}", path)
