"""Keyframe-net training (``--train-segnet 1``): any keyframe net (``--segnet`` spec) on the annotated frames.

Needed where no pretrained keyframe weights can be downloaded (the synthetic demo), so the whole
system can be trained from scratch: first this stage, then propagation training with
``--segnet-weights <run folder>/segnet_best.pt``.

- Start: random initialisation (an hf: net: its folder's weights), or ``--segnet-weights`` if given
  (fine-tuning; a PIDNet ImageNet backbone file loads the part it covers; the preset's default weights
  file is not used here); ``--resume 1`` / ``--resume PATH`` continues a checkpoint. The net is built
  by engine.model_builder.assemble_model in its training form (PIDNet: [p_aux, main, d]).
- Data: the distance-0 samples (annotated frames) of the train split with the same clip
  augmentation as propagation training; the crop is fed at its own resolution.
- Optimizer: Adam (weight decay 1e-4) with poly decay ``lr = --segnet-lr · (1 − it/total)^0.9`` per
  iteration.
- ``--time-budget S`` (TimeBudget): the run stops after the iteration in which its training time
  reaches S seconds, then validates and saves as at the end of an epoch. The poly decay then follows
  whichever runs out first, iterations or seconds (progress = max(it/total, spent/S)), so a run cut by
  the budget still ends at a low learning rate, as a finished schedule does.
- Loss: PIDNet: engine.training.pidnet_loss (aux, main, boundary and boundary-guided terms); the others: CE of
  the main logits at label resolution (+ CE of BiSeNet's two auxiliary heads). Class weights with
  --class-weights 1: PIDNet its official config's own (keyframe_class_weight), the others the preset's.
- Validation every epoch: keyframe-only mIoU (distance 0) at ``--key-scale`` with the evaluation
  protocol of ``engine.evaluation.protocol`` (logits through the 1/8 grid, as GSVNet uses them).
- Files in the run folder: the weights in the OFFICIAL format of the net where it has one (SwiftNet:
  raw state_dict ``segnet.pt``; BiSeNet: ``{'state_dict': sd}`` ``segnet.pth``; PIDNet: the released
  layout, "model."-prefixed keys, ``segnet.pt``), torchvision:/module: a plain state_dict
  ``segnet.pth``, hf: a save_pretrained folder ``segnet/``; the best epoch's as ``segnet_best*``; and
  the resumable ``segnet_checkpoint.pth.tar`` (``--resume 1``; it records the spec, the classes and the
  input statistics as ``model_args``).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from config.config import Config, to_dict
from config.dataset_preset import DatasetPreset
from engine import distributed as dist
from engine.runs import preset_of, run_dir, summary_dir, write_config
from utils.seed import seed_everything
from engine.evaluation.protocol import eval_datasets, evaluate_model
from engine.training.losses import (autocast, class_weight_tensor, make_scaler, segnet_loss, stop_if_non_finite,
                                    upsample_to)
from engine.model_builder import assemble_model, config_norm_args
from engine.training.lr_schedule import PolySchedule, apply_schedule, saved_position, start_schedule
from engine.training.pidnet_loss import official_class_weights, pidnet_loss
from engine.training.loop import (ADAM_WEIGHT_DECAY, LOG_EVERY, TimeBudget, TrainState, build_train_loaders,
                                  loader_limit, next_batch, run_header, set_sampler_epoch, wrap_ddp)
from models.gsvnet import GSVNet, normalisation_dict
from models.keyframe_net import read_logits
from models.keyframe_spec import KeyframeNetSpec
from models.pidnet_weights import NETWORK_PREFIX
from utils.checkpoint import load_file, save_atomic
from utils.logging import RunLogger
from utils.metrics import confusion_matrix, miou


SEGNET_FORMAT = "gsvnet-repro-segnet/1"


CHECKPOINT = "segnet_checkpoint.pth.tar"


def weights_name(spec: KeyframeNetSpec, best: bool = False) -> str:
    """The weights file (or, for hf:, folder) name in the run folder; official extensions for built-ins."""
    stem = "segnet_best" if best else "segnet"
    if spec.kind == "hf":
        return stem
    return stem + (".pt" if spec.spec == "swiftnet" or spec.is_pidnet else ".pth")


def official_weights(spec: KeyframeNetSpec, state_dict: dict) -> dict | object:
    """The object the official code saves/loads for this keyframe net (docs/formats.md); a plain state_dict
    for kinds without an official format."""
    sd = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}  # no channels-last strides on disk
    if spec.is_pidnet:
        return {NETWORK_PREFIX + k: v for k, v in sd.items()}  # the released FullModel layout
    return {"state_dict": sd} if spec.spec == "bisenet" else sd


def save_pretrained_atomic(net: torch.nn.Module, folder: Path) -> None:
    """save_pretrained into a temporary folder, then swap it in: a crash never leaves half a folder."""
    tmp, old = folder.with_name(f".{folder.name}.tmp"), folder.with_name(f".{folder.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    net.save_pretrained(tmp, state_dict={k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()})
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class SegnetSettings:
    """The flag values a keyframe-net training epoch reads (taken from the Config in build_segnet_context)."""
    amp: bool
    iterations: int  # per epoch (iterations_per_epoch), fewer if the time budget runs out
    checkpoint: Path  # the run's segnet_checkpoint.pth.tar, named when the loss turns non-finite


@dataclass
class SegnetRun:
    """What a keyframe-net training epoch works with: the flag values it reads and the objects it trains."""
    settings: SegnetSettings
    preset: DatasetPreset
    device: torch.device
    model: GSVNet  # only .segnet trains; the wrapper gives normalisation and evaluation
    train_net: torch.nn.Module  # model.segnet, DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    schedule: PolySchedule  # the LR factor of (iteration, budget share)
    scaler: torch.amp.GradScaler
    class_weight: torch.Tensor | None
    loader: DataLoader
    logger: RunLogger
    budget: TimeBudget


def build_segnet_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.segnet_lr, weight_decay=ADAM_WEIGHT_DECAY)


def segnet_resume_path(cfg: Config) -> Path | None:
    """--resume 1: this run's segnet_checkpoint.pth.tar; PATH: that file (ours, or official weights)."""
    if cfg.resume in ("0", "", "false", "False"):
        return None
    path = run_dir(cfg) / CHECKPOINT if cfg.resume in ("1", "true", "True") else Path(cfg.resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {cfg.resume}: keyframe-net checkpoint not found: {path}")
    return path


def restore(path: Path | None, optimizer: torch.optim.Optimizer, reset_best: bool) -> TrainState:
    """Where to continue: the epoch of our checkpoint, its optimizer state loaded into ``optimizer`` (the
    weights were loaded when the model was assembled); epoch 0 for anything else (an official weights file)."""
    if path is None:
        return TrainState()
    raw = load_file(path)
    if not (isinstance(raw, dict) and raw.get("format") == SEGNET_FORMAT):
        return TrainState()  # weights only (an official file): start at epoch 0
    optimizer.load_state_dict(raw["optimizer"])  # with each group's initial_lr and current lr
    best = None if reset_best else raw.get("best_pred")
    step = int(raw.get("step", 0))
    return TrainState(epoch=int(raw["epoch"]), best_pred=best, step=step,
                      lr_step=saved_position(raw.get("scheduler"), step))


def keyframe_class_weight(cfg: Config, preset: DatasetPreset, device: torch.device) -> torch.Tensor | None:
    """CE class weights of keyframe-net training with --class-weights 1: PIDNet its official config's own
    (engine.training.pidnet_loss.official_class_weights: Cityscapes-class data 0.84–1.15, CamVid none), every other
    net the preset's (GSVNet's) weights; None with --class-weights 0."""
    if not cfg.segnet.is_pidnet:
        return class_weight_tensor(cfg, preset, device)
    weights = official_class_weights(preset.kind, preset.num_classes) if cfg.class_weights else None
    return None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)


