"""``--train-segnet 1``: train the keyframe net (engine/training/segnet.py), one or many processes.

``--time-budget S``: the epoch in which the training time reaches S seconds ends after that iteration,
is validated and saved like any epoch, and the run stops there."""
from __future__ import annotations

from config.config import Config
from engine.training.segnet import train_keyframe_net
from modes.job import run_job


def run(cfg: Config) -> int:
    """``--train-segnet 1``. Returns the exit code (1 with a one-line error for user errors)."""
    return run_job(cfg, train_keyframe_net)
