"""The one job wrapper every mode runs in (the list of user errors is utils/errors.py ``USER_ERRORS``).

A user error (a missing dataset, weights or input file, a checkpoint that does not fit, a bad flag
value, a corrupt file, a loss that became NaN) ends the run with exit code 1 and a one-line message
naming the problem instead of a traceback. ``GSVNET_TRACEBACK=1`` re-raises it for debugging.
Anything else (torch's RuntimeError for a shape mismatch or out of memory, an AssertionError) is a
bug: it propagates with its traceback.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

import torch

from config.config import Config
from engine import distributed as dist
from utils.device import resolve_device
from utils.errors import USER_ERRORS, error_text


def run_job(cfg: Config, job: Callable[[Config, torch.device], int], distributed: bool = True) -> int:
    """Run ``job(cfg, device)`` and return its exit code, or 1 after printing a user error.

    distributed: set up the process group when launched by torchrun / torch.distributed.launch (every
    rank runs the job); False runs the job on the process of rank 0 only (the others return 0).
    """
    if distributed:
        info = dist.init_distributed(str(resolve_device(cfg.device)), cfg.local_rank)
        prefix = f"[rank {info.rank}] " if info.enabled else ""
    elif int(os.environ.get("RANK", "0")) != 0:
        return 0
    else:
        info, prefix = None, ""
    try:
        return int(job(cfg, info.device if info else resolve_device(cfg.device)) or 0)
    except USER_ERRORS as err:
        if os.environ.get("GSVNET_TRACEBACK") == "1":
            raise
        print(f"{prefix}error: {error_text(err)}", file=sys.stderr)
        return 1
    finally:
        if distributed:
            dist.cleanup()
