"""Training-loop pieces shared by propagation training, keyframe-net training and flow pre-training.

Short top-level functions, no trainer class: the loaders (one per clip distance, a DistributedSampler
when launched distributed), the shared batch schedule, DDP wrapping, the train/eval mode of a GSVNet
under training, and fetching a batch so that a failing rank stops the others.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from config.config import Config
from config.dataset_preset import DatasetPreset
from dataset.build import build_dataset, check_distances
from dataset.transforms import ClipTransform
from engine import distributed as dist
from engine.runs import crop_size, data_root, run_dir
from models.gsvnet import GSVNet

EARLY_STOP_ITERS = 5  # --early-stop: batches per loader (as officially)
LOG_EVERY = 10  # iterations between log.jsonl / TensorBoard records
ADAM_WEIGHT_DECAY = 1e-4  # Adam's weight decay in both trainers (the official --optim adam setting)


@dataclass
class TrainState:
    epoch: int = 0  # next epoch to run
    best_pred: float | None = None  # best avg mIoU (percent) so far
    step: int = 0  # optimizer steps so far
    lr_step: int = 0  # iterations the learning-rate schedule advanced (engine/training/lr_schedule.py)

    def end_epoch(self, epoch: int, current: float | None, evaluated: bool = True) -> bool:
        """Record that ``epoch`` ran with validation score ``current``; True if it is the best so far. The
        first evaluation always is (so a model_best exists), even when its score is undefined (None)."""
        is_best = evaluated and (self.best_pred is None or (current is not None and current > self.best_pred))
        if is_best and current is not None:
            self.best_pred = current
        self.epoch = epoch + 1
        return is_best


# --- shared with the keyframe-net trainer -------------------------------------------------------------
def train_transform(cfg: Config, preset: DatasetPreset) -> ClipTransform | None:
    """One random scale/crop/flip per clip (docs/training.md#propagation-training); None with --use-crop 0 (full frames)."""
    if not cfg.use_crop:
        return None
    return ClipTransform(crop_size(cfg, preset), scales=preset.train_scales, ignore_index=preset.ignore_index)


def build_train_loaders(cfg: Config, preset: DatasetPreset, distances: list[int],
                        device: torch.device, datasets: dict | None = None) -> dict[int, DataLoader]:
    """One shuffled loader per distance; per-process batch = --batch-size // world size. datasets: the
    training dataset of each distance if already built (label-free training), else the preset's."""
    batch = max(1, cfg.batch_size // dist.world_size())
    check_distances(preset, data_root(cfg, preset), distances, "--multi-step")
    loaders = {}
    for k in distances:
        ds = datasets[k] if datasets is not None else build_dataset(
            preset, "train", k, root=data_root(cfg, preset), transform=train_transform(cfg, preset),
            dense=cfg.dense_labels)
        sampler = (DistributedSampler(ds, shuffle=True, seed=max(cfg.seed, 0)) if dist.is_dist()
                   else RandomSampler(ds))
        loaders[k] = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=cfg.num_worker,
                                pin_memory=device.type == "cuda", drop_last=False)
    return loaders


def set_sampler_epoch(loaders: dict[int, DataLoader], epoch: int) -> None:
    for loader in loaders.values():
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)


def loader_limit(early_stop: bool, length: int) -> int:
    """Batches per epoch of a loader of ``length`` batches (--early-stop: a few)."""
    return min(length, EARLY_STOP_ITERS) if early_stop else length


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """DDP (+ SyncBatchNorm on GPU) around one trained module; unwrapped if not distributed or frozen
    (then rank 0's weights are copied to all ranks, e.g. a random frozen flow net with --seed -1)."""
    if not dist.is_dist() or not any(p.requires_grad for p in module.parameters()):
        for tensor in module.state_dict().values() if dist.is_dist() else ():
            buf = tensor.detach().clone().to(dist._comm_device())
            torch.distributed.broadcast(buf, src=0)
            tensor.copy_(buf)
        return module
    if device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    # Buffers (BN statistics) follow rank 0 at every forward (DDP's default): needed on CPU, where the
    # statistics are per rank, and harmless with SyncBatchNorm.
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def run_header(cfg: Config, what: str) -> str:
    return (f"{what}: {cfg.dataset} | {cfg.segnet} + {cfg.optical_flow_network} flow | world size "
            f"{dist.world_size()} | batch {cfg.batch_size} (global) | run folder {run_dir(cfg)}")


