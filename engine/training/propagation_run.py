"""What a propagation training epoch works with (engine/training/propagation.py): the few flag values it
reads (``EpochSettings``, taken from the Config by ``epoch_settings``) and the objects it trains, steps and
logs to (``PropagationRun``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from config.config import Config
from config.dataset_preset import DatasetPreset
from engine.runs import run_dir
from engine.training.keyframe_cache import KeyframeCache
from engine.training.loop import TimeBudget
from engine.training.lr_schedule import StepSchedule
from models.gsvnet import GSVNet
from utils.logging import RunLogger


@dataclass(frozen=True)
class EpochSettings:
    """The flag values a propagation training epoch reads (epoch_settings takes them from the Config)."""
    amp: bool
    key_scale: float
    finetune_all: bool  # gradients through every propagation step (else the last two)
    distil: bool
    param_ce: float
    param_ce_distil: float
    step_lr: bool  # --optim sgd: the LR schedule advances every iteration (Adam keeps its rate)
    max_iters: int
    early_stop: bool
    seed: int
    train_optical_flow: bool
    freeze_bn: bool
    checkpoint: Path  # the run's checkpoint.pth.tar, named when the loss turns non-finite
    crop_view_targets: bool = False  # --pseudo-labels 1 --use-crop 1: targets of the crop itself


def epoch_settings(cfg: Config) -> EpochSettings:
    return EpochSettings(cfg.amp, cfg.key_scale, cfg.finetune_all, cfg.distil, cfg.param_ce, cfg.param_ce_distil,
                         cfg.optim == "sgd", cfg.max_iters, cfg.early_stop, cfg.seed, cfg.train_optical_flow,
                         cfg.freeze_bn, run_dir(cfg) / "checkpoint.pth.tar", cfg.pseudo_labels and cfg.use_crop)


@dataclass
class PropagationRun:
    """What a training epoch works with: the flag values it reads and the objects it trains and logs to."""
    settings: EpochSettings
    preset: DatasetPreset
    device: torch.device
    model: GSVNet  # model_without_ddp
    train_model: GSVNet  # the same modules, flow net and GSV wrapped in DDP when distributed
    optimizer: torch.optim.Optimizer
    schedule: StepSchedule  # the LR factor of (schedule iteration, budget share)
    scaler: torch.amp.GradScaler
    class_weight: torch.Tensor | None
    loaders: dict[int, DataLoader]
    logger: RunLogger
    cache: KeyframeCache | None = None  # --cache-keyframes 1: frozen keyframe-net outputs per clip
    budget: TimeBudget = field(default_factory=lambda: TimeBudget(0))  # --time-budget
