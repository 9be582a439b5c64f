"""CamVid preset: 11 classes in SegNet order (void -> ignore), official GSVNet class weights.

Frames are 720×960 (H×W). Label files hold ids 0..10 in this order; anything else is void.
"""
from __future__ import annotations

from config.dataset_preset import DatasetPreset

CLASS_NAMES = (
    "Sky", "Building", "Column-Pole", "Road", "Sidewalk", "Tree", "Sign-Symbol", "Fence", "Car",
    "Pedestrian", "Bicyclist",
)
PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)
CLASS_WEIGHTS = (
    6.088367253290739, 4.519555764402027, 33.97442457184865, 3.892793490946617,
    12.472488354029295, 8.53161322681152, 47.70112012347462, 29.66528556102586,
    18.998198498821438, 38.38783950878698, 40.105909294306784,
)


def camvid_preset() -> DatasetPreset:
    return DatasetPreset(
        name="camvid", kind="camvid", num_classes=11, class_names=CLASS_NAMES, palette=PALETTE,
        data_path="./data/camvid", frame_size=(720, 960), crop_size=(540, 720),
        class_weights=CLASS_WEIGHTS, label_format="trainIds",
    )
