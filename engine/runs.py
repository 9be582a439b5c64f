"""Where a run lives and what it reads: dataset root, run folders, resume and weight-file look-ups.

Run layout (docs/conventions.md); {segnet} is ``spec_dirname(--segnet)``: a built-in's name as it is,
a filesystem-safe name for other specs (torchvision:fcn_resnet50 -> torchvision-fcn_resnet50):
    logs/run/{dataset}/{segnet}_{checkname}/          config.json, log.jsonl, checkpoint.pth.tar,
                                                       model_best.pth.tar, eval_<name>/metrics.json
    logs/summary/{dataset}/{segnet}_{checkname}/<time>/  TensorBoard
    logs/pred_img_res/{dataset}/{segnet}_{checkname}/{ResFolderName}/   saved predictions
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from config.config import Config, to_dict
from config.dataset_preset import DatasetPreset
from config.presets import get_preset
from models.keyframe_spec import spec_dirname
from utils.logging import git_commit, write_json

REPO = Path(__file__).resolve().parent.parent
# Official file names under weights/ (weights/README.md says where they come from); generic kinds
# (torchvision:, hf:, module:) have none.
SEGNET_FILES = {"swiftnet": "cityscapes-swnet-R18.pt", "bisenet": "cityscapes-bisenet-R18.pth",
                "pidnet_s": "PIDNet_S_Cityscapes_val.pt", "pidnet_m": "PIDNet_M_Cityscapes_val.pt",
                "pidnet_l": "PIDNet_L_Cityscapes_val.pt"}
GSVNET_FILES = {"swiftnet": "gsvnet_swnet_r18.tar", "bisenet": "gsvnet_bisenet_r18.tar"}
FLOWNET_FILE = "flownet.pth.tar"


def preset_of(cfg: Config) -> DatasetPreset:
    """The dataset preset of the run (folder/vspw: read from --data-path), with --train-scales applied."""
    preset = get_preset(cfg.dataset, cfg.data_path)
    return dataclasses.replace(preset, train_scales=tuple(cfg.train_scales)) if cfg.train_scales else preset


def data_root(cfg: Config, preset: DatasetPreset) -> str:
    return cfg.data_path or preset.data_path


def crop_size(cfg: Config, preset: DatasetPreset) -> tuple[int, int]:
    """--crop-height/width, or the preset's crop: 3/4 of its frame size (the paper: patches of 3/4 of the input;
    folder/vspw: of the smallest training frame)."""
    return (cfg.crop_height or preset.crop_size[0], cfg.crop_width or preset.crop_size[1])


def run_name(cfg: Config) -> str:
    return f"{spec_dirname(cfg.segnet)}_{cfg.checkname}"


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


def segnet_weights_path(cfg: Config) -> Path | None:
    """--segnet-weights, else the built-in net's official file under weights/ (which may not exist);
    None for generic kinds (their start is random, or an hf: folder's own weights)."""
    if cfg.segnet_weights:
        return Path(cfg.segnet_weights)
    name = SEGNET_FILES.get(cfg.segnet.spec)
    return REPO / "weights" / name if name else None


def resolve_resume(cfg: Config) -> Path | None:
    """--resume 0: None. 1: the run's checkpoint.pth.tar, else weights/gsvnet_<net>_r18.tar (SwiftNet and
    BiSeNet only). PATH: that file."""
    if cfg.resume in ("0", "", "false", "False"):
        return None
    if cfg.resume in ("1", "true", "True"):
        candidates = [run_dir(cfg) / "checkpoint.pth.tar"]
        official = GSVNET_FILES.get(cfg.segnet.spec)
        candidates += [REPO / "weights" / official] if official else []
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        found = (f"neither {candidates[0]} nor {candidates[1]} exists" if len(candidates) > 1
                 else f"{candidates[0]} does not exist")
        raise FileNotFoundError(f"--resume 1: {found}")
    path = Path(cfg.resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {cfg.resume}: no such checkpoint file")
    return path
