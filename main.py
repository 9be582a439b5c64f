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

from config.config import parse_args

# mode -> (module, function); imported lazily so `--help` stays fast.
_MODES = {
    "export": ("modes.export", "run_export"),
    "benchmark_video": ("modes.bench_video", "run_video_benchmark"),
    "benchmark": ("modes.benchmark", "run_benchmark"),
    "inference": ("modes.infer", "run_inference"),
    "evaluate": ("modes.evaluate", "run_evaluation"),
    "train_segnet": ("modes.train_segnet", "run_segnet_training"),
    "train": ("modes.train", "run_training"),
}


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    mode = next((m for m in ("export", "benchmark_video", "benchmark", "inference", "evaluate", "train_segnet")
                 if getattr(cfg, m)), "train")
    module_name, func_name = _MODES[mode]
    from utils.allocator import keep_freed_memory  # process-wide allocator setting (CPU speed)
    keep_freed_memory()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        print(f"error: mode '{mode}' is not implemented yet ({module_name} is missing)", file=sys.stderr)
        return 2
    return int(getattr(module, func_name)(cfg) or 0)


if __name__ == "__main__":
    sys.exit(main())
