"""Synthetic preset (the embedded default): the generator writes Cityscapes-layout trees with
Cityscapes labelIds, so classes and colours are Cityscapes'; the loss is unweighted."""
from __future__ import annotations

from config.cityscapes import CLASS_NAMES, PALETTE
from config.presets import DatasetPreset


def synthetic_preset() -> DatasetPreset:
    return DatasetPreset(
        name="synthetic", kind="cityscapes", num_classes=19, class_names=CLASS_NAMES,
        palette=PALETTE, data_path="./data/synthetic", frame_size=(256, 512),
        crop_size=(192, 384), class_weights=None, label_format="labelIds",
    )
