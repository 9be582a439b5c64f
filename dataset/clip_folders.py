"""Turn video files into clip folders of a folder dataset (``--dataset folder``, docs/formats.md)::

    python -m dataset.clip_folders drive1.mp4 drive2.mp4 --out data/mine --split train
    python -m dataset.clip_folders videos/ --out data/mine --split val --every 2 --max-frames 300

writes ``data/mine/train/drive1/origin/000000.jpg``, ``000001.jpg``, ... (one clip folder per video, named
after the file; a folder or .txt list of videos counts as its videos, dataset/video_corpus.py). A frame is
named after its 0-based decode index, zero-padded, so name order is time order also with ``--every N``
(frames 000000, 000002, ...). Labels, if you have any, go to ``<clip>/mask/<same name>.png``; the classes to
ROOT/classes.json, which ``--classes cityscapes`` writes for a keyframe net that predicts the 19 Cityscapes
classes (the demo's, or one trained on Cityscapes): their names in trainId order and standard colours.

Every input is opened and every target checked before anything is written; each clip is decoded into a
hidden staging folder and moved into place when complete, so a failure never leaves a half-written clip.
An existing clip folder, or a classes.json that differs from the one ``--classes`` would write, is an error
unless ``--overwrite``; classes.json is written (atomically) after the clips.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import cv2
from tqdm import tqdm

from dataset.video_corpus import is_corpus, list_videos, unique_stems
from utils.visualize import CITYSCAPES_PALETTE

FORMATS = ("jpg", "png")
CLASSES_FILE = "classes.json"
# The 19 Cityscapes evaluation classes in trainId order. config/cityscapes.py holds the same names for the
# presets (dataset/ does not import config/); tests/test_footage_tool.py checks that the two agree.
CITYSCAPES_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
CLASS_SETS = {"cityscapes": (CITYSCAPES_NAMES, CITYSCAPES_PALETTE)}


def classes_json(name: str) -> dict:
    """The classes.json content of a built-in class set (``--classes``): names and [r, g, b] colours."""
    if name not in CLASS_SETS:
        raise ValueError(f"--classes: unknown class set {name!r} (expected one of {', '.join(CLASS_SETS)})")
    names, colors = CLASS_SETS[name]
    return {"names": list(names), "colors": [list(c) for c in colors]}


def check_classes_target(out: str | Path, content: dict, overwrite: bool) -> bool:
    """Whether ROOT/classes.json must be written: False when it already holds ``content``; an existing file
    with other content is an error without ``overwrite`` (raised before any clip is decoded)."""
    path = Path(out) / CLASSES_FILE
    if not path.exists():
        return True
    try:
        same = json.loads(path.read_text()) == content
    except (json.JSONDecodeError, UnicodeDecodeError):
        same = False
    if not same and not overwrite:
        raise FileExistsError(f"{path} already exists with other classes than --classes would write; pass "
                              "--overwrite to replace it")
    return not same


def write_classes_json(out: str | Path, content: dict) -> Path:
    """Write ROOT/classes.json through a temporary file and a rename (never half-written)."""
    path = Path(out) / CLASSES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{CLASSES_FILE}.partial")
    staging.write_text(json.dumps(content, indent=1) + "\n")
    os.replace(staging, path)
    return path


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Video files as given; a folder of videos or a .txt list expands to its videos, in corpus order."""
    videos: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_file() and path.suffix.lower() != ".txt":
            videos.append(path)
        elif path.exists() and is_corpus(path):
            videos += list_videos(path)
        else:
            raise FileNotFoundError(f"video not found: {item} (expected a video file, a folder of videos or a "
                                    ".txt list of video paths)")
    return videos


def _check_readable(video: Path) -> None:
    capture = cv2.VideoCapture(str(video))
    try:
        if not capture.isOpened():
            raise ValueError(f"cannot open video file {video} (unknown format or corrupt)")
    finally:
        capture.release()