def keyframe_net_loss(spec: KeyframeNetSpec, outputs, label: torch.Tensor, class_weight: torch.Tensor | None,
                      ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, main logits at label size) of a training-form forward result: pidnet_loss for PIDNet,
    segnet_loss (CE, + BiSeNet's aux heads) for the other built-ins, CE of the main logits otherwise."""
    if spec.is_pidnet:
        loss, _ = pidnet_loss(outputs, label, class_weights=class_weight, ignore_index=ignore_index)
        return loss, upsample_to(outputs[1], label.shape[-2:])
    if spec.kind != "builtin":
        outputs = read_logits(spec, outputs)
    return segnet_loss(outputs, label, class_weight, ignore_index)


def segnet_step(ctx: SegnetRun, batch: dict, where: str, state: TrainState) -> tuple[float, torch.Tensor]:
    """One optimizer step on annotated frames; returns (loss, label-size main logits, detached)."""
    frames = batch["frames"][:, -1].to(ctx.device, non_blocking=True).float()  # B×3×H×W RGB 0–255
    label = batch["label"].to(ctx.device, non_blocking=True)
    with autocast(ctx.device, ctx.settings.amp):
        outputs = ctx.train_net(ctx.model.normalise_rgb(frames).contiguous(memory_format=torch.channels_last))
    loss, main = keyframe_net_loss(ctx.model.spec, outputs, label, ctx.class_weight, ctx.preset.ignore_index)
    stop_if_non_finite(float(loss.detach()), where, ctx.settings.checkpoint)
    ctx.optimizer.zero_grad(set_to_none=True)
    ctx.scaler.scale(loss).backward()
    ctx.scaler.step(ctx.optimizer)
    ctx.scaler.update()
    state.lr_step += 1
    apply_schedule(ctx.optimizer, ctx.schedule, state.lr_step, ctx.budget.fraction())
    return float(loss.detach()), main.detach()


def iterations_per_epoch(cfg: Config, loader: DataLoader) -> int:
    n = loader_limit(cfg.early_stop, len(loader))
    return min(n, cfg.max_iters) if cfg.max_iters > 0 else n


def train_segnet_one_epoch(ctx: SegnetRun, epoch: int, state: TrainState) -> dict[str, float]:
    num_classes = ctx.preset.num_classes
    ctx.model.segnet.train()  # evaluation leaves it in eval mode
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=ctx.device)
    total, count = 0.0, ctx.settings.iterations  # fewer if ctx.budget runs out
    iterator = iter(ctx.loader)
    bar = tqdm(range(count), desc=f"segnet epoch {epoch}", unit="it", dynamic_ncols=True, disable=not dist.is_main())
    done = 0
    for i in bar:
        batch = next_batch(iterator, "loading a training batch")
        loss, main = segnet_step(ctx, batch, f"epoch {epoch}, iteration {i}", state)
        state.step += 1
        done, total = i + 1, total + loss
        cm += confusion_matrix(main.argmax(1), batch["label"].to(ctx.device), num_classes, ctx.preset.ignore_index)
        bar.set_postfix(loss=f"{total / (i + 1):.3f}", mIoU=f"{100 * miou(cm):.1f}")
        if i % LOG_EVERY == 0:
            ctx.logger.scalars({"segnet/loss": loss, "lr/segnet": ctx.optimizer.param_groups[0]["lr"]}, state.step,
                               epoch=epoch, event="train")
        if ctx.budget.exhausted():
            break
    bar.close()
    stats = torch.tensor([total, done], dtype=torch.float64)
    dist.all_reduce_sum(stats)
    dist.all_reduce_sum(cm)
    return {"segnet/train_loss": stats[0].item() / max(stats[1].item(), 1.0), "segnet/train_miou": 100 * miou(cm)}


