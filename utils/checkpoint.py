"""Checkpoint files: atomic saving and safe loading.

Saving writes a temporary file in the destination folder, fsyncs it and renames it over the target
(``os.replace`` is atomic on POSIX and Windows), so a crash or a full disk never leaves a truncated
``checkpoint.pth.tar`` behind — the previous file stays intact.

Loading always uses ``torch.load(weights_only=True)``: tensors, plain Python containers and
scalars only, plus an explicit allow-list (``SAFE_GLOBALS``) for what the official GSVNet
checkpoints contain (``args`` is an ``argparse.Namespace``). Files holding anything else are refused;
there is deliberately no ``weights_only=False`` fallback, because unpickling runs arbitrary code.
Our own checkpoints store only plain types (see ``to_plain``), so they need no allow-list at all.
"""
from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import pickle
import re
import secrets
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

# Everything beyond torch's weights-only defaults that a file may contain.
SAFE_GLOBALS = (argparse.Namespace,)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (the directory entry); not possible on every OS or filesystem."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> Path:
    """Create ``path`` atomically: ``write(binary_file)`` fills a temporary file in the same folder,
    which is flushed, fsynced and renamed over ``path``. On any error the temporary file is removed
    and an existing ``path`` is left untouched. Parent folders are created. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # O_EXCL: never clobber someone else's temp file; mode 0o666 lets the umask decide as usual.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` without ever exposing a half-written file (see module doc)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def _refusal_reason(err: BaseException) -> str:
    """The informative line of torch's (long, advice-laden) weights-only error, or the first line."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for ln in lines:
        found = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\.?\s*Please use .*)?$", ln)
        if found and found.group(1):
            return found.group(1)
    for ln in lines:
        if "GLOBAL" in ln or "Unsupported" in ln:
            return ln
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def load_file(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a torch checkpoint (zip or legacy pickle format) with ``weights_only=True``.

    Raises FileNotFoundError naming the path when it does not exist, and ValueError naming the
    file when it is not a readable torch checkpoint or holds objects outside the allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _refusal_reason(err)
        if "Weights only load failed" in str(err):
            allowed = ", ".join(f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS)
            raise ValueError(
                f"{path}: refused to load, it holds pickled content outside the allow-list of "
                f"weights-only loading ({reason}). Accepted: tensors, plain Python types and {allowed}. If you made this "
                f"file, re-save it with plain types (e.g. a dict state) instead of custom classes."
            ) from None
        raise ValueError(f"{path}: not a readable torch checkpoint ({reason})") from None
    except (RuntimeError, EOFError, KeyError, ValueError, AttributeError, ImportError) as err:
        # torch reports truncated, foreign or device-incompatible files with assorted exceptions.
        raise ValueError(f"{path}: cannot be loaded as a torch checkpoint "
                         f"({_refusal_reason(err)})") from err


def to_plain(obj: Any) -> Any:
    """Convert a config (dataclass, argparse.Namespace, mapping) into JSON-able plain types.

    dataclass / Namespace / Mapping -> dict with str keys; list/tuple/set -> list; Path, enum,
    torch.device/dtype -> str (enum -> its value); numpy and 0-d torch scalars -> Python numbers;
    arrays and tensors -> nested lists. Anything else unknown -> ``str(obj)``.
    Floats keep NaN/inf; ``utils.logging.write_json`` turns them into null.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, argparse.Namespace):
        return {str(k): to_plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return [to_plain(v) for v in items]
    if isinstance(obj, enum.Enum):
        return to_plain(obj.value)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.dim() == 0 else obj.detach().cpu().tolist()
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    return str(obj)