def plan_clips(videos: list[Path], out: str | Path, split: str, overwrite: bool) -> list[Path]:
    """The clip folder of each video (``out/<split>/<unique stem>``); an existing one is an error without
    ``overwrite``. Opens every video once, so an unreadable one fails before anything is written."""
    if not videos:
        raise ValueError("no videos given")
    targets = [Path(out) / split / stem for stem in unique_stems(videos)]
    for video, target in zip(videos, targets):
        _check_readable(video)
        if target.exists() and not overwrite:
            raise FileExistsError(f"clip folder {target} already exists (from {video}); pass --overwrite to "
                                  "replace it")
    return targets


def extract_clip(video: Path, target: Path, every: int = 1, max_frames: int = 0, fmt: str = "jpg",
                 quality: int = 95, progress: bool = True) -> int:
    """Decode ``video`` into ``target/origin/<index:06d>.<fmt>`` (every ``every``-th frame, at most ``max_frames``
    of them, 0 = all) through a staging folder; returns the number of frames written."""
    if every < 1 or max_frames < 0:
        raise ValueError(f"--every must be >= 1 and --max-frames >= 0, got {every} and {max_frames}")
    staging = target.parent / f".{target.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "origin").mkdir(parents=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpg" else []
    capture = cv2.VideoCapture(str(video))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    written = index = 0
    try:
        with tqdm(total=total, desc=target.name, unit="frame", disable=not progress) as bar:
            while not max_frames or written < max_frames:
                ok, bgr = capture.read()
                if not ok:
                    break
                if index % every == 0:
                    path = staging / "origin" / f"{index:06d}.{fmt}"
                    if not cv2.imwrite(str(path), bgr, params):
                        raise OSError(f"cannot write {path}")
                    written += 1
                index += 1
                bar.update(1)
        if written == 0:
            raise ValueError(f"no frame could be decoded from {video}")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        capture.release()
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dataset.clip_folders",
        description="Write one clip folder (<out>/<split>/<video name>/origin/<frame>.jpg) per video, for "
                    "--dataset folder --data-path <out>.")
    parser.add_argument("videos", nargs="+", metavar="VIDEO",
                        help="video files (.mp4, .avi, ...), folders of videos or .txt lists of video paths")
    parser.add_argument("--out", required=True, help="dataset root (ROOT of --dataset folder --data-path ROOT)")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"), help="split folder")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th frame (names keep the decode index)")
    parser.add_argument("--max-frames", type=int, default=0, help="at most this many frames per video (0 = all)")
    parser.add_argument("--format", default="jpg", choices=FORMATS, help="frame file format (png: lossless)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality 0-100")
    parser.add_argument("--classes", choices=sorted(CLASS_SETS), default=None,
                        help="also write ROOT/classes.json for this class set: 'cityscapes' = the 19 Cityscapes "
                             "classes in trainId order with their colours, what the demo's keyframe net and "
                             "Cityscapes-trained nets predict (label-free training with such a net needs them)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing clip folders (and a classes.json other than --classes writes)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.every < 1 or args.max_frames < 0 or not 0 <= args.quality <= 100:
            raise ValueError("--every must be >= 1, --max-frames >= 0 and --quality in 0..100")
        videos = expand_inputs(args.videos)
        classes = classes_json(args.classes) if args.classes else None
        write_classes = classes is not None and check_classes_target(args.out, classes, args.overwrite)
        targets = plan_clips(videos, args.out, args.split, args.overwrite)
        for video, target in zip(videos, targets):
            count = extract_clip(video, target, args.every, args.max_frames, args.format, args.quality,
                                 progress=not args.no_progress)
            print(f"wrote {count} frames of {video} to {target / 'origin'}")
        if write_classes:
            print(f"wrote {write_classes_json(args.out, classes)} ({args.classes}: {len(classes['names'])} classes)")
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not (Path(args.out) / CLASSES_FILE).is_file():
        print(f"next: write {Path(args.out) / CLASSES_FILE} (class names and colours, docs/formats.md), or "
              "pass --classes cityscapes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
