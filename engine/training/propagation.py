"""Propagation training (docs/training.md; the official recipe with its defects fixed).

The keyframe net is frozen; the flow net and the GSV module learn end to end. Per epoch every batch of
every ``--multi-step`` distance k is seen once, in a shuffled order shared by all ranks (the official
code iterated the loaders k=1..4 one after another, unshuffled on one GPU). A batch is a clip of k+1
frames; the keyframe net segments frame 0 at ``--key-scale`` (the evaluation scale; officially the
full crop, a train/test mismatch), the prediction is propagated k steps with gradients only through
the last two (``--finetune-all 1``: all), and ``engine.training.losses.propagation_loss`` scores the last frame.

Optimizer: SGD (Nesterov, momentum 0.9, weight decay on all groups) over the groups guide
(``--guide-lr``), intra (``--lr``) and flow (``--optical-flow-lr``, if ``--train-optical-flow``); the
frozen ideal-delay kernels are not in it. The learning rate follows ``engine.training.lr_schedule.step_factor``
(StepLR's --step-scheduler, --lr-gamma), advanced after every SGD iteration. ``--epoch`` is the total number
of epochs: a resumed run continues up to it.

``--pseudo-labels 1`` (engine/teacher/pseudo_labels.py): no labels; every frame with k predecessors is a sample whose
CE target is the keyframe net's prediction of it and whose KL target its logits: on whole frames from the teacher
cache filled once before the first epoch (engine/teacher/cache.py), with --use-crop 1 of the augmented crop itself
(crop_view_targets; the cache then marks the padding); validation scores agreement with the keyframe net.

``--time-budget S`` (engine.training.loop.TimeBudget, shared with the keyframe-net stage): an epoch
ends after the iteration in which the training time reaches S seconds; train_propagation then validates,
saves and stops.

Distributed: DDP on the flow net and the GSV separately (SyncBatchNorm on GPU; torch
has none for CPU, where BN buffers are broadcast from rank 0 instead); ``model`` stays the plain
GSVNet (``model_without_ddp``), ``train_model`` is a GSVNet shell around the DDP modules. Only rank 0
prints, logs and saves.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from config.config import Config, to_dict
from config.dataset_preset import DatasetPreset
from engine import distributed as dist
from engine.evaluation.protocol import eval_datasets, eval_distances, evaluate_model
from engine.training.keyframe_cache import KeyframeCache, clip_keys
from engine.training.propagation_run import PropagationRun, epoch_settings
from engine.training.lr_schedule import StepSchedule, apply_schedule, saved_position, start_schedule
from engine.training.losses import autocast, class_weight_tensor, make_scaler, propagation_loss, stop_if_non_finite
from engine.model_builder import build_model
from engine.teacher.pseudo_labels import crop_view_targets, frame_sample_datasets, with_teacher_targets
from engine.runs import preset_of, resolve_resume, run_dir, summary_dir, write_config
from engine.training.flow_pretrain import maybe_pretrain_flow
from engine.training.loop import (ADAM_WEIGHT_DECAY, LOG_EVERY, TimeBudget, TrainState, batch_schedule,
                                  build_train_loaders, loader_limit, next_batch, run_header, set_sampler_epoch,
                                  set_train_mode, set_trainable, train_transform, wrap_ddp)
from models.checkpoints import FORMAT, gsvnet_checkpoint
from models.gsvnet import GSVNet, lowres_size
from models.labels import logits_to_labels
from models.resize import resize
from utils.checkpoint import save_atomic
from utils.logging import RunLogger, write_json
from utils.metrics import confusion_matrix, miou
from utils.seed import seed_everything
from utils.visualize import colorize, hstack


def build_optimizer(model: GSVNet, cfg: Config) -> torch.optim.Optimizer:
    """Param groups guide / intra / flow with their own learning rates (official order minus ideal_dk)."""
    groups = [dict(params=[p for p in model.gsv.guide.parameters() if p.requires_grad], lr=cfg.guide_lr,
                   name="guide")]
    if model.gsv.intra:
        groups.append(dict(params=list(model.gsv.intra_net.parameters()), lr=cfg.lr, name="intra"))
    if cfg.train_optical_flow:
        groups.append(dict(params=list(model.flow_net.parameters()), lr=cfg.optical_flow_lr, name="flow"))
    covered = {id(p) for g in groups for p in g["params"]}
    stray = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
    if stray:  # a new trainable module would otherwise silently not learn
        raise RuntimeError(f"trainable parameters missing from the optimizer: {stray[:5]}")
    if cfg.optim == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=ADAM_WEIGHT_DECAY)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)


def restore_training_state(parts: dict | None, path: Path | None, optimizer: torch.optim.Optimizer,
                           scaler: torch.amp.GradScaler, schedule: StepSchedule, reset_best: bool,
                           step_lr: bool) -> tuple[TrainState, StepSchedule]:
    """Our checkpoints: optimizer, scheduler, scaler, epoch, best score (loaded into ``optimizer`` and
    ``scaler``; returns the state and the schedule to continue with). Official ones: weights only."""
    if parts is None:
        return TrainState(), schedule
    raw = parts["raw"]
    if raw.get("format") != FORMAT or "optimizer" not in raw:
        if dist.is_main():
            print(f"{path}: weights-only (official) checkpoint: flow net + GSV loaded, starting at epoch 0")
        return TrainState(), schedule
    saved = [g.get("name") for g in raw["optimizer"]["param_groups"]]
    ours = [g["name"] for g in optimizer.param_groups]
    if saved != ours:
        raise ValueError(f"{path}: optimizer groups {saved} do not match this run's {ours} "
                         "(other --intra / --train-optical-flow settings?)")
    optimizer.load_state_dict(raw["optimizer"])  # with each group's initial_lr and current lr
    if raw.get("scaler"):
        scaler.load_state_dict(raw["scaler"])
    best = None if reset_best else raw.get("best_pred")
    step = int(raw.get("step", 0))
    state = TrainState(epoch=parts["epoch"], best_pred=best, step=step,
                       lr_step=saved_position(raw.get("scheduler"), step if step_lr else 0))
    return state, schedule.resumed(raw.get("scheduler"))


def frozen_outputs(ctx: PropagationRun, batch: dict, frames: torch.Tensor) -> tuple:
    """(keyframe logits or None, distillation teacher or None) from the frozen keyframe net, cached
    per clip with --cache-keyframes 1. With --pseudo-labels 1 the teacher comes with the batch (the
    teacher cache's logits, cropped like the frames: engine/teacher/pseudo_labels.py)."""
    cfg, model = ctx.settings, ctx.model
    teacher = batch.get("teacher")
    teacher = teacher.to(ctx.device, non_blocking=True) if teacher is not None else None
    key = None
    with torch.no_grad(), autocast(ctx.device, cfg.amp):
        if ctx.cache is not None:
            key_ids, last_ids = clip_keys(batch["name"], frames.shape[1] - 1)
            raw = ctx.cache.get(key_ids, frames[:, 0], lambda x: model.segnet_logits(x, cfg.key_scale))
            key = resize(raw, lowres_size(*frames.shape[-2:]))
        if teacher is None and cfg.distil and not cfg.crop_view_targets:
            teacher = (ctx.cache.get(last_ids, frames[:, -1], lambda x: model.segnet_logits(x, cfg.key_scale))
                       if ctx.cache is not None else model.segnet_logits(frames[:, -1], cfg.key_scale))
    return key, teacher


def train_step(ctx: PropagationRun, batch: dict, where: str,
               state: TrainState) -> tuple[dict[str, float], torch.Tensor]:
    """One optimizer step on a clip batch. Returns (loss parts, detached 1/8 logits of the last frame)."""
    cfg = ctx.settings
    frames = batch["frames"].to(ctx.device, non_blocking=True).float()  # B×T×3×H×W RGB 0–255
    label = batch["label"].to(ctx.device, non_blocking=True)  # B×H×W
    key_logits, teacher = frozen_outputs(ctx, batch, frames)
    if cfg.crop_view_targets:  # targets of the crop as the keyframe net sees it (crop_view_targets)
        label, teacher = crop_view_targets(ctx.model, frames[:, -1], label, cfg.key_scale, ctx.preset.ignore_index,
                                           cfg.distil)
    with autocast(ctx.device, cfg.amp):
        logits = ctx.train_model.forward_clip(frames, cfg.key_scale, "gsv",
                                              grad_steps=None if cfg.finetune_all else 2, key_logits=key_logits)
    loss, parts = propagation_loss(logits, label, teacher, class_weight=ctx.class_weight, param_ce=cfg.param_ce,
                                   param_ce_distil=cfg.param_ce_distil, ignore_index=ctx.preset.ignore_index)
    stop_if_non_finite(parts["loss"], where, cfg.checkpoint)
    ctx.optimizer.zero_grad(set_to_none=True)
    ctx.scaler.scale(loss).backward()
    ctx.scaler.step(ctx.optimizer)
    ctx.scaler.update()
    if cfg.step_lr:  # the official code steps its LR schedule only for SGD; Adam keeps its LR
        state.lr_step += 1
        apply_schedule(ctx.optimizer, ctx.schedule, state.lr_step, ctx.budget.fraction())
    return parts, logits.detach()


def log_predictions(preset: DatasetPreset, logger: RunLogger, batch: dict, logits: torch.Tensor, step: int,
                    count: int = 2) -> None:
    """TensorBoard: last frame | ground truth | prediction for the first ``count`` clips of a batch."""
    if not dist.is_main():
        return
    labels = logits_to_labels(logits[:count].float(), tuple(batch["label"].shape[-2:])).cpu().numpy()
    for i in range(labels.shape[0]):
        frame = batch["frames"][i, -1].permute(1, 2, 0).numpy().astype(np.uint8)
        strip = hstack([frame, colorize(batch["label"][i].numpy(), preset.palette),
                        colorize(labels[i], preset.palette)])
        logger.image(f"train/prediction_{i}", strip, step)


def train_one_epoch(ctx: PropagationRun, epoch: int, state: TrainState) -> dict[str, float]:
    """One pass over every distance's loader (batches interleaved); returns the epoch's mean loss
    parts and the running mIoU (percent) of the training-crop predictions."""
    cfg, num_classes = ctx.settings, ctx.preset.num_classes
    set_train_mode(ctx.train_model, cfg.train_optical_flow, cfg.freeze_bn)
    schedule = batch_schedule({k: loader_limit(cfg.early_stop, len(dl)) for k, dl in ctx.loaders.items()}, epoch,
                              cfg.seed)
    if cfg.max_iters > 0:
        schedule = schedule[:cfg.max_iters]
    iterators = {k: iter(dl) for k, dl in ctx.loaders.items()}
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=ctx.device)
    sums = {"loss": 0.0, "ce": 0.0, "kl": 0.0}
    bar = tqdm(schedule, desc=f"epoch {epoch}", unit="it", dynamic_ncols=True, disable=not dist.is_main())
    batch, logits, done = None, None, 0
    for i, k in enumerate(bar):
        batch = next_batch(iterators[k], f"loading a training batch (k={k})")
        parts, logits = train_step(ctx, batch, f"epoch {epoch}, iteration {i}, distance k={k}", state)
        state.step += 1
        pred = logits_to_labels(logits.float(), tuple(batch["label"].shape[-2:]))
        cm += confusion_matrix(pred, batch["label"].to(ctx.device), num_classes, ctx.preset.ignore_index)
        sums = {n: sums[n] + parts[n] for n in sums}
        bar.set_postfix(k=k, loss=f"{sums['loss'] / (i + 1):.3f}", mIoU=f"{100 * miou(cm):.1f}")
        if i % LOG_EVERY == 0:
            lrs = {f"lr/{g['name']}": g["lr"] for g in ctx.optimizer.param_groups}
            ctx.logger.scalars({"loss/train": parts["loss"], "loss/ce": parts["ce"], "loss/kl": parts["kl"], **lrs},
                               state.step, epoch=epoch, event="train", distance=k)
        done = i + 1
        if ctx.budget.exhausted():
            break
    bar.close()
    if batch is not None:
        log_predictions(ctx.preset, ctx.logger, batch, logits, state.step)
    stats = torch.tensor([sums["loss"], sums["ce"], sums["kl"], done], dtype=torch.float64)
    dist.all_reduce_sum(stats)
    dist.all_reduce_sum(cm)
    n = max(stats[3].item(), 1.0)
    return {"train/loss": stats[0].item() / n, "train/ce": stats[1].item() / n, "train/kl": stats[2].item() / n,
            "train/miou": 100 * miou(cm), "iterations": done}


