"""Folder preset (``--dataset folder --data-path ROOT``): built from the data at run time (dataset/folder.py).

Classes, colours, ignore index and optional class weights come from ROOT/classes.json (uniform weights, i.e.
an unweighted CE, when it has none). Frame size: the smallest height and width of the training clips (of all
clips without a train split; 480 × 640 when ROOT has no clips yet, e.g. for --inference on a video file);
the training crop is 3/4 of it, rounded, so the smallest training scale (0.75) still covers every frame.
"""
from __future__ import annotations

from config.dataset_preset import DatasetPreset
from dataset.folder import folder_frame_size, read_classes

DEFAULT_FRAME_SIZE = (480, 640)


def folder_preset(root: str) -> DatasetPreset:
    """The preset of the folder dataset at ``root``; a missing or malformed classes.json is an error."""
    classes = read_classes(root)
    frame_size = folder_frame_size(root) or DEFAULT_FRAME_SIZE
    return DatasetPreset(
        name="folder", kind="folder", num_classes=classes.num_classes, class_names=classes.names,
        palette=classes.colors, data_path=root, frame_size=frame_size,
        crop_size=(round(frame_size[0] * 3 / 4), round(frame_size[1] * 3 / 4)),
        class_weights=classes.class_weights or (1.0,) * classes.num_classes, ignore_index=classes.ignore_index,
        label_format="trainIds",
    )
