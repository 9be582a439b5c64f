"""Training losses (docs/training.md#propagation-training; docs/deviations.md#training-recipe).

Propagation loss, official scaling (the default; set --param-ce 1 --param-ce-distil 1 for a plain sum):

    loss = param_ce · (CE + param_ce_distil · KL)

- CE: cross-entropy of the student (the propagated logits of the clip's last frame, upsampled from
  1/8 to the label size) against the label, ignore pixels dropped, optional class weights.
- KL: ``kl_div(log_softmax(student), softmax(teacher))`` averaged over ALL B·C·H·W elements (so
  it is divided by the class count too, and ignore pixels count), as the official code does;
  teacher = the frozen keyframe net's logits of the same last frame, upsampled the same way.
With the defaults (10, 10) the KL term weighs 100× and the CE 10×; the learning rates were tuned
with that scaling, which is why we keep it.

Also here: what both trainers do around the loss (AMP autocast / GradScaler, class weights, the
non-finite-loss stop).
"""
from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from engine import distributed as dist
from models.resize import resize
from utils.errors import UserError


def upsample_to(logits: Tensor, size: Sequence[int]) -> Tensor:
    """B×C×h×w -> float32 B×C×H×W, bilinear align_corners=True (the official training resize)."""
    return resize(logits.float(), tuple(size))


def distillation_kl(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean over all elements of KL(softmax(teacher) ‖ softmax(student)) terms, B×C×H×W inputs."""
    target = F.softmax(teacher.detach(), dim=1)
    return F.kl_div(F.log_softmax(student, dim=1), target, reduction="none").mean()


def cross_entropy(logits: Tensor, label: Tensor, class_weight: Tensor | None, ignore_index: int) -> Tensor:
    """logits B×C×H×W (label size), label int64 B×H×W. A batch with only ignore pixels gives 0, not NaN."""
    if not (label != ignore_index).any():
        return logits.sum() * 0.0  # keeps the graph; weighted CE of an empty set would be 0/0
    return F.cross_entropy(logits, label, weight=class_weight, ignore_index=ignore_index)


def propagation_loss(student: Tensor, label: Tensor, teacher: Tensor | None, *, class_weight: Tensor | None,
                     param_ce: float, param_ce_distil: float, ignore_index: int = 255
                     ) -> tuple[Tensor, dict[str, float]]:
    """The propagation-training loss (module docstring).

    student: B×C×h×w logits at 1/8; teacher: B×C×h'×w' keyframe-net logits or None (no distillation);
    label: int64 B×H×W. Returns (scalar loss, {"ce", "kl", "loss"} as floats for logging).
    """
    size = label.shape[-2:]
    student = upsample_to(student, size)
    ce = cross_entropy(student, label, class_weight, ignore_index)
    criterion = ce
    kl = None
    if teacher is not None:
        kl = distillation_kl(student, upsample_to(teacher, size))
        criterion = ce + param_ce_distil * kl
    loss = param_ce * criterion
    parts = {"ce": float(ce.detach()), "kl": float(kl.detach()) if kl is not None else 0.0,
             "loss": float(loss.detach())}
    return loss, parts


def segnet_loss(outputs: Tensor | Sequence[Tensor], label: Tensor, class_weight: Tensor | None,
                ignore_index: int = 255) -> tuple[Tensor, Tensor]:
    """Keyframe-net training loss: CE of the main logits plus, for BiSeNet in train mode, CE of each
    auxiliary head (weight 1 each, as in TorchSeg's BiSeNet). Every output is upsampled to the label.

    outputs: logits B×C×h×w or a tuple (main, aux...). Returns (loss, main logits at label size).
    """
    outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
    main = upsample_to(outputs[0], label.shape[-2:])
    loss = cross_entropy(main, label, class_weight, ignore_index)
    for aux in outputs[1:]:
        loss = loss + cross_entropy(upsample_to(aux, label.shape[-2:]), label, class_weight, ignore_index)
    return loss, main


# --- numerics of a training step shared by both trainers ------------------------------------------
class NonFiniteLossError(UserError):
    """The loss became NaN/inf: the run stops before the bad update, keeping the last checkpoint."""


def stop_if_non_finite(value: float, where: str, checkpoint: Path) -> None:
    """Collective: raise NonFiniteLossError on every rank if the loss is NaN/inf on any rank."""
    if dist.any_failed(not math.isfinite(value)):
        kept = f"the last good checkpoint {checkpoint} is kept" if checkpoint.is_file() else "nothing was saved"
        raise NonFiniteLossError(
            f"non-finite loss ({value}) at {where}; stopping before the update, {kept}. "
            "Lower the learning rates (--lr, --guide-lr, --optical-flow-lr / --segnet-lr) or turn off --amp")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX512_BF16 or AMX). Elsewhere (AMD Zen 1–3, CPUs without
    AVX-512, most laptops) torch emulates it, tens of times slower than fp32. ``GSVNET_NO_BF16=1`` answers
    False, to reproduce such a machine."""
    if os.environ.get("GSVNET_NO_BF16") == "1":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def _say_fp32_once() -> None:
    print("--amp 1: this CPU has no native bf16 (emulated bf16 is ~40x slower than fp32), so training runs "
          "in fp32", file=sys.stderr, flush=True)


def amp_active(device: torch.device, requested: bool) -> bool:
    """--amp as it takes effect: on CUDA as asked; on a CPU only with native bf16 (else fp32, said once)."""
    if requested and device.type == "cpu" and not cpu_has_native_bf16():
        _say_fp32_once()
        return False
    return requested


def autocast(device: torch.device, enabled: bool):
    """AMP context: bf16 on CPU (only where it is native, see amp_active), fp16 on CUDA (where make_scaler's
    GradScaler scales the loss); no-op if off."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=amp_active(device, enabled))


def make_scaler(device: torch.device, amp: bool) -> torch.amp.GradScaler:
    return torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")


def class_weight_tensor(cfg, preset, device: torch.device) -> Tensor | None:
    """The preset's CE class weights with --class-weights 1, else None."""
    if not cfg.class_weights:
        return None
    if preset.class_weights is None:
        raise ValueError(f"--class-weights 1: the {preset.name} preset has no class weights")
    return torch.tensor(preset.class_weights, dtype=torch.float32, device=device)
