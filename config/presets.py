"""Dataset presets by name: ``get_preset(name)`` for name in ``PRESET_NAMES`` (fixed constants) or
``DATA_PRESET_NAMES`` (built from the data at ``data_path``: your own clip folders, VSPW).

The values live in ``config/cityscapes.py``, ``config/camvid.py`` and ``config/synthetic.py``, the builders of
the data presets in ``config/folder.py`` and ``config/vspw.py``; the dataclass in ``config/dataset_preset.py``.
"""
from __future__ import annotations

from config.camvid import camvid_preset
from config.cityscapes import cityscapes_preset
from config.dataset_preset import DatasetPreset
from config.folder import folder_preset
from config.synthetic import synthetic_preset
from config.vspw import vspw_preset

PRESET_NAMES = ("cityscapes_2k", "cityscapes", "camvid", "synthetic")
DATA_PRESET_NAMES = ("folder", "vspw")
__all__ = ["DatasetPreset", "DATA_PRESET_NAMES", "PRESET_NAMES", "get_preset"]


def get_preset(name: str, data_path: str = "") -> DatasetPreset:
    """The preset called ``name`` ("cityscapes_2k" is the official name for "cityscapes"). ``data_path``: the
    dataset root the data presets are read from (default ./data/<name>); the fixed presets ignore it."""
    if name in DATA_PRESET_NAMES:
        root = data_path or f"./data/{name}"
        return folder_preset(root) if name == "folder" else vspw_preset(root)
    if name in ("cityscapes", "cityscapes_2k"):
        return cityscapes_preset(name)
    if name == "camvid":
        return camvid_preset()
    if name == "synthetic":
        return synthetic_preset()
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(PRESET_NAMES + DATA_PRESET_NAMES)}")