def best_score(metrics: dict) -> float | None:
    """avg mIoU over the evaluated distances: pooled (the interval covering all of them) if they are
    0..L−1, otherwise the mean of the per-distance mIoUs. Percent, None if undefined."""
    per_k = metrics["per_distance"]
    if metrics["intervals"] and len(metrics["intervals"]) == len(per_k):
        return metrics["intervals"][str(len(per_k))]["avg_miou"]
    values = [v["miou"] for v in per_k.values() if v["miou"] is not None]
    return sum(values) / len(values) if values else None


def evaluate_epoch(cfg: Config, preset: DatasetPreset, model: GSVNet, device: torch.device, logger: RunLogger,
                   epoch: int, step: int) -> float | None:
    """Validate (collective), log per-distance and avg/min mIoU, write metrics.json; returns the score."""
    metrics = evaluate_model(model, cfg, preset, device, distances=eval_distances(cfg),
                             key_scale=cfg.key_scale, fusion="gsv", progress=True,
                             purpose="select")
    score = best_score(metrics)
    values = {f"val/miou_k{k}": v["miou"] for k, v in metrics["per_distance"].items()}
    for l, v in metrics["intervals"].items():
        values.update({f"val/avg_miou_l{l}": v["avg_miou"], f"val/min_miou_l{l}": v["min_miou"]})
    values["val/score"] = score
    logger.scalars(values, step, epoch=epoch, event="val")
    if dist.is_main():
        write_json(run_dir(cfg) / "metrics.json", dict(metrics, epoch=epoch))
        shown = ", ".join(f"k={k}: {v['miou']:.1f}" for k, v in metrics["per_distance"].items()
                          if v["miou"] is not None)
        what = "agreement with the keyframe net (mIoU)" if cfg.pseudo_labels else "mIoU"
        print(f"epoch {epoch}: val {what} {shown} | avg {score if score is None else f'{score:.2f}'}")
    return score


