"""The sequence dataset of a preset: Cityscapes-layout, CamVid-layout, clip folders (folder, VSPW) or dense
synthetic."""
from __future__ import annotations

from pathlib import Path

from dataset.synthetic import read_marker

CITYSCAPES_FRAMES_BEFORE_GT = 19  # a Cityscapes sequence snippet: 30 frames, annotated at index 19


def require_synthetic(root: str) -> dict | None:
    """Check that ``root`` holds the synthetic dataset before any work: a missing folder, one without the
    Cityscapes layout, or an unfinished generation raises a FileNotFoundError with the exact command that
    generates it (the synthetic data is generated, never downloaded). Returns the generator's marker, or
    None for a Cityscapes-layout tree the generator did not write (then the loaders decide)."""
    folder = Path(root)
    marker = read_marker(root) if folder.is_dir() else None
    has_layout = (folder / "leftImg8bit_sequence").is_dir() and (folder / "gtFine").is_dir()
    if (marker is None and not has_layout) or (marker is not None and not marker.get("complete", False)):
        state = "is incomplete" if marker is not None else "was not found"
        raise FileNotFoundError(
            f"the synthetic dataset {state} at {root}: it is generated, not downloaded. Generate it with "
            f"`python -m dataset.synthetic --out {root}` (deterministic, a few minutes), or run `make demo`, "
            f"which generates it and trains every stage")
    return marker


def max_distance(preset, root: str) -> int | None:
    """The largest clip distance k (frames GT−k..GT) the snippets of ``preset`` at ``root`` hold, or None
    when the loader itself decides per sample (CamVid, folder, VSPW: frames without k predecessors are not
    samples)."""
    if preset.kind in ("camvid", "folder", "vspw"):
        return None
    if preset.name == "synthetic":
        marker = require_synthetic(root)
        return int(marker["params"]["gt_index"]) if marker else None
    return CITYSCAPES_FRAMES_BEFORE_GT


def check_distances(preset, root: str, distances, flag: str) -> None:
    """Refuse, before any work, distances the snippets cannot hold (naming the flag and the limit)."""
    limit = max_distance(preset, root)
    too_far = sorted(int(k) for k in distances if limit is not None and int(k) > limit)
    if too_far:
        raise ValueError(f"{flag} {' '.join(map(str, too_far))}: the {preset.name} snippets at {root} hold "
                         f"{limit} frames before the annotated one, so distances must be <= {limit}")


def build_dataset(preset, split: str, distance: int, root: str | None = None, transform=None,
                  with_label: bool = True, dense: bool = False, labelled_only: bool = True):
    """The sequence dataset of ``preset`` (a config.dataset_preset.DatasetPreset, passed in so that dataset/
    never imports config/; root defaults to ``preset.data_path``).

    dense: every frame as a sample, labelled from the synthetic generator's per-frame labels.
    labelled_only: folder/vspw only; False = every frame with ``distance`` predecessors is a sample, labelled
    or not (dataset.clip_sequence.ClipSequence).
    """
    root = preset.data_path if root is None else root
    if preset.name == "synthetic":
        require_synthetic(root)
    if dense:
        if preset.name != "synthetic":
            raise ValueError(f"--dense-labels 1 needs per-frame labels, which only --dataset synthetic has "
                             f"(got {preset.name})")
        from dataset.synthetic_dense import SyntheticDenseSequence
        return SyntheticDenseSequence(root, split, distance, transform=transform)
    if preset.kind in ("folder", "vspw"):
        from dataset.folder import FolderSequence
        from dataset.vspw import VSPWSequence
        loader = FolderSequence if preset.kind == "folder" else VSPWSequence
        return loader(root, split, distance, transform=transform, with_label=with_label, labelled_only=labelled_only)
    if not labelled_only:
        raise ValueError(f"every-frame samples (labelled_only=False) need a clip-folder dataset (folder, vspw); "
                         f"{preset.name} has none")
    if preset.kind == "camvid":
        from dataset.camvid import CamVidSequence
        return CamVidSequence(root, split, distance, transform=transform, with_label=with_label)
    from dataset.cityscapes import CityscapesSequence
    return CityscapesSequence(root, split, distance, transform=transform, with_label=with_label,
                              dataset_name=preset.name)
