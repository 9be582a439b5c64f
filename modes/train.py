"""Default mode: train the flow net + GSV (engine/training/propagation.py), one or many processes.

``--time-budget S``: flow pre-training and the training epochs spend the budget; the epoch in which it
runs out ends after that iteration, is validated (whatever --eval-interval says) and saved, and the run
stops there. Flow pre-training itself is never cut: its iterations are fixed by --pretrain-flow-iters."""
from __future__ import annotations

from config.config import Config
from engine.training.propagation import train_propagation
from modes.job import run_job


def run(cfg: Config) -> int:
    """Default mode: train the flow net + GSV. Returns the exit code (see run_job)."""
    return run_job(cfg, train_propagation)