def next_batch(iterator, what: str) -> dict:
    with dist.fail_together(what):  # a rank whose data fails stops the others instead of hanging them
        return next(iterator)


def batch_schedule(lengths: dict[int, int], epoch: int, seed: int) -> list[int]:
    """The distance of every batch of an epoch, shuffled; identical on all ranks (same seed and lengths)."""
    order = [k for k, n in sorted(lengths.items()) for _ in range(n)]
    gen = torch.Generator().manual_seed(max(seed, 0) * 100003 + epoch)
    return [order[i] for i in torch.randperm(len(order), generator=gen).tolist()]


# --- propagation training -------------------------------------------------------------------------------
def set_trainable(model: GSVNet, cfg: Config) -> None:
    model.segnet.requires_grad_(False)
    model.flow_net.requires_grad_(cfg.train_optical_flow)
    model.gsv.ideal_dk.requires_grad_(False)  # fixed shift kernels (official --train-filter 0)


def set_train_mode(model: GSVNet, train_flow: bool, freeze_bn: bool) -> None:
    """Train mode, except: frozen keyframe net; frozen flow net; --freeze-bn keeps the trained modules'
    BN statistics (they contain no dropout, so eval mode is exactly "frozen BN").

    Call it on the GSVNet that runs the training forward (``PropagationRun.train_model``, whose flow net and GSV
    are the DDP wrappers when distributed): ``forward_clip`` reads the mode from those very modules,
    and a wrapper's ``train()``/``eval()`` reaches the module inside, so the mode has one source."""
    model.train()
    if not train_flow or freeze_bn:
        model.flow_net.eval()
    if freeze_bn:
        model.gsv.eval()


class TimeBudget:
    """``--time-budget``: seconds of training one invocation may spend (0 = no limit).

    Only time inside ``counting()`` blocks is spent (the training epochs, and flow pre-training in the
    propagation stage), not validation or saving, so nets whose validation is slower still get the
    same training time. ``exhausted()``, called after every iteration, reads the clock; when
    distributed the ranks agree on their mean reading (one all-reduce), so all stop at the same
    iteration and see the same ``fraction()`` (the LR schedule must not differ between ranks).
    A resumed run starts a new budget.
    """

    def __init__(self, seconds: float):
        self.seconds = max(float(seconds), 0.0)
        self.spent = 0.0  # seconds in finished counting() blocks
        self.agreed = 0.0  # the clock as of the last exhausted() (mean over ranks)
        self.stopped = False  # the budget ran out (the epoch loop then ends early)
        self._since: float | None = None

    @contextlib.contextmanager
    def counting(self):
        self._since = time.perf_counter()
        try:
            yield self
        finally:
            self.spent += time.perf_counter() - self._since
            self._since = None

    def fraction(self) -> float:
        """Share of the budget spent as of the last exhausted() (0 without a budget)."""
        return self.agreed / self.seconds if self.seconds > 0 else 0.0

    def exhausted(self) -> bool:
        """Read the clock; True once the budget is spent. Collective when distributed and a budget is set."""
        if self.seconds <= 0:
            return False
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        clock = torch.tensor([self.spent + running], dtype=torch.float64)
        self.agreed = dist.all_reduce_sum(clock).item() / dist.world_size()
        self.stopped = self.agreed >= self.seconds
        return self.stopped

    def note(self, steps: int, epoch: int) -> str:
        return (f"time budget reached: {self.agreed:.1f} s of training (--time-budget {self.seconds:g}) after "
                f"{steps} iterations in all, in epoch {epoch}; stopped there")

    def ran_out(self, steps: int, epoch: int, announce: bool) -> bool:
        """Whether the budget ran out (the caller then ends its epoch loop); prints the note if ``announce``."""
        if self.stopped and announce:
            print(self.note(steps, epoch))
        return self.stopped