def save_checkpoints(cfg: Config, run: PropagationRun, state: TrainState, current: float | None,
                     is_best: bool) -> None:
    """checkpoint.pth.tar every epoch, model_best.pth.tar when the score improved (rank 0, atomic): the
    run's model, optimizer, schedule and scaler, and ``cfg`` as the recorded configuration."""
    if not dist.is_main():
        return
    m = run.model
    ckpt = gsvnet_checkpoint(
        m.gsv, m.flow_net, model_args=m.constructor_args(), epoch=state.epoch, step=state.step,
        best_pred=state.best_pred, current_pred=current,
        optimizer=run.optimizer.state_dict(), scheduler=run.schedule.state(state.lr_step),
        scaler=run.scaler.state_dict() if run.scaler.is_enabled() else None, config=to_dict(cfg),
        segnet_state_dict={k: v.detach().cpu().contiguous() for k, v in m.segnet.state_dict().items()})
    folder = run_dir(cfg)
    save_atomic(ckpt, folder / "checkpoint.pth.tar")
    if is_best:
        save_atomic(ckpt, folder / "model_best.pth.tar")


def label_free_loaders(cfg: Config, preset: DatasetPreset, model: GSVNet, datasets: dict, device: torch.device) -> dict:
    """--pseudo-labels 1: the teacher pass over every target frame, then loaders whose batches carry the
    cached teacher labels (and logits, with --distil 1) augmented with the frames."""
    targets = with_teacher_targets(model, cfg, datasets, device, scale=cfg.key_scale,
                                   transform=train_transform(cfg, preset), with_logits=cfg.distil and not cfg.use_crop)
    return build_train_loaders(cfg, preset, sorted(datasets), device, datasets=targets)


