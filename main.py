"""GSVNet command line: train the propagation modules, evaluate, run inference or benchmark.

    python main.py --dataset synthetic --checkname demo            # train flow + GSV
    python main.py --train-segnet 1 --dataset synthetic             # train the keyframe net
    python main.py --evaluate 1 --eval-multi-step 1 2 --resume 1    # avg/min mIoU, l=3
    python main.py --inference 1 --input video.mp4 --resume 1       # dump predictions + overlay video
    python main.py --benchmark 1                                    # FPS and FLOPs per frame type
    torchrun --nproc_per_node 2 main.py ...                         # multi-process training/eval

Run `python main.py --help` for every flag.
"""
from __future__ import annotations

import importlib
import sys

from config.config import mode_of, parse_args


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, then run modes/<mode>.py ``run(cfg)`` (config/config.py MODES), imported only now so
    that ``--help`` stays fast. Returns the exit code."""
    cfg = parse_args(argv)
    from utils.allocator import keep_freed_memory  # process-wide allocator setting (CPU speed)
    keep_freed_memory()
    return int(importlib.import_module(f"modes.{mode_of(cfg)}").run(cfg) or 0)


if __name__ == "__main__":
    sys.exit(main())
