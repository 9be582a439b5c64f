"""Run logs: ``log.jsonl`` (one JSON object per line), TensorBoard scalars/images, git commit.

Only rank 0 writes: other ranks construct ``RunLogger(..., enabled=False)``, which touches no file.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from utils.checkpoint import atomic_write, to_plain


def _strict_json(obj: Any) -> Any:
    """Plain types with non-finite floats as None, so the output is valid JSON (no NaN tokens)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strict_json(v) for v in obj]
    return obj


def to_json(obj: Any, indent: int | None = None) -> str:
    """Serialise configs, metrics, tensors and numpy values as strict JSON (NaN/inf -> null)."""
    return json.dumps(_strict_json(to_plain(obj)), indent=indent, allow_nan=False)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8 atomically (temp file + rename); creates parent folders."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (temp file + rename); creates parent folders."""
    return write_text(path, to_json(obj, indent=2) + "\n")


def git_commit(repo_dir: str | os.PathLike = ".") -> str | None:
    """The HEAD commit hash of ``repo_dir``, or None when git is missing or it is not a repository.
    Never raises: a run must not fail because of its bookkeeping."""
    try:
        out = subprocess.run(["git", "-C", str(repo_dir), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None


class RunLogger:
    """Appends records to ``{run_dir}/log.jsonl`` and mirrors scalars/images to TensorBoard.

    run_dir: folder of the run (created). tb_dir: TensorBoard log folder, or None for no TensorBoard.
    enabled: False on non-zero ranks — then every method is a no-op and nothing is created.
    """

    def __init__(self, run_dir: str | os.PathLike, tb_dir: str | os.PathLike | None = None,
                 enabled: bool = True):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.log_path = self.run_dir / "log.jsonl"
        self._writer = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if tb_dir is not None:
            # Imported here: tensorboard is slow to import and unused by most callers of this module.
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(tb_dir))

    def log(self, **fields: Any) -> None:
        """Append one line ``{"time": <unix seconds>, **fields}`` to log.jsonl."""
        if not self.enabled:
            return
        line = to_json({"time": round(time.time(), 3), **fields})
        # Append + flush per record so a crashed run keeps everything logged before the crash.
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def scalars(self, values: Mapping[str, Any], step: int, **extra: Any) -> None:
        """Log scalars (e.g. {"loss/train": 0.3, "val/avg_miou": 71.2}) to TensorBoard at ``step``
        and as one log.jsonl record with ``step`` and any ``extra`` fields (e.g. epoch=3)."""
        if not self.enabled:
            return
        plain = {str(k): to_plain(v) for k, v in values.items()}
        if self._writer is not None:
            for tag, value in plain.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(tag, value, step)
        self.log(step=step, **extra, **plain)

    def image(self, tag: str, rgb: np.ndarray, step: int) -> None:
        """Log an RGB uint8 H×W×3 image to TensorBoard (log.jsonl is for numbers only)."""
        if not self.enabled or self._writer is None:
            return
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"image {tag!r}: expected uint8 H×W×3, got {rgb.dtype} {rgb.shape}")
        self._writer.add_image(tag, rgb, step, dataformats="HWC")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
