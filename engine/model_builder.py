"""The one path from a Config to a GSVNet with its weights (keyframe net, flow net, GSV)."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from config.config import Config
from config.dataset_preset import DatasetPreset
from engine.runs import REPO, FLOWNET_FILE, segnet_weights_path
from models.checkpoints import gsvnet_parts, load_flow_weights, load_strict, segnet_state_dict
from models.gsvnet import GSVNet
from utils.seed import seed_everything


def build_model(cfg: Config, preset: DatasetPreset, device: torch.device, load_segnet: bool = True,
                resume: Path | None = None) -> tuple[GSVNet, dict | None]:
    """The GSVNet of a Config with its keyframe-net weights and, if resuming, the trained modules.

    Returns (model on device, the checkpoint parts of :func:`models.checkpoints.gsvnet_parts` or None).
    """
    seed_everything(cfg.seed)  # every random start (a GSV not in the checkpoint, say) is the same on each run and rank
    model = GSVNet.build(cfg.segnet, cfg.optical_flow_network, preset.num_classes, intra=cfg.intra)
    parts = gsvnet_parts(str(resume)) if resume is not None else None
    if load_segnet:
        path = segnet_weights_path(cfg)
        if path.is_file():
            load_strict(model.segnet, segnet_state_dict(str(path)), cfg.segnet, str(path))
        elif parts is not None and parts["segnet"] is not None:
            load_strict(model.segnet, parts["segnet"], cfg.segnet, str(resume))
        else:
            raise FileNotFoundError(
                f"keyframe-net weights not found: {path}; train them with `python main.py --train-segnet 1` "
                f"(or `make demo`, which trains everything on the synthetic data), pass --segnet-weights PATH, "
                f"or put the official file there (weights/README.md)")
    if cfg.optical_flow_network == "flownet":
        flow_file = Path(cfg.flow_weights) if cfg.flow_weights else REPO / "weights" / FLOWNET_FILE
        if cfg.flow_weights or flow_file.is_file():
            load_flow_weights(model.flow_net, str(flow_file))
    if parts is not None:
        load_strict(model.gsv, parts["gsv"], "GSV (grm.*)", str(resume))
        if parts["flow"] is not None and cfg.load_flow:
            load_strict(model.flow_net, parts["flow"], "flow net (state_dict_of)", str(resume))
        elif parts["flow"] is None:
            warnings.warn(f"{resume}: no flow weights (state_dict_of); the flow net stays randomly initialised")
    return model.to(device), parts
