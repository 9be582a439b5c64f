"""The learning-rate schedules (engine/training/lr_schedule.py): each factor by hand, equal to the torch scheduler
objects the trainers used before at every iteration, and checkpoints those objects wrote resuming at the same rate.

The resume tests write the checkpoints as the trainers did with a StepLR (propagation) or a poly LambdaLR
(keyframe net): the scheduler's state_dict under ``scheduler``, ``initial_lr`` in the optimizer's groups.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import engine.training.propagation as propagation
import engine.training.segnet as segnet_training
import main as cli
from config.config import parse_args, to_dict
from engine.training.lr_schedule import (PolySchedule, StepSchedule, apply_schedule, poly_factor, start_schedule,
                                         step_factor)
from models.checkpoints import gsvnet_checkpoint
from models.gsvnet import normalisation_dict
from utils.checkpoint import load_file, save_atomic


def test_step_factor_by_hand():
    # step size 2, gamma 0.5: iterations 0 1 | 2 3 | 4
    assert [step_factor(i, 2, 0.5) for i in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert step_factor(7, 3, 0.9) == pytest.approx(0.81)
    for share in (0.3, 1.0):  # the budget share does not move a step schedule
        assert StepSchedule(2, 0.5)(4, share) == 0.25 and StepSchedule(3, 0.9)(7, share) == pytest.approx(0.81)


def test_poly_factor_by_hand():
    schedule = PolySchedule(4)  # 4 iterations in all, power 0.9
    assert [schedule(i, 0.0) for i in range(5)] == pytest.approx([1.0, 0.75 ** 0.9, 0.5 ** 0.9, 0.25 ** 0.9, 0.0])
    assert schedule(1, 0.5) == pytest.approx(0.5 ** 0.9)  # the budget ahead of the iterations
    assert schedule(3, 0.5) == pytest.approx(0.25 ** 0.9)  # the iterations ahead of the budget
    assert schedule(0, 1.0) == 0.0 and schedule(2, 1.0) == 0.0  # budget spent: rate 0
    assert poly_factor(1, 4, power=2.0, time_fraction=0.5) == pytest.approx(0.25)


def _two_group_optimizers():
    def make():
        a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
        return torch.optim.SGD([{"params": [a], "lr": 0.04}, {"params": [b], "lr": 0.01}], lr=0.01, momentum=0.9)
    return make(), make()


def test_step_schedule_equals_step_lr_at_every_iteration():
    reference, ours = _two_group_optimizers()
    scheduler = torch.optim.lr_scheduler.StepLR(reference, step_size=3, gamma=0.7)
    start_schedule(ours)
    schedule = StepSchedule(3, 0.7)
    for step in range(1, 12):
        reference.step()
        scheduler.step()
        apply_schedule(ours, schedule, step, 0.5)
        assert [g["lr"] for g in ours.param_groups] == pytest.approx([g["lr"] for g in reference.param_groups])


def test_poly_schedule_equals_the_poly_lambda_lr_at_every_iteration():
    reference, ours = _two_group_optimizers()
    shares = [0.0, 0.1, 0.2, 0.5, 0.55, 0.6, 0.9, 1.2]  # the budget share read before each step
    now = {"share": 0.0}
    scheduler = torch.optim.lr_scheduler.LambdaLR(reference, lambda s: poly_factor(s, 10, time_fraction=now["share"]))
    start_schedule(ours)
    for step, share in enumerate(shares, start=1):
        now["share"] = share
        reference.step()
        scheduler.step()
        apply_schedule(ours, PolySchedule(10), step, share)
        assert [g["lr"] for g in ours.param_groups] == pytest.approx([g["lr"] for g in reference.param_groups])


# ---------------------------------------------------------------- checkpoints of the scheduler objects
@pytest.fixture(scope="module")
def data(synthetic_data) -> Path:
    return synthetic_data()


def _args(data: Path, logs: Path, *extra: str) -> list[str]:
    return ["--dataset", "synthetic", "--data-path", str(data), "--log-folder", str(logs), "--checkname", "old",
            "--crop-height", "64", "--crop-width", "128", "--batch-size", "2", "--num-worker", "0",
            "--multi-step", "1", "--eval-multi-step", "1", "--max-eval-samples", "1", "--device", "cpu", *extra]


def _lrs(optimizer) -> list[float]:
    return [g["lr"] for g in optimizer.param_groups]


def test_old_step_lr_checkpoint_resumes_at_the_same_rate(data, segnet_file, tmp_path, monkeypatch):
    extra = ("--segnet-weights", str(segnet_file), "--step-scheduler", "3", "--lr-gamma", "0.5", "--epoch", "2",
             "--max-iters", "1")
    cfg = parse_args(_args(data, tmp_path, *extra))
    ctx, _, _ = propagation.build_context(cfg, torch.device("cpu"))
    bases = [cfg.guide_lr, cfg.lr, cfg.optical_flow_lr]
    groups = [{"params": g["params"], "lr": base, "name": g["name"]}
              for g, base in zip(ctx.optimizer.param_groups, bases)]
    optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    for _ in range(5):  # five SGD iterations: the sixth runs at 0.5 ** (5 // 3)
        optimizer.step()
        scheduler.step()
    m = ctx.model
    path = tmp_path / "old.pth.tar"
    save_atomic(gsvnet_checkpoint(
        m.gsv, m.flow_net, model_args=m.constructor_args(), epoch=1, step=5, best_pred=None, current_pred=None,
        optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), scaler=None, config=to_dict(cfg),
        segnet_state_dict=m.segnet.state_dict()), path)
    seen, real = [], propagation.train_one_epoch

    def spy(ctx, epoch, state):
        seen.append(_lrs(ctx.optimizer))
        return real(ctx, epoch, state)

    monkeypatch.setattr(propagation, "train_one_epoch", spy)
    assert cli.main(_args(data, tmp_path, *extra, "--resume", str(path))) == 0
    assert seen == [pytest.approx([base * 0.5 for base in bases])]  # the rate of the sixth iteration
    after = load_file(tmp_path / "run" / "synthetic" / "swiftnet_old" / "checkpoint.pth.tar")
    assert after["scheduler"]["last_epoch"] == 6 and after["step"] == 6
    assert [g["lr"] for g in after["optimizer"]["param_groups"]] == pytest.approx([b * 0.25 for b in bases])


def test_old_lambda_lr_checkpoint_of_the_keyframe_net_resumes_at_the_same_rate(data, tmp_path, monkeypatch):
    extra = ("--train-segnet", "1", "--epoch", "2", "--max-iters", "2", "--use-crop", "0")
    cfg = parse_args(_args(data, tmp_path, *extra))
    ctx, _ = segnet_training.build_segnet_context(cfg, torch.device("cpu"))
    total = 4  # 2 epochs of 2 iterations
    optimizer = torch.optim.Adam(ctx.model.segnet.parameters(), lr=cfg.segnet_lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: poly_factor(s, total))
    for _ in range(3):  # three iterations: the fourth runs at (1 − 3/4) ** 0.9
        optimizer.step()
        scheduler.step()
    spec, net = ctx.model.segnet_name, ctx.model.segnet
    model_args = {"segnet": spec, "num_classes": ctx.model.num_classes, "training_form": True,
                  "keyframe_normalisation": normalisation_dict(ctx.model.keyframe_norm)}
    path = tmp_path / "old_segnet.pth.tar"
    save_atomic({"format": segnet_training.SEGNET_FORMAT, "segnet": spec, "model_args": model_args, "epoch": 1,
                 "step": 3, "best_pred": None, "current_pred": None, "config": to_dict(cfg),
                 "segnet_state_dict": net.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict()}, path)
    seen, real = [], segnet_training.train_segnet_one_epoch

    def spy(ctx, epoch, state):
        seen.append(_lrs(ctx.optimizer))
        return real(ctx, epoch, state)

    monkeypatch.setattr(segnet_training, "train_segnet_one_epoch", spy)
    assert cli.main(_args(data, tmp_path, *extra, "--resume", str(path), "--max-iters", "1")) == 0
    assert seen == [pytest.approx([cfg.segnet_lr * 0.25 ** 0.9])]
    after = load_file(tmp_path / "run" / "synthetic" / "swiftnet_old" / "segnet_checkpoint.pth.tar")
    assert after["scheduler"]["last_epoch"] == 4 and after["step"] == 4
    assert after["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0)  # poly(4 of 4)
