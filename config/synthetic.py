"""Synthetic preset (the embedded default): the generator writes Cityscapes-layout trees with
Cityscapes labelIds, so classes and colours are Cityscapes'.

Class weights (used with --class-weights 1): ENet-style 1 / ln(1.02 + p_class), with p measured on every
3rd frame's labels of the default training split (python -m dataset.synthetic, seed 0, 24 snippets);
absent classes (rider, train, motorcycle, bicycle) get the p = 0 value."""
from __future__ import annotations

from config.cityscapes import CLASS_NAMES, PALETTE
from config.dataset_preset import DatasetPreset


CLASS_WEIGHTS = (3.28, 9.84, 4.07, 38.29, 37.90, 31.43, 49.66, 44.66, 7.28, 29.62, 8.38, 41.04, 50.50, 26.33,
                 39.66, 31.35, 50.50, 50.50, 50.50)


def synthetic_preset() -> DatasetPreset:
    return DatasetPreset(
        name="synthetic", kind="cityscapes", num_classes=19, class_names=CLASS_NAMES,
        palette=PALETTE, data_path="./data/synthetic", frame_size=(256, 512),
        crop_size=(192, 384), class_weights=CLASS_WEIGHTS, label_format="labelIds",
    )
