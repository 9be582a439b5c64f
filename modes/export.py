"""``--export onnx``: the model as ONNX graphs + gsvnet.json for ONNX Runtime (engine/deployment/export_job.py).

    python main.py --export onnx --segnet swiftnet --segnet-weights W.pt --resume G.tar --output export/ \\
        --export-size 1024x2048 --export-size 720x1280
"""
from __future__ import annotations

from config.config import Config
from engine.deployment.export_job import export
from modes.job import run_job


def run(cfg: Config) -> int:
    """Returns the exit code: 0, or 1 with a one-line error (a bad --export/--export-size/--output, weights that
    are missing or do not fit). Runs on the process of rank 0 only."""
    return run_job(cfg, export, distributed=False)
