"""The one path from (keyframe-net spec, flow net, classes, weight files, checkpoint) to a GSVNet.

``assemble_model`` takes plain arguments; ``build_model`` maps a Config onto it; the streaming predictor
(``VideoPredictor.from_checkpoints``) and keyframe-net training call it too.

Keyframe-net weights, by kind (models/checkpoints.py reads every format):
- swiftnet, bisenet: the official file or ours, strictly;
- pidnet_s/m/l: an official PIDNet file (models/pidnet_weights.py) or ours; an ImageNet backbone only
  with ``partial_backbone`` (the start of keyframe-net training);
- torchvision:, module:: a state_dict file, through ``build_keyframe_net(weights=...)``;
- hf:: the spec's folder (or hub id) carries them; ``segnet_weights`` may name another folder saved by
  save_pretrained (e.g. the one keyframe-net training writes) or a state_dict file.
Without a weights file, the checkpoint's ``segnet_state_dict`` is used; failing that, built-in,
torchvision and module nets stay random (``missing_segnet``: warn, error or quiet) and hf nets keep
their folder's weights.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from config.config import Config
from config.dataset_preset import DatasetPreset
from engine.runs import FLOWNET_FILE, REPO, segnet_weights_path
from models.checkpoints import (gsv_has_intra, gsv_num_classes, gsvnet_parts, guess_flow_name, load_flow_weights,
                                load_keyframe_state, load_keyframe_weights, load_strict)
from models.gsvnet import INPUT_RANGE_DIVISOR, GSVNet, normalisation_dict
from models.keyframe_net import build_keyframe_net, propagation_normalisation
from models.keyframe_spec import DEFAULT_SPEC, KeyframeNetSpec, hf_folder_spec
from utils.seed import seed_everything

MISSING_SEGNET = ("warn", "error", "quiet")
DEFAULTS = {"segnet": DEFAULT_SPEC, "flow": "light", "num_classes": 19}  # when neither caller nor file says


def _check_recorded(spec: KeyframeNetSpec, recorded: dict, path: str) -> None:
    """A checkpoint's flow net and GSV only fit the statistics they were trained on."""
    stored = recorded["propagation_normalisation"]
    wanted = normalisation_dict(propagation_normalisation(spec))
    if stored != wanted:
        raise ValueError(
            f"{path}: its flow net and GSV were trained with keyframe net {recorded['segnet']!r}, on 1/8 inputs "
            f"normalised with {stored}; keyframe net {spec.spec!r} feeds them {wanted}. Use --segnet "
            f"{recorded['segnet']} or a checkpoint trained with {spec}")
    if recorded["segnet"] != spec.spec:
        warnings.warn(f"{path}: trained with keyframe net {recorded['segnet']!r}, now used with {spec.spec!r}")


def _norm_overrides(recorded: dict | None, spec: KeyframeNetSpec, mean, std, input_range) -> dict:
    """Explicit overrides; else what the checkpoint recorded for this very spec; else the kind's default."""
    if mean or std or input_range or recorded is None or recorded["segnet"] != spec.spec:
        return {"segnet_mean": mean or None, "segnet_std": std or None, "segnet_input_range": input_range or 0}
    stored = recorded["keyframe_normalisation"]
    by_divisor = {divisor: value for value, divisor in INPUT_RANGE_DIVISOR.items()}
    if float(stored["divisor"]) not in by_divisor:
        raise ValueError(f"recorded keyframe-net input divisor {stored['divisor']} is not one of {sorted(by_divisor)}")
    return {"segnet_mean": stored["mean"], "segnet_std": stored["std"],
            "segnet_input_range": by_divisor[float(stored["divisor"])]}


