"""Cityscapes preset: 19 evaluated classes in trainId order, official GSVNet class weights.

Colours are the real Cityscapes colours of ``cityscapesscripts.helpers.labels`` (sky is
(70, 130, 180); the official GSVNet config had (0, 130, 180)); tests cross-check this table.
"""
from __future__ import annotations

from config.dataset_preset import DatasetPreset

CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
# ENet-style 1/ln(1.02 + p_class) weights of the official config, trainId order.
CLASS_WEIGHTS = (
    3.03871497, 13.01999212, 4.53008444, 38.00898985, 35.35990217, 31.14247824, 45.82106668,
    39.44451896, 6.00002668, 32.64759009, 17.34725897, 31.45715227, 47.0853521, 11.70166965,
    44.50966853, 44.80501487, 45.63057065, 48.21080448, 41.21912833,
)


def cityscapes_preset(name: str = "cityscapes") -> DatasetPreset:
    """Cityscapes at 1024×2048 (the "2k" of the official name "cityscapes_2k")."""
    return DatasetPreset(
        name=name, kind="cityscapes", num_classes=19, class_names=CLASS_NAMES,
        palette=PALETTE, data_path="./data/cityscapes", frame_size=(1024, 2048),
        crop_size=(768, 1536), class_weights=CLASS_WEIGHTS, label_format="labelIds",
    )
