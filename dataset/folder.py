"""Your own labelled clips in one folder per clip (``--dataset folder --data-path ROOT``; docs/formats.md)::

    ROOT/classes.json                          {"names": [...], "colors": [[r, g, b], ...]}, optional
                                               "ignore_index" (default 255), "label_values" and "class_weights"
    ROOT/<split>/<clip>/origin/<frame>.jpg|png every frame of the clip (split = train, val, test)
    ROOT/<split>/<clip>/mask/<frame>.png       labels of ANY subset of the frames, same stem as the frame

Frames are in name order, numbers compared as numbers (``2.jpg`` before ``10.jpg``; zero-padded names sort
the same either way). A mask holds one value per pixel (single-channel or palette PNG): with
``"label_values": {"<value in the PNG>": <class index or the ignore index>}`` each value is mapped (values
not listed are an error), without it the values must be class indices or the ignore index. A clip folder
without ``mask/`` is a clip without labels (label-free training uses every frame of it).

Every problem of the layout is one named error, raised when the dataset is built, before any work:
a missing or malformed classes.json, a missing or empty split, a clip folder without frames, a mask
without its frame, a mask holding a value classes.json does not allow.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dataset.clip_sequence import Clip, ClipSequence, mapped_values, present_values, smallest_frame_size, value_table
from dataset.video import natural_key

CLASSES_FILE = "classes.json"
FRAME_DIR, MASK_DIR = "origin", "mask"
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val", "test")
KEYS = ("names", "colors", "ignore_index", "label_values", "class_weights")
EXPECTED = '{"names": [...], "colors": [[r, g, b], ...]} (optional "ignore_index", "label_values", "class_weights")'


@dataclass(frozen=True)
class FolderClasses:
    """The content of classes.json. label_values: PNG value -> class index or ignore_index, or None (the
    values are the class indices themselves)."""
    path: Path
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int = 255
    label_values: dict[int, int] | None = None
    class_weights: tuple[float, ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def table(self) -> np.ndarray:
        """int16 (256,) PNG value -> class index / ignore index (dataset.clip_sequence.value_table)."""
        mapping = self.label_values
        if mapping is None:
            mapping = {**{i: i for i in range(self.num_classes)}, self.ignore_index: self.ignore_index}
        return value_table(mapping)

    def allowed(self) -> str:
        """What mask values may be, for error messages."""
        if self.label_values is not None:
            return f"listed in {self.path} \"label_values\" ({', '.join(map(str, sorted(self.label_values)))})"
        return (f"class indices 0..{self.num_classes - 1} or the ignore index {self.ignore_index} ({self.path} "
                "has no \"label_values\" to map other values)")


def _fail(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: {what}; expected {EXPECTED}")


def _integer(value, path: Path, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(path, f"{what} must be an integer in {low}..{high}, got {value!r}")
    return value


def _colors(raw, count: int, path: Path) -> tuple[tuple[int, int, int], ...]:
    if not isinstance(raw, list) or len(raw) != count:
        raise _fail(path, f"\"colors\" must be a list of {count} [r, g, b] entries (one per name), got "
                          f"{len(raw) if isinstance(raw, list) else type(raw).__name__}")
    out = []
    for i, color in enumerate(raw):
        if not isinstance(color, list) or len(color) != 3:
            raise _fail(path, f"\"colors\"[{i}] must be [r, g, b], got {color!r}")
        out.append(tuple(_integer(v, path, f"\"colors\"[{i}] entries", 0, 255) for v in color))
    return tuple(out)


def _label_values(raw, num_classes: int, ignore: int, path: Path) -> dict[int, int] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise _fail(path, f"\"label_values\" must be a non-empty object {{\"<PNG value>\": <class index>}}, got {raw!r}")
    mapping = {}
    for key, target in raw.items():
        if not str(key).isdigit() or not 0 <= int(key) <= 255:
            raise _fail(path, f"\"label_values\" key {key!r} is not a PNG value 0..255")
        if target != ignore:
            _integer(target, path, f"\"label_values\"[{key!r}]", 0, num_classes - 1)
        mapping[int(key)] = int(target)
    return mapping


def _parse_classes(data, path: Path) -> FolderClasses:
    if not isinstance(data, dict):
        raise _fail(path, f"the file holds a {type(data).__name__}, not an object")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise _fail(path, f"unknown key(s) {unknown}")
    names = data.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise _fail(path, f"\"names\" must be a non-empty list of class names, got {names!r}")
    if len(names) > 255:
        raise _fail(path, f"{len(names)} classes; at most 255 fit 8-bit masks next to the ignore index")
    ignore = _integer(data.get("ignore_index", 255), path, "\"ignore_index\"", len(names), 255)
    weights = data.get("class_weights")
    if weights is not None and (not isinstance(weights, list) or len(weights) != len(names)
                                or not all(isinstance(w, (int, float)) and w > 0 for w in weights)):
        raise _fail(path, f"\"class_weights\" must be {len(names)} positive numbers, got {weights!r}")
    return FolderClasses(path, tuple(names), _colors(data.get("colors"), len(names), path), ignore,
                         _label_values(data.get("label_values"), len(names), ignore, path),
                         tuple(float(w) for w in weights) if weights is not None else None)


def read_classes(root: str | Path) -> FolderClasses:
    """Parse and check ``ROOT/classes.json``; FileNotFoundError if missing, ValueError naming what is wrong."""
    path = Path(root) / CLASSES_FILE
    if not Path(root).is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root} (expected {root}/{CLASSES_FILE} and "
                                f"{root}/<split>/<clip>/origin/<frame>.jpg|png)")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a folder dataset names its classes there, {EXPECTED}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _fail(path, f"not valid JSON ({err})") from None
    return _parse_classes(data, path)


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))


def _clip(folder: Path, read_label) -> Clip:
    """One clip folder: its frames in name order and the mask of each frame (or None)."""
    origin = folder / FRAME_DIR
    frames = sorted((p for p in origin.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith("."))
                    if origin.is_dir() else [], key=lambda p: natural_key(p.stem))
    if not frames:
        raise FileNotFoundError(f"clip folder {folder} has no frames: expected {origin}/<frame>.jpg|png")
    by_stem = {}
    for path in frames:
        if path.stem in by_stem:
            raise ValueError(f"clip {folder}: frames {by_stem[path.stem].name} and {path.name} share the name "
                             f"{path.stem!r}; one frame per name")
        by_stem[path.stem] = path
    masks: dict[str, Path] = {}
    mask_dir = folder / MASK_DIR
    for path in sorted(mask_dir.iterdir()) if mask_dir.is_dir() else []:
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix.lower() != ".png":
            raise ValueError(f"mask {path} is not a .png file: masks are {mask_dir}/<frame>.png")
        if path.stem not in by_stem:
            raise ValueError(f"mask {path} has no frame: expected {origin}/{path.stem}.jpg or .png")
        masks[path.stem] = path
    return Clip(folder.name, tuple(frames), tuple(masks.get(p.stem) for p in frames), read_label)


def folder_clips(root: str | Path, split: str, classes: FolderClasses | None = None) -> list[Clip]:
    """Every clip of ``ROOT/<split>`` in name order (nothing read but file names)."""
    classes = classes or read_classes(root)
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"split folder {split_dir} not found: expected {split_dir}/<clip>/origin/<frame>.jpg|png")
    reader = partial(mapped_values, table=classes.table(), allowed=classes.allowed())
    clips = [_clip(folder, reader) for folder in _visible_dirs(split_dir)]
    if not clips:
        raise FileNotFoundError(f"split {split!r} is empty: {split_dir} holds no clip folders (expected "
                                f"{split_dir}/<clip>/origin/<frame>.jpg|png)")
    return clips


@lru_cache(maxsize=None)
def _values_of(path: str, mtime_ns: int, size: int) -> tuple[int, ...]:
    """The distinct values of one mask, remembered per file version (each dataset of a run checks the
    same masks: one per training distance, one per evaluated distance)."""
    return tuple(int(v) for v in present_values(path))


def check_mask_values(clips: list[Clip], classes: FolderClasses) -> None:
    """Read every mask of ``clips`` once; a value classes.json does not allow is a ValueError naming the mask."""
    table = classes.table()
    masks = [p for clip in clips for p in clip.label_paths if p is not None]
    for path in tqdm(masks, desc="check masks", unit="mask", disable=len(masks) < 500, leave=False):
        stat = path.stat()
        bad = [v for v in _values_of(str(path), stat.st_mtime_ns, stat.st_size) if table[v] < 0]
        if bad:
            raise ValueError(f"mask {path} holds value(s) {bad} that are not {classes.allowed()}")


def folder_frame_size(root: str | Path) -> tuple[int, int] | None:
    """(smallest H, smallest W) of the train clips (of every split when there is no train folder), or None
    when ROOT has no split folder."""
    splits = [s for s in SPLITS if (Path(root) / s).is_dir()]
    splits = ["train"] if "train" in splits else splits
    clips = [clip for s in splits for clip in folder_clips(root, s)]
    return smallest_frame_size(clips)


class FolderSequence(ClipSequence):
    """Samples of a folder dataset split (``dataset.clip_sequence.ClipSequence`` has the sample dict: frames,
    label, has_label, name ``"<clip>/<frame stem>"``, clip, frame_index, split).

    labelled_only: True = a sample per labelled frame with ``distance`` predecessors in its clip;
    False = a sample per frame with ``distance`` predecessors, labelled or not (clips without mask/ count).
    """

    def __init__(self, root, split: str, distance: int, transform=None, with_label: bool = True,
                 labelled_only: bool = True):
        self.root = Path(root)
        self.classes = read_classes(root)
        clips = folder_clips(root, split, self.classes)
        if with_label:
            check_mask_values(clips, self.classes)
        super().__init__(clips, split, distance, ignore_index=self.classes.ignore_index, transform=transform,
                         with_label=with_label, labelled_only=labelled_only, where=str(self.root))


def folder_whole_clips(root, split: str) -> list[Clip]:
    """Every clip of the split with the mask of each frame (or None), masks checked against classes.json."""
    classes = read_classes(root)
    clips = folder_clips(root, split, classes)
    check_mask_values(clips, classes)
    return clips