def _resolve(spec: KeyframeNetSpec | None, flow: str | None, num_classes: int | None, intra: bool | None,
             parts: dict | None, path: str, check_flow: bool) -> tuple[KeyframeNetSpec, str, int, bool]:
    """The constructor arguments: the caller's, else the checkpoint's, else DEFAULTS; mismatches fail."""
    recorded = parts["model_args"] if parts is not None else None
    if parts is not None:
        found = gsv_num_classes(parts["gsv"])
        if num_classes is not None and found != num_classes:
            raise ValueError(f"{path}: the GSV module was trained for {found} classes, but num_classes={num_classes}")
        num_classes = found
        stored_flow = guess_flow_name(parts["flow"]) if parts["flow"] is not None else (recorded or {}).get("flow")
        if check_flow and flow is not None and stored_flow is not None and stored_flow != flow:
            raise ValueError(f"{path}: holds a '{stored_flow}' flow net, but flow={flow!r}")
        flow = flow or stored_flow
        intra = gsv_has_intra(parts["gsv"]) if intra is None else intra
    spec = spec or (parts["spec"] if parts is not None else None) or DEFAULTS["segnet"]
    if recorded is not None:
        _check_recorded(spec, recorded, path)
    return (spec, flow or DEFAULTS["flow"], num_classes or DEFAULTS["num_classes"], True if intra is None else intra)


def _keyframe_net(spec: KeyframeNetSpec, num_classes: int, weights: str | None, training_form: bool,
                  partial_backbone: bool) -> tuple[nn.Module, str | None]:
    """(the keyframe net, the weights file it was loaded from or None)."""
    if weights is None:
        return build_keyframe_net(spec, num_classes, training_form=training_form), None
    if not Path(weights).exists():
        raise FileNotFoundError(f"keyframe-net weights not found: {weights}")
    if spec.kind in ("torchvision", "module"):
        return build_keyframe_net(spec, num_classes, weights=weights, training_form=training_form), weights
    if spec.kind == "hf" and Path(weights).is_dir():  # another save_pretrained folder of the same net
        return build_keyframe_net(hf_folder_spec(weights), num_classes, training_form=training_form), weights
    net = build_keyframe_net(spec, num_classes, training_form=training_form)
    load_keyframe_weights(net, spec, weights, partial_backbone=partial_backbone)
    return net, weights


def _load_propagation(model: GSVNet, parts: dict | None, path: str, flow_weights: str | None,
                      load_flow: bool) -> None:
    if flow_weights:
        load_flow_weights(model.flow_net, flow_weights)
    if parts is None:
        return
    load_strict(model.gsv, parts["gsv"], "GSV (grm.*)", path)
    if parts["flow"] is not None and load_flow:
        load_strict(model.flow_net, parts["flow"], f"{model.flow_name} flow net (state_dict_of)", path)
    elif parts["flow"] is None and not flow_weights:
        warnings.warn(f"{path}: no flow weights (state_dict_of); the flow net stays randomly initialised")