def save_segnet(cfg: Config, model: GSVNet, optimizer: torch.optim.Optimizer, schedule: PolySchedule,
                state: TrainState, current: float | None, is_best: bool) -> None:
    """Weights in the net's format (+ best copy) and the resumable checkpoint with ``cfg`` as its recorded
    configuration, atomically (rank 0)."""
    if not dist.is_main():
        return
    spec, net, folder = model.spec, model.segnet, run_dir(cfg)
    if spec.kind == "hf":
        for name in [weights_name(spec)] + ([weights_name(spec, best=True)] if is_best else []):
            save_pretrained_atomic(net, folder / name)
    else:
        weights = official_weights(spec, net.state_dict())
        save_atomic(weights, folder / weights_name(spec))
        if is_best:
            save_atomic(weights, folder / weights_name(spec, best=True))
    model_args = {"segnet": spec.spec, "num_classes": model.num_classes, "training_form": True,
                  "keyframe_normalisation": normalisation_dict(model.keyframe_norm)}
    ckpt = {"format": SEGNET_FORMAT, "segnet": spec.spec, "model_args": model_args, "epoch": state.epoch,
            "step": state.step, "best_pred": state.best_pred, "current_pred": current, "config": to_dict(cfg),
            "segnet_state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
            "optimizer": optimizer.state_dict(), "scheduler": schedule.state(state.lr_step)}
    save_atomic(ckpt, folder / CHECKPOINT)


