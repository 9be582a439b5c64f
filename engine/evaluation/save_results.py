"""Writing predictions to disk for --evaluate (--save-res / --save-seq-res) and --inference.

Two concerns live here:

- **File formats.** Cityscapes-style presets (``label_format == "labelIds"``) write result PNGs that
  cityscapesScripts scores as they are: labelIds (not train ids), full resolution, named
  ``{city}_{seq}_{frame}_leftImg8bit.png``. CamVid has no separate label ids, so it writes train ids
  (0..10) named ``{name}.png``. Colour PNGs use the preset's palette.
- **Nothing half-written.** Outputs go to a staging folder next to the destination
  (``.<name>.partial``) and are moved into place only when the whole run succeeded
  (:func:`commit_staged`); a failed run removes the staging folder (:func:`discard_staged`), so a
  crash never leaves a folder that looks complete but is not.
- **What --inference writes** (``--save``): :func:`parse_outputs` turns the flag into a tuple of
  output kinds; every run also writes ``summary.json``, whose presence in a committed folder marks
  the folder complete (:func:`is_complete`, used by ``--skip-existing``).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from config.dataset_preset import DatasetPreset
from dataset.cityscapes import train_ids_to_label_ids
from utils.visualize import colorize, save_label_png, save_png

RESULT_SUFFIX = "_leftImg8bit.png"  # cityscapesScripts matches {city}_{seq}_{frame}*.png
# --inference outputs, in the order the report lists them: color/{frame}.png, label/{frame}.png,
# overlay.mp4, labelIds/{frame}.png. "none" = only summary.json.
OUTPUT_KINDS = ("color", "label", "overlay", "labelIds")
SUMMARY_NAME = "summary.json"


def staging_dir(dest: str | os.PathLike) -> Path:
    """The staging folder of ``dest``: a hidden sibling, on the same filesystem (cheap renames)."""
    dest = Path(dest)
    return dest.parent / f".{dest.name}.partial"


def discard_staged(staging: str | os.PathLike) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def commit_staged(staging: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Publish ``staging`` as ``dest``: each top-level entry of ``staging`` (e.g. ``k0/``, ``color/``,
    ``overlay.mp4``) replaces the entry of the same name in ``dest`` as a whole, so files of an earlier
    run with the same folder name never mix with this run's; other entries of ``dest`` are kept.
    Then ``staging`` is removed. Returns ``dest``."""
    staging, dest = Path(staging), Path(dest)
    if not staging.is_dir():
        raise FileNotFoundError(f"staging folder {staging} is missing; cannot publish {dest}")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, dest)
        return dest
    for src in sorted(staging.iterdir()):
        target = dest / src.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(src, target)
    discard_staged(staging)
    return dest


def parse_outputs(save: str, save_labelids: bool = False) -> tuple[str, ...]:
    """``--save`` (comma-separated kinds, any case, or "none") plus the ``--save-labelids 1`` alias ->
    the output kinds in ``OUTPUT_KINDS`` order. "none" alone is the empty tuple (labelIds may still be
    added by the alias). Raises ValueError naming the flag and the allowed names."""
    allowed = {kind.lower(): kind for kind in OUTPUT_KINDS}
    names = [part.strip() for part in str(save).split(",") if part.strip()]
    if [n.lower() for n in names] == ["none"]:
        chosen: set[str] = set()
    else:
        unknown = [n for n in names if n.lower() not in allowed]
        if not names or unknown:
            raise ValueError(f"--save {save!r}: unknown output name(s) {unknown or names}; choose from "
                             f"{', '.join(OUTPUT_KINDS)} (comma-separated) or none")
        chosen = {allowed[n.lower()] for n in names}
    if save_labelids:
        chosen.add("labelIds")
    return tuple(kind for kind in OUTPUT_KINDS if kind in chosen)


def is_complete(dest: str | os.PathLike) -> bool:
    """A committed --inference output folder: ``dest`` is a folder holding its ``summary.json``
    (written last, just before the folder is published). Staging leftovers never count."""
    dest = Path(dest)
    return dest.is_dir() and (dest / SUMMARY_NAME).is_file()


def result_label_image(labels: np.ndarray, preset: DatasetPreset) -> np.ndarray:
    """Train ids H×W -> what the result PNG holds: Cityscapes labelIds, or train ids for CamVid."""
    if preset.label_format == "labelIds":
        return train_ids_to_label_ids(labels)
    return np.asarray(labels, dtype=np.uint8)


def result_file_name(name: str, preset: DatasetPreset) -> str:
    """PNG file name of the prediction for the frame called ``name`` (e.g. ``city_000001_000019``)."""
    return f"{name}{RESULT_SUFFIX}" if preset.label_format == "labelIds" else f"{name}.png"


def clip_frame_names(name: str, distance: int, preset: DatasetPreset) -> list[str]:
    """Names of the frames GT−distance … GT of the clip whose annotated frame is ``name`` (folder/vspw frame
    names are free-form, so there they say the offset: ``GT-2``, ``GT-1``, ``GT``)."""
    if preset.kind in ("folder", "vspw"):
        return [f"GT-{j}" if j else "GT" for j in range(distance, -1, -1)]
    if preset.kind == "camvid":
        from dataset.camvid import predecessor_name
        return [predecessor_name(name, j) for j in range(distance, -1, -1)]
    from dataset.cityscapes import clip_frame_names as city_clip_names
    return city_clip_names(name, distance)


class PredictionWriter:
    """Writes evaluation predictions under ``root`` (docs/evaluation.md#outputs)::

        root/k{k}/{name}_leftImg8bit.png          labelIds, full resolution (CamVid: {name}.png, train ids)
        root/k{k}/color/color_{name}.png           colour PNG of the same prediction
        root/k{k}/seq/{name}/{t:02d}_{frame}.png   colour PNG of frame t of the clip, t = 0 the keyframe
                                                   (--save-seq-res)

    Only the labelIds files start with ``{city}_{seq}_{frame}``: cityscapesScripts searches the result
    folder recursively for ``{city}_{seq}_{frame}*.png`` and stops at a second match, so pointing
    ``CITYSCAPES_RESULTS`` at ``root/k{k}`` scores exactly the labelIds files.
    """

    def __init__(self, root: str | os.PathLike, preset: DatasetPreset):
        self.root, self.preset = Path(root), preset
        self.files_written = 0

    def write_gt(self, distance: int, name: str, labels: np.ndarray) -> None:
        """labels: H×W train ids of the annotated frame ``name`` predicted at ``distance``."""
        folder = self.root / f"k{distance}"
        file_name = result_file_name(name, self.preset)
        save_label_png(folder / file_name, result_label_image(labels, self.preset))
        save_png(folder / "color" / f"color_{name}.png", colorize(labels, self.preset.palette))
        self.files_written += 2

    def write_clip(self, distance: int, name: str, clip_labels: Sequence[np.ndarray]) -> None:
        """clip_labels: one H×W train-id map per frame GT−distance … GT (keyframe first)."""
        names = clip_frame_names(name, distance, self.preset)
        if len(names) != len(clip_labels):
            raise ValueError(f"clip of {name} at distance {distance}: {len(clip_labels)} predictions "
                             f"for {len(names)} frames")
        folder = self.root / f"k{distance}" / "seq" / name
        for t, (frame_name, labels) in enumerate(zip(names, clip_labels)):
            save_png(folder / f"{t:02d}_{frame_name}.png", colorize(labels, self.preset.palette))
            self.files_written += 1
