"""VSPW as it is shipped (``--dataset vspw --data-path VSPW_480p``; Miao et al., CVPR 2021; docs/formats.md)::

    VSPW_480p/data/<video>/origin/<frame>.jpg     every frame of the video (15 fps)
    VSPW_480p/data/<video>/mask/<frame>.png       the label of each frame, same stem
    VSPW_480p/{train,val,test}.txt                one video name per line
    VSPW_480p/label_num_dic_final.json            optional: {"<class name>": <value>} (read for the names)

Label values: 0 = "others" and 255 = void are not scored; v = 1..124 is class v − 1 (the common protocol,
mmsegmentation's ``reduce_zero_label``), so 124 scored classes. Any other value is an error naming the file.
Samples are those of ``dataset.clip_sequence.ClipSequence`` with clip = video.
"""
from __future__ import annotations

import json
from pathlib import Path

from dataset.clip_sequence import Clip, ClipSequence, mapped_values, smallest_frame_size, value_table
from dataset.video import natural_key

NUM_CLASSES = 124
IGNORE_INDEX = 255
SPLITS = ("train", "val", "test")
DATA_DIR, FRAME_DIR, MASK_DIR = "data", "origin", "mask"
CLASS_FILE = "label_num_dic_final.json"
# 0 ("others") and 255 (void) -> ignore; 1..124 -> 0..123
LABEL_TABLE = value_table({0: IGNORE_INDEX, IGNORE_INDEX: IGNORE_INDEX, **{v: v - 1 for v in range(1, NUM_CLASSES + 1)}})
ALLOWED = f"VSPW label values (0 = others, 1..{NUM_CLASSES} = the classes, 255 = void)"


def read_vspw_label(path: Path):
    """uint8 H×W: class v − 1 for value v in 1..124, 255 for 0 and 255; other values are a ValueError."""
    return mapped_values(path, LABEL_TABLE, ALLOWED)


def video_list(root: str | Path, split: str) -> list[str]:
    """The video names of ``ROOT/<split>.txt`` (blank lines skipped)."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"VSPW split must be one of {SPLITS}, got {split!r}")
    if not (root / DATA_DIR).is_dir():
        raise FileNotFoundError(f"VSPW folder {root / DATA_DIR} not found: expected {root}/{DATA_DIR}/<video>/"
                                f"origin/<frame>.jpg (the VSPW_480p release)")
    path = root / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"VSPW video list {path} not found: expected one video name per line")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise FileNotFoundError(f"VSPW video list {path} is empty: split {split!r} has no videos")
    return names


def _video(root: Path, name: str, list_file: Path) -> Clip:
    folder = root / DATA_DIR / name
    origin = folder / FRAME_DIR
    frames = sorted((p for p in origin.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
                    if origin.is_dir() else [], key=lambda p: natural_key(p.stem))
    if not frames:
        raise FileNotFoundError(f"VSPW video {name!r} listed in {list_file} has no frames: expected "
                                f"{origin}/<frame>.jpg")
    stems = {p.stem for p in frames}
    mask_dir = folder / MASK_DIR
    masks = {p.stem: p for p in mask_dir.glob("*.png")} if mask_dir.is_dir() else {}
    orphans = sorted(set(masks) - stems)
    if orphans:
        raise ValueError(f"VSPW mask {masks[orphans[0]]} has no frame: expected {origin}/{orphans[0]}.jpg")
    return Clip(name, tuple(frames), tuple(masks.get(p.stem) for p in frames), read_vspw_label)


def vspw_clips(root, split: str) -> list[Clip]:
    """Every video of the split (in list order) with the mask of each frame (or None; the test split has none)."""
    root = Path(root)
    names = video_list(root, split)
    return [_video(root, name, root / f"{split}.txt") for name in names]


def vspw_frame_size(root) -> tuple[int, int] | None:
    """(smallest H, smallest W) over the training videos, or None when there is no VSPW tree at ``root``."""
    if not (Path(root) / DATA_DIR).is_dir() or not (Path(root) / "train.txt").is_file():
        return None
    return smallest_frame_size(vspw_clips(root, "train"))


def release_class_names(root) -> tuple[str, ...] | None:
    """The 124 class names in value order from the release's label_num_dic_final.json ({"name": value}, 0 =
    "others"), or None when the file is absent."""
    path = Path(root) / CLASS_FILE
    if not path.is_file():
        return None
    try:
        by_value = {int(v): str(k) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: expected {{\"<class name>\": <value>}}, could not read it ({err})") from None
    missing = [v for v in range(1, NUM_CLASSES + 1) if v not in by_value]
    if missing:
        raise ValueError(f"{path}: no class name for value(s) {missing[:10]}; expected values 1..{NUM_CLASSES}")
    return tuple(by_value[v] for v in range(1, NUM_CLASSES + 1))


class VSPWSequence(ClipSequence):
    """Samples of a VSPW split (``ClipSequence``'s sample dict; name ``"<video>/<frame stem>"``)."""

    def __init__(self, root, split: str, distance: int, transform=None, with_label: bool = True,
                 labelled_only: bool = True):
        self.root = Path(root)
        super().__init__(vspw_clips(root, split), split, distance, ignore_index=IGNORE_INDEX, transform=transform,
                         with_label=with_label, labelled_only=labelled_only, where=f"VSPW at {root}")

