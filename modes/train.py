"""Default mode: train the flow net + GSV (engine/training/propagation.py), one or many processes.

``--time-budget S``: flow pre-training and the training epochs spend the budget; the epoch in which it
runs out ends after that iteration, is validated (whatever --eval-interval says) and saved, and the run
stops there. Flow pre-training itself is never cut: its iterations are fixed by --pretrain-flow-iters."""
from __future__ import annotations

import torch

from config.config import Config
from engine import distributed as dist
from engine.training.propagation import build_context, evaluate_epoch, save_checkpoints, train_one_epoch
from engine.training.flow_pretrain import maybe_pretrain_flow
from engine.runs import run_dir, write_config
from engine.training.loop import run_header, set_sampler_epoch
from modes.job import run_job

def train(cfg: Config, device: torch.device) -> int:
    ctx, state, resume = build_context(cfg, device)
    if dist.is_main():
        write_config(cfg, run_dir(cfg), world_size=dist.world_size(), resumed_from=str(resume) if resume else None)
        print(run_header(cfg, "propagation training") + f" | starting at epoch {state.epoch} of {cfg.epoch}")
    if cfg.pretrain_flow != "none":
        with ctx.budget.counting():
            maybe_pretrain_flow(ctx, resume)
    for epoch in range(state.epoch, cfg.epoch):
        set_sampler_epoch(ctx.loaders, epoch)
        with ctx.budget.counting():
            stats = train_one_epoch(ctx, epoch, state)
        ctx.logger.scalars(stats, state.step, epoch=epoch, event="epoch")
        evaluate = (epoch + 1) % max(cfg.eval_interval, 1) == 0 or epoch + 1 == cfg.epoch or ctx.budget.stopped
        current = evaluate_epoch(ctx, epoch, state) if evaluate else None
        is_best = state.end_epoch(epoch, current, evaluated=evaluate)
        with dist.fail_together("saving the checkpoint"):
            save_checkpoints(ctx, state, current, is_best)
        if ctx.budget.ran_out(state.step, epoch, announce=dist.is_main()):
            break
    ctx.logger.close()
    if dist.is_main():
        print(f"done after epoch {state.epoch} of {cfg.epoch}: {run_dir(cfg) / 'checkpoint.pth.tar'} "
              f"(best avg mIoU {state.best_pred})")
    return 0


def run(cfg: Config) -> int:
    """Default mode: train the flow net + GSV. Returns the exit code (see run_job)."""
    return run_job(cfg, train)