def build_context(cfg: Config, device: torch.device) -> tuple[PropagationRun, TrainState, Path | None]:
    """The run's loaders, model (restored with --resume), optimizer and logger; its state; the resume path."""
    preset = preset_of(cfg)
    distances = sorted({int(k) for k in cfg.multi_step})
    if cfg.pseudo_labels:  # samples without labels; their targets need the model (label_free_loaders)
        unlabelled = frame_sample_datasets(cfg, preset, "train", distances, dense=cfg.dense_labels)
    else:
        loaders = build_train_loaders(cfg, preset, distances, device)
    eval_datasets(cfg, preset, eval_distances(cfg), "select")  # a missing validation split fails now, not after an epoch
    resume = resolve_resume(cfg)
    seed_everything(cfg.seed)  # same initialisation on every rank
    model, parts = build_model(cfg, preset, device, resume=resume)
    if cfg.gsv_init == "skip" and resume is None:
        model.gsv.favour_skip()
    model.to_channels_last()
    if cfg.pseudo_labels:
        loaders = label_free_loaders(cfg, preset, model, unlabelled, device)
    seed_everything(cfg.seed, dist.rank())  # different augmentation per rank
    set_trainable(model, cfg)
    train_model = GSVNet(model.segnet, wrap_ddp(model.flow_net, device), wrap_ddp(model.gsv, device),
                         spec=model.spec, flow_name=cfg.optical_flow_network,
                         keyframe_norm=model.keyframe_norm).to(device)
    optimizer = build_optimizer(model, cfg)
    start_schedule(optimizer)
    scaler = make_scaler(device, cfg.amp)
    state, schedule = restore_training_state(parts, resume, optimizer, scaler,
                                             StepSchedule(cfg.step_scheduler, cfg.lr_gamma),
                                             cfg.reset_best_pred, cfg.optim == "sgd")
    logger = RunLogger(run_dir(cfg), summary_dir(cfg), enabled=dist.is_main())
    run = PropagationRun(epoch_settings(cfg), preset, device, model, train_model, optimizer, schedule, scaler,
                         class_weight_tensor(cfg, preset, device), loaders, logger,
                         KeyframeCache() if cfg.cache_keyframes else None, TimeBudget(cfg.time_budget))
    return run, state, resume