def build_segnet_context(cfg: Config, device: torch.device) -> tuple[SegnetRun, TrainState]:
    """The run's loader, model (restored with --resume), optimizer and logger, and where to continue."""
    preset = preset_of(cfg)
    loader = build_train_loaders(cfg, preset, [0], device)[0]
    eval_datasets(cfg, preset, [0], "select")  # a missing validation split fails now
    path = segnet_resume_path(cfg)
    seed_everything(cfg.seed)  # same initialisation on every rank
    start = str(path) if path is not None else (cfg.segnet_weights or None)
    model, _ = assemble_model(cfg.segnet, cfg.optical_flow_network, preset.num_classes, segnet_weights=start,
                              intra=cfg.intra, training_form=True, partial_backbone=path is None,
                              missing_segnet="quiet", **config_norm_args(cfg))
    model = model.to(device).to_channels_last()
    seed_everything(cfg.seed, dist.rank())
    optimizer = build_segnet_optimizer(cfg, model.segnet.parameters())
    iterations = iterations_per_epoch(cfg, loader)
    total = max(1, cfg.epoch * iterations)
    budget = TimeBudget(cfg.time_budget)
    start_schedule(optimizer)
    logger = RunLogger(run_dir(cfg), summary_dir(cfg), enabled=dist.is_main())
    state = restore(path, optimizer, cfg.reset_best_pred)  # before DDP: it broadcasts rank 0's (restored) weights
    settings = SegnetSettings(cfg.amp, iterations, run_dir(cfg) / CHECKPOINT)
    run = SegnetRun(settings, preset, device, model, wrap_ddp(model.segnet, device), optimizer, PolySchedule(total),
                    make_scaler(device, cfg.amp), keyframe_class_weight(cfg, preset, device), loader, logger, budget)
    return run, state


def train_keyframe_net(cfg: Config, device: torch.device) -> int:
    """The ``--train-segnet 1`` job: the epochs (train, validate at --key-scale, save) until --epoch or
    --time-budget ends them; prints where the weights are and the next command. Returns 0."""
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
            save_segnet(cfg, ctx.model, ctx.optimizer, ctx.schedule, state, current, is_best)
        if ctx.budget.ran_out(state.step, epoch, announce=dist.is_main()):
            break
    ctx.logger.close()
    if dist.is_main():
        spec = cfg.segnet
        best = folder / weights_name(spec, best=True)
        form = {"builtin": "official", "hf": "save_pretrained folder"}.get(spec.kind, "plain state_dict")
        print(f"keyframe-net weights ({spec.spec}, {form}): {folder / weights_name(spec)}\n"
              f"best epoch (val mIoU {state.best_pred}): {best}\n"
              f"next: python main.py --segnet {spec.spec} --dataset {cfg.dataset} --segnet-weights {best} ...")
    return 0
