"""``--inference 1``: predict every frame of a video, image folder, camera, dataset split or a corpus of videos
(engine/streaming/inference_job.py: outputs, summary.json, manifest.json; engine/streaming/input_plan.py: what
--input names).

    python main.py --inference 1 --input drive.mp4 --resume 1 --key-interval 3
    torchrun --nproc_per_node 2 main.py --inference 1 --input videos/ --output out --resume 1 --skip-existing 1
"""
from __future__ import annotations

from config.config import Config
from engine.streaming.inference_job import infer, on_every_rank
from modes.job import run_job


def run(cfg: Config) -> int:
    """Returns the exit code: 0, or 1 with an error naming the problem (missing input/weights, a bad --save,
    corrupt image or checkpoint); nothing is left half-written. A corpus runs on every torchrun rank, any
    other input on rank 0 only."""
    return run_job(cfg, infer, distributed=on_every_rank(cfg))
