"""What every mode shares: device, dataset preset, run folders, seeding and building the model from a Config.

Run layout (DESIGN.md §12, §13):
    logs/run/{dataset}/{segnet}_{checkname}/          config.json, log.jsonl, checkpoint.pth.tar,
                                                       model_best.pth.tar, eval_<name>/metrics.json
    logs/summary/{dataset}/{segnet}_{checkname}/<time>/  TensorBoard
    logs/pred_img_res/{dataset}/{segnet}_{checkname}/{ResFolderName}/   saved predictions
"""
from __future__ import annotations

import ctypes
import ctypes.util
import random
import sys
import warnings
import time
from pathlib import Path

import numpy as np
import torch

from config.config import Config, to_dict
from config.presets import DatasetPreset, get_preset
from models.checkpoints import gsvnet_parts, load_flow_weights, load_strict, segnet_state_dict
from models.gsvnet import GSVNet
from utils.logging import git_commit, write_json

REPO = Path(__file__).resolve().parent.parent
# Official file names under weights/ (weights/README.md says where they come from).
SEGNET_FILES = {"swiftnet": "cityscapes-swnet-R18.pt", "bisenet": "cityscapes-bisenet-R18.pth"}
GSVNET_FILES = {"swiftnet": "gsvnet_swnet_r18.tar", "bisenet": "gsvnet_bisenet_r18.tar"}
FLOWNET_FILE = "flownet.pth.tar"


# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2 ** 20  # glibc's own upper bound for its dynamic threshold


def keep_freed_memory() -> bool:
    """Let glibc keep freed heap memory for reuse instead of returning it to the OS (CPU speed).

    By default glibc trims the heap once a large block at its top is free, so after every keyframe
    (hundreds of MB of activations) the next frames' buffers are fresh pages again, and the page faults
    cost ~25 % of a non-keyframe step on a VM (measured: 22 → 28-30 ms at 1024×2048). Fixing the mmap
    threshold at 32 MB and never trimming keeps blocks below 32 MB in the heap; larger ones are still
    mapped and unmapped per use, so the resident size stays bounded by the peak of the smaller blocks.
    Process-wide, so only main.py calls it. Returns False where it does not apply (not glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {name} requested but CUDA is not available on this machine")
    return device


def preset_of(cfg: Config) -> DatasetPreset:
    return get_preset(cfg.dataset)


def data_root(cfg: Config, preset: DatasetPreset) -> str:
    return cfg.data_path or preset.data_path


def crop_size(cfg: Config, preset: DatasetPreset) -> tuple[int, int]:
    """--crop-height/width, or 3/4 of the dataset's frame size (the paper: patches of 3/4 of the input)."""
    h, w = preset.frame_size
    return (cfg.crop_height or h * 3 // 4, cfg.crop_width or w * 3 // 4)


def run_name(cfg: Config) -> str:
    return f"{cfg.segnet}_{cfg.checkname}"


def run_dir(cfg: Config) -> Path:
    return Path(cfg.log_folder) / "run" / cfg.dataset / run_name(cfg)


def summary_dir(cfg: Config) -> Path:
    return Path(cfg.log_folder) / "summary" / cfg.dataset / run_name(cfg) / time.strftime("%Y%m%d_%H%M%S")


def pred_dir(cfg: Config, folder: str) -> Path:
    return Path(cfg.log_folder) / "pred_img_res" / cfg.dataset / run_name(cfg) / folder


def timestamp() -> str:
    return time.strftime("%Y%m%d_%H%M%S")


def write_config(cfg: Config, folder: Path, **extra) -> Path:
    """The resolved config + git commit as JSON in ``folder`` (atomic)."""
    path = Path(folder) / "config.json"
    write_json(path, {**to_dict(cfg), "git_commit": git_commit(str(REPO)), **extra})
    return path


def seed_everything(seed: int, rank: int = 0) -> None:
    if seed < 0:
        return
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)


def segnet_weights_path(cfg: Config) -> Path:
    return Path(cfg.segnet_weights) if cfg.segnet_weights else REPO / "weights" / SEGNET_FILES[cfg.segnet]


def resolve_resume(cfg: Config) -> Path | None:
    """--resume 0: None. 1: the run's checkpoint.pth.tar, else weights/gsvnet_<net>_r18.tar. PATH: that file."""
    if cfg.resume in ("0", "", "false", "False"):
        return None
    if cfg.resume in ("1", "true", "True"):
        for candidate in (run_dir(cfg) / "checkpoint.pth.tar", REPO / "weights" / GSVNET_FILES[cfg.segnet]):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"--resume 1: neither {run_dir(cfg) / 'checkpoint.pth.tar'} nor "
                                f"{REPO / 'weights' / GSVNET_FILES[cfg.segnet]} exists")
    path = Path(cfg.resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {cfg.resume}: no such checkpoint file")
    return path


def build_model(cfg: Config, preset: DatasetPreset, device: torch.device, load_segnet: bool = True,
                resume: Path | None = None) -> tuple[GSVNet, dict | None]:
    """The GSVNet of a Config with its keyframe-net weights and, if resuming, the trained modules.

    Returns (model on device, the checkpoint parts of :func:`models.checkpoints.gsvnet_parts` or None).
    """
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
                f"keyframe-net weights not found: {path}. Put the official file there (weights/README.md), "
                f"pass --segnet-weights PATH, or train one with --train-segnet 1")
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
