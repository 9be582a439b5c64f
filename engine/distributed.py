"""Process-group helpers (docs/conventions.md#runs-files-and-processes).

A run is distributed only when launched so: ``torchrun`` or ``python -m torch.distributed.launch``
set ``WORLD_SIZE`` > 1 (plus ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``; the older
launcher also passes ``--local-rank``/``--local_rank``). Otherwise every helper here is a no-op, so
single-process code calls them unconditionally. Backend: NCCL for CUDA, gloo for CPU.

Failure handling: a rank that crashes between collectives would leave the others blocked forever.
Two defences: ``init_process_group`` gets a finite timeout (collectives raise instead of hanging),
and ``any_failed``/``fail_together`` all-reduce a status flag at sync points so every rank stops
with an error when one of them failed.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import sys
import time
import traceback
import warnings
from typing import Iterator, NamedTuple

import torch
import torch.distributed as dist

from utils.errors import UserError


class DistInfo(NamedTuple):
    enabled: bool
    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}: expected an integer, got {value!r}") from None


def _pick_device(device_str: str, local_rank: int, distributed: bool) -> torch.device:
    wanted = torch.device(device_str)
    if wanted.type != "cuda":
        return wanted
    if not torch.cuda.is_available():
        warnings.warn(f"device {device_str!r} requested but CUDA is not available; using the CPU")
        return torch.device("cpu")
    if distributed:
        # One GPU per process; an explicit index in --device would put every rank on one GPU.
        return torch.device("cuda", local_rank)
    return wanted


def init_distributed(device_str: str = "cuda", local_rank: int | None = None,
                     timeout_s: float = 1800.0) -> DistInfo:
    """Set up the process group if the launcher asked for one and pick this process's device.

    device_str: "cpu", "cuda" or "cuda:N" (CUDA falls back to the CPU with a warning when absent).
    local_rank: the ``--local-rank`` argument of ``torch.distributed.launch``; env LOCAL_RANK wins.
    timeout_s: how long a collective may wait for the other ranks before raising.
    Returns DistInfo(enabled, rank, world_size, local_rank, device) — a tuple.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistInfo(False, 0, 1, 0, _pick_device(device_str, 0, distributed=False))
    if not dist.is_available():
        raise UserError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    rank = _env_int("RANK", -1)
    if rank < 0:
        raise UserError("WORLD_SIZE > 1 but RANK is not set; launch with torchrun or "
                           "python -m torch.distributed.launch")
    local = _env_int("LOCAL_RANK", -1)
    local = local if local >= 0 else (local_rank if local_rank is not None and local_rank >= 0 else 0)
    device = _pick_device(device_str, local, distributed=True)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(True, rank, world, local, device)


def is_dist() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that logs and saves."""
    return rank() == 0


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place and return it (unchanged when not distributed).
    Copies through the backend's device when needed (gloo: CPU, NCCL: the current GPU)."""
    if not is_dist():
        return tensor
    comm = _comm_device()
    if tensor.device == comm:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor
    buf = tensor.to(comm)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    tensor.copy_(buf)
    return tensor


def barrier() -> None:
    if not is_dist():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def cleanup() -> None:
    """Tear down the process group (safe to call when there is none)."""
    if is_dist():
        dist.destroy_process_group()


def any_failed(failed: bool) -> bool:
    """Collective: True on every rank if any rank passes ``failed=True``. All ranks must call it
    at the same point (e.g. the end of each epoch or evaluation)."""
    if not is_dist():
        return failed
    flag = torch.tensor([1 if failed else 0], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(flag, op=dist.ReduceOp.SUM)
    return int(flag.item()) > 0


@contextlib.contextmanager
def fail_together(what: str = "step") -> Iterator[None]:
    """Run a block on every rank; if it raises on any rank, raise on all of them.

    The failing rank re-raises its own exception; the others raise RuntimeError saying another
    rank failed, instead of blocking in the next collective. The block itself must not end
    early on some ranks only in the middle of a collective (the init timeout covers that case).
    """
    error: BaseException | None = None
    try:
        yield
    except Exception as exc:  # KeyboardInterrupt/SystemExit propagate at once
        error = exc
        if is_dist():
            print(f"[rank {rank()}] {what} failed:", file=sys.stderr)
            traceback.print_exc()
    if any_failed(error is not None):
        if error is not None:
            raise error
        raise RuntimeError(f"{what} failed on another rank; stopping rank {rank()} as well")


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """Indices of ``range(n)`` evaluated by ``rank``: a contiguous block, sizes differ by at most 1.

    Unlike DistributedSampler, nothing is padded or duplicated, so summed confusion matrices count
    every sample exactly once (docs/deviations.md#evaluation). A rank may get an empty list.
    """
    if n < 0:
        raise ValueError(f"n: expected >= 0, got {n}")
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank/world: expected 0 <= rank < world, got rank={rank}, world={world}")
    return list(range(rank * n // world, (rank + 1) * n // world))


def shared_timestamp() -> str:
    """Rank 0's time stamp (``%Y%m%d_%H%M%S``) on every rank, so that all ranks agree on folder names."""
    now = torch.tensor([int(time.time()) if is_main() else 0], dtype=torch.int64)
    all_reduce_sum(now)
    return time.strftime("%Y%m%d_%H%M%S", time.localtime(int(now.item())))
