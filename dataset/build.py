"""The sequence dataset of a preset: Cityscapes-layout, CamVid-layout or dense synthetic."""
from __future__ import annotations

from config.dataset_preset import DatasetPreset


def build_dataset(preset: DatasetPreset, split: str, distance: int, root: str | None = None, transform=None,
                  with_label: bool = True, dense: bool = False):
    """The sequence dataset of ``preset`` (root defaults to ``preset.data_path``).

    dense: every frame as a sample, labelled from the synthetic generator's per-frame labels.
    """
    root = preset.data_path if root is None else root
    if dense:
        if preset.name != "synthetic":
            raise ValueError(f"--dense-labels 1 needs per-frame labels, which only --dataset synthetic has "
                             f"(got {preset.name})")
        from dataset.synthetic_dense import SyntheticDenseSequence
        return SyntheticDenseSequence(root, split, distance, transform=transform)
    if preset.kind == "camvid":
        from dataset.camvid import CamVidSequence
        return CamVidSequence(root, split, distance, transform=transform, with_label=with_label)
    from dataset.cityscapes import CityscapesSequence
    return CityscapesSequence(root, split, distance, transform=transform, with_label=with_label)
