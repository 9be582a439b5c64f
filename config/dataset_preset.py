"""The constants of one dataset (classes, colours, loss weights, sizes) as plain frozen data."""
from __future__ import annotations

from dataclasses import dataclass

KINDS = ("cityscapes", "camvid", "folder", "vspw")


@dataclass(frozen=True)
class DatasetPreset:
    """Constants of one dataset.

    kind: on-disk layout / loader ("cityscapes" -> CityscapesSequence, "camvid" -> CamVidSequence,
    "folder" -> FolderSequence, "vspw" -> VSPWSequence; the last two are built from the data at run time).
    frame_size, crop_size: (H, W); crop_size is the training crop (3/4 of the frame, as officially).
    class_weights: cross-entropy weights in class order, or None for an unweighted loss.
    label_format: what --save-res writes: "labelIds" (Cityscapes, scored by cityscapesScripts) or
    "trainIds" (CamVid has no separate label ids).
    """
    name: str
    kind: str
    num_classes: int
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    data_path: str
    frame_size: tuple[int, int]
    crop_size: tuple[int, int]
    class_weights: tuple[float, ...] | None = None
    ignore_index: int = 255
    train_scales: tuple[float, ...] = (0.75, 1.0, 1.5, 1.75, 2.0)
    splits: tuple[str, ...] = ("train", "val", "test")
    label_format: str = "labelIds"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"preset {self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        for field in ("class_names", "palette"):
            if len(getattr(self, field)) != self.num_classes:
                raise ValueError(f"preset {self.name}: {field} has {len(getattr(self, field))} "
                                 f"entries, expected num_classes={self.num_classes}")
        if self.class_weights is not None and len(self.class_weights) != self.num_classes:
            raise ValueError(f"preset {self.name}: class_weights has {len(self.class_weights)} "
                             f"entries, expected {self.num_classes}")
        if not 0 <= self.ignore_index <= 255 or self.ignore_index < self.num_classes:
            raise ValueError(f"preset {self.name}: ignore_index {self.ignore_index} must be in "
                             f"[{self.num_classes}, 255]")
