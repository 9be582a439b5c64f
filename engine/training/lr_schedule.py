"""The two learning-rate schedules, each a plain function of (iteration, time-budget share) giving the
factor on a param group's starting learning rate, and setting it on an optimizer.

- Propagation training: ``step_factor`` = gamma ** (iteration // step_size) (what torch's StepLR gave); its
  iteration counts SGD steps only: with Adam the schedule never advances (as in the official code).
- Keyframe-net training: ``poly_factor`` = (1 − max(iteration / total, share)) ** 0.9; a run cut by the
  time budget still ends at a low learning rate.

Each param group keeps its starting rate as ``initial_lr`` (the key torch's schedulers set, saved with the
optimizer state). After the optimizer step of iteration n the trainer sets ``initial_lr · factor(n + 1,
share)``, the rate of the next step, where and when the scheduler objects stepped before; the position
(iterations the schedule advanced) is saved as ``last_epoch`` under ``scheduler`` (with the step schedule's
``step_size`` and ``gamma``), the key and fields of those objects' state_dicts, so checkpoints written with them
resume at the same learning rate, on the same schedule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

POLY_POWER = 0.9

Schedule = Callable[[int, float], float]  # (iteration, time-budget share) -> factor on initial_lr


def step_factor(step: int, step_size: int, gamma: float, time_fraction: float = 0.0) -> float:
    """StepLR's multiplier at iteration ``step``: gamma ** (step // step_size). The budget share
    plays no part (a run the budget stops keeps the rate it reached)."""
    return gamma ** (step // step_size)


def poly_factor(step: int, total: int, power: float = POLY_POWER, time_fraction: float = 0.0) -> float:
    """Poly LR multiplier at iteration ``step`` of ``total`` (1 at 0, 0 at total); with a time budget,
    at the larger of ``step/total`` and ``time_fraction`` (the budget's share spent)."""
    progress = max(step / max(total, 1), time_fraction)
    return max(0.0, 1.0 - progress) ** power


@dataclass(frozen=True)
class StepSchedule:
    """Propagation training's schedule (--step-scheduler, --lr-gamma) as a function of (iteration, share)."""
    step_size: int
    gamma: float

    def __call__(self, step: int, share: float) -> float:
        return step_factor(step, self.step_size, self.gamma, share)

    def state(self, position: int) -> dict:
        """The ``scheduler`` entry of a checkpoint: position and parameters, as StepLR's state_dict named them."""
        return {"last_epoch": int(position), "step_size": self.step_size, "gamma": self.gamma}

    def resumed(self, saved: Mapping | None) -> "StepSchedule":
        """The schedule a checkpoint's ``scheduler`` entry records (a resumed run keeps its schedule, as
        loading the StepLR state did); this one where it records none."""
        if isinstance(saved, Mapping) and "step_size" in saved and "gamma" in saved:
            return StepSchedule(int(saved["step_size"]), float(saved["gamma"]))
        return self


@dataclass(frozen=True)
class PolySchedule:
    """Keyframe-net training's schedule over ``total`` iterations as a function of (iteration, share)."""
    total: int
    power: float = POLY_POWER

    def __call__(self, step: int, share: float) -> float:
        return poly_factor(step, self.total, self.power, share)

    def state(self, position: int) -> dict:
        return {"last_epoch": int(position)}  # the total follows the run (as the LambdaLR's did)


def start_schedule(optimizer: torch.optim.Optimizer) -> None:
    """Record each group's starting rate as ``initial_lr`` (kept if already there)."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])


def apply_schedule(optimizer: torch.optim.Optimizer, schedule: Schedule, step: int, share: float) -> None:
    """Set every group's rate for iteration ``step`` at budget share ``share``."""
    factor = schedule(step, share)
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor


def saved_position(saved: Mapping | None, default: int) -> int:
    """The position a checkpoint's ``scheduler`` entry records (ours, or a StepLR/LambdaLR state_dict);
    ``default`` where it has none."""
    if isinstance(saved, Mapping) and "last_epoch" in saved:
        return int(saved["last_epoch"])
    return int(default)
