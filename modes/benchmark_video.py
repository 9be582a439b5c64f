"""``--benchmark-video PATH``: the whole ``--inference`` job on one video timed per keyframe interval
(engine/benchmarking/video_benchmark.py); writes {results_dir}/bench_video_<device>.{md,json}.

    python main.py --benchmark-video drive.mp4 --bench-key-intervals 1 3 4 --device cpu
"""
from __future__ import annotations

from config.config import Config
from engine.benchmarking.video_benchmark import benchmark_video
from modes.job import run_job


def run(cfg: Config) -> int:
    """Returns the exit code: 0, or 1 with a one-line error (missing video, bad --bench-key-intervals or
    --save, a weights file that does not fit). Runs on the process of rank 0 only."""
    return run_job(cfg, benchmark_video, distributed=False)