def train_propagation(cfg: Config, device: torch.device) -> int:
    """The default mode's job: optional flow pre-training, then the epochs (train, validate, save) until
    --epoch or --time-budget ends them. Returns 0."""
    ctx, state, resume = build_context(cfg, device)
    if dist.is_main():
        write_config(cfg, run_dir(cfg), world_size=dist.world_size(), resumed_from=str(resume) if resume else None)
        print(run_header(cfg, "propagation training") + f" | starting at epoch {state.epoch} of {cfg.epoch}")
    if cfg.pretrain_flow != "none":
        with ctx.budget.counting():
            maybe_pretrain_flow(cfg, ctx.preset, ctx.model, ctx.train_model, device, ctx.logger, resume)
    for epoch in range(state.epoch, cfg.epoch):
        set_sampler_epoch(ctx.loaders, epoch)
        with ctx.budget.counting():
            stats = train_one_epoch(ctx, epoch, state)
        ctx.logger.scalars(stats, state.step, epoch=epoch, event="epoch")
        evaluate = (epoch + 1) % max(cfg.eval_interval, 1) == 0 or epoch + 1 == cfg.epoch or ctx.budget.stopped
        current = (evaluate_epoch(cfg, ctx.preset, ctx.model, device, ctx.logger, epoch, state.step)
                   if evaluate else None)
        is_best = state.end_epoch(epoch, current, evaluated=evaluate)
        with dist.fail_together("saving the checkpoint"):
            save_checkpoints(cfg, ctx, state, current, is_best)
        if ctx.budget.ran_out(state.step, epoch, announce=dist.is_main()):
            break
    ctx.logger.close()
    if dist.is_main():
        print(f"done after epoch {state.epoch} of {cfg.epoch}: {run_dir(cfg) / 'checkpoint.pth.tar'} "
              f"(best avg mIoU {state.best_pred})")
    return 0
