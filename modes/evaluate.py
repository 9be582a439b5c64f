"""``--evaluate 1``: avg/min mIoU per keyframe interval and the whole-clip consistency pass
(engine/evaluation/evaluate_job.py), printed and written as metrics.json + config.json into
logs/run/{dataset}/{segnet}_{checkname}/eval_{name}/."""
from __future__ import annotations

from config.config import Config
from engine.evaluation.evaluate_job import evaluate_and_publish
from modes.job import run_job


def run(cfg: Config) -> int:
    """``--evaluate 1``: evaluate once (mIoU, and TC unless ``--temporal-consistency 0``), print the table,
    write metrics.json + config.json into logs/run/{dataset}/{segnet}_{checkname}/eval_{ResFolderName or
    time stamp}/. Returns the exit code: 0, or 1 with a one-line error naming the problem (missing
    dataset/checkpoint, corrupt file)."""
    return run_job(cfg, evaluate_and_publish)
