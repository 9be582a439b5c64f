"""Dataset presets by name: ``get_preset(name)`` for name in ``PRESET_NAMES``.

The values live in ``config/cityscapes.py``, ``config/camvid.py`` and ``config/synthetic.py``; the
dataclass in ``config/dataset_preset.py``.
"""
from __future__ import annotations

from config.camvid import camvid_preset
from config.cityscapes import cityscapes_preset
from config.dataset_preset import DatasetPreset
from config.synthetic import synthetic_preset

PRESET_NAMES = ("cityscapes_2k", "cityscapes", "camvid", "synthetic")
__all__ = ["DatasetPreset", "PRESET_NAMES", "get_preset"]


def get_preset(name: str) -> DatasetPreset:
    """The preset called ``name`` ("cityscapes_2k" is the official name for "cityscapes")."""
    if name in ("cityscapes", "cityscapes_2k"):
        return cityscapes_preset(name)
    if name == "camvid":
        return camvid_preset()
    if name == "synthetic":
        return synthetic_preset()
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