def assemble_model(spec: KeyframeNetSpec | None, flow: str | None, num_classes: int | None, *,
                   segnet_weights: str | None = None, checkpoint: str | None = None,
                   flow_weights: str | None = None, intra: bool | None = None,
                   segnet_mean: Sequence[float] | None = None, segnet_std: Sequence[float] | None = None,
                   segnet_input_range: int | None = 0, training_form: bool = False,
                   partial_backbone: bool = False, load_flow: bool = True, missing_segnet: str = "warn",
                   missing_hint: str = "") -> tuple[GSVNet, dict | None]:
    """A GSVNet (on the CPU) with every weight the arguments name, and the checkpoint's parts or None.

    spec/flow/num_classes/intra None: what ``checkpoint`` records (its model_args, else its config,
    else its key names), else swiftnet / light / 19 / True. A checkpoint whose recorded flow-net/GSV
    input statistics differ from ``propagation_normalisation(spec)`` is refused. segnet_mean/std/
    input_range: keyframe-net input overrides (models.gsvnet.keyframe_normalisation); without them the
    checkpoint's recorded statistics (same spec) or the kind's default. training_form: PIDNet's
    three-output form. missing_segnet: what happens when a built-in, torchvision or module net gets
    no weights at all — "warn" (random init), "error" (FileNotFoundError ending with missing_hint),
    "quiet".
    """
    if missing_segnet not in MISSING_SEGNET:
        raise ValueError(f"missing_segnet must be one of {MISSING_SEGNET}, got {missing_segnet!r}")
    path = str(checkpoint) if checkpoint else ""
    parts = gsvnet_parts(path) if checkpoint else None
    spec, flow, num_classes, intra = _resolve(spec, flow, num_classes, intra, parts, path, load_flow)
    norm = _norm_overrides(parts["model_args"] if parts else None, spec, segnet_mean, segnet_std, segnet_input_range)
    net, source = _keyframe_net(spec, num_classes, str(segnet_weights) if segnet_weights else None,
                                training_form, partial_backbone)
    if source is None and parts is not None and parts["segnet"] is not None:
        load_keyframe_state(net, spec, parts["segnet"], path)
        source = path
    if source is None and spec.kind != "hf":
        if missing_segnet == "error":
            raise FileNotFoundError(f"keyframe-net weights for {spec} not found{missing_hint}")
        if missing_segnet == "warn":
            warnings.warn(f"keyframe net {spec}: no weights given; using a random initialisation")
    model = GSVNet.build(spec, flow, num_classes, intra=intra, keyframe_net=net, **norm)
    _load_propagation(model, parts, path, flow_weights, load_flow)
    return model, parts


def config_norm_args(cfg: Config) -> dict:
    """--segnet-mean/--segnet-std/--segnet-input-range as assemble_model's keyword arguments."""
    return {"segnet_mean": list(cfg.segnet_mean) or None, "segnet_std": list(cfg.segnet_std) or None,
            "segnet_input_range": cfg.segnet_input_range}


def build_model(cfg: Config, preset: DatasetPreset, device: torch.device, resume: Path | None = None,
                missing_segnet: str | None = None) -> tuple[GSVNet, dict | None]:
    """The GSVNet of a Config with its keyframe-net weights and, if resuming, the trained modules.

    Keyframe-net weights: --segnet-weights, else a built-in net's official file under weights/ if it
    exists, else the checkpoint's. missing_segnet (see assemble_model): None = "error" for built-in
    nets, "warn" for the other kinds (which have no official file).
    Returns (model on device, the checkpoint parts of :func:`models.checkpoints.gsvnet_parts` or None).
    """
    seed_everything(cfg.seed)  # every random start (a GSV not in a checkpoint, say) is the same per run and rank
    path = segnet_weights_path(cfg)
    if cfg.segnet_weights and not Path(cfg.segnet_weights).exists():  # asked for by name: never silently ignored
        raise FileNotFoundError(f"keyframe-net weights not found: {cfg.segnet_weights} (--segnet-weights); train "
                                f"them with `python main.py --train-segnet 1` (or `make demo`, which trains everything "
                                f"on the synthetic data)")
    # a missing default file falls back to the checkpoint's keyframe net, else to missing_segnet
    weights = str(path) if path is not None and path.exists() else None
    if missing_segnet is None:
        missing_segnet = "error" if cfg.segnet.kind == "builtin" else "warn"
    hint = (f": {path}; train them with `python main.py --train-segnet 1` (or `make demo`, which trains everything "
            f"on the synthetic data), pass --segnet-weights PATH, or put the official file there (weights/README.md)")
    flow_weights = None
    if cfg.optical_flow_network == "flownet":
        flow_file = Path(cfg.flow_weights) if cfg.flow_weights else REPO / "weights" / FLOWNET_FILE
        flow_weights = str(flow_file) if cfg.flow_weights or flow_file.is_file() else None
    model, parts = assemble_model(
        cfg.segnet, cfg.optical_flow_network, preset.num_classes, segnet_weights=weights, checkpoint=resume,
        flow_weights=flow_weights, intra=cfg.intra, load_flow=cfg.load_flow, missing_segnet=missing_segnet,
        missing_hint=hint, **config_norm_args(cfg))
    return model.to(device), parts
