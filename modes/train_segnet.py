"""``--train-segnet 1``: train the keyframe net (engine/training/segnet.py), one or many processes.

``--time-budget S``: the epoch in which the training time reaches S seconds ends after that iteration,
is validated and saved like any epoch, and the run stops there."""
from __future__ import annotations

import torch

from config.config import Config
from engine import distributed as dist
from engine.evaluation.protocol import evaluate_model
from engine.runs import run_dir, write_config
from engine.training.segnet import build_segnet_context, save_segnet, train_segnet_one_epoch, weights_name
from engine.training.loop import run_header, set_sampler_epoch
from modes.job import run_job
from models.keyframe_net import parse_spec


def train_segnet(cfg: Config, device: torch.device) -> int:
    ctx, state = build_segnet_context(cfg, device)
    folder = run_dir(cfg)
    if dist.is_main():
        write_config(cfg, folder, stage="train_segnet", world_size=dist.world_size())
        print(run_header(cfg, "keyframe-net training") + f" | starting at epoch {state.epoch} of {cfg.epoch}")
    for epoch in range(state.epoch, cfg.epoch):
        set_sampler_epoch({0: ctx.loader}, epoch)
        with ctx.budget.counting():
            stats = train_segnet_one_epoch(ctx, epoch, state)
        metrics = evaluate_model(ctx.model, cfg, ctx.preset, device, distances=[0], key_scale=cfg.key_scale,
                                 fusion="copy", progress=True, purpose="select")
        current = metrics["per_distance"]["0"]["miou"]
        ctx.logger.scalars({**stats, "segnet/val_miou": current}, state.step, epoch=epoch, event="epoch")
        is_best = state.end_epoch(epoch, current)
        if dist.is_main():
            print(f"epoch {epoch}: train loss {stats['segnet/train_loss']:.3f} | val mIoU (k=0, scale "
                  f"{cfg.key_scale}) {'-' if current is None else f'{current:.2f}'}")
        with dist.fail_together("saving the keyframe-net weights"):
            save_segnet(ctx, state, current, is_best)
        if ctx.budget.ran_out(state.step, epoch, announce=dist.is_main()):
            break
    ctx.logger.close()
    if dist.is_main():
        spec = parse_spec(cfg.segnet)
        best = folder / weights_name(spec.spec, best=True)
        form = {"builtin": "official", "hf": "save_pretrained folder"}.get(spec.kind, "plain state_dict")
        print(f"keyframe-net weights ({spec.spec}, {form}): {folder / weights_name(spec.spec)}\n"
              f"best epoch (val mIoU {state.best_pred}): {best}\n"
              f"next: python main.py --segnet {spec.spec} --dataset {cfg.dataset} --segnet-weights {best} ...")
    return 0


def run(cfg: Config) -> int:
    """``--train-segnet 1``. Returns the exit code (1 with a one-line error for user errors)."""
    return run_job(cfg, train_segnet)
