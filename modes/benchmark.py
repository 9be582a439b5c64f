"""``--benchmark 1``: time and count FLOPs per frame type (engine/benchmarking/frame_benchmark.py); writes
{results_dir}/bench_<device>.{md,json} and prints the markdown (both backends with ``--backend onnxruntime``)."""
from __future__ import annotations

from config.config import Config
from engine.benchmarking.frame_benchmark import benchmark_frame_types
from modes.job import run_job


def run(cfg: Config) -> int:
    """Returns the exit code: 0, or 1 with a one-line error (a bad --bench-* value, a weights file that is
    missing or does not fit). Runs on the process of rank 0 only."""
    return run_job(cfg, benchmark_frame_types, distributed=False)
