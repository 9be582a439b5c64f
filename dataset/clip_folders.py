"""Turn video files into clip folders of a folder dataset (``--dataset folder``, docs/formats.md)::

    python -m dataset.clip_folders drive1.mp4 drive2.mp4 --out data/mine --split train
    python -m dataset.clip_folders videos/ --out data/mine --split val --every 2 --max-frames 300

writes ``data/mine/train/drive1/origin/000000.jpg``, ``000001.jpg``, ... (one clip folder per video, named
after the file; a folder or .txt list of videos counts as its videos, dataset/video_corpus.py). A frame is
named after its 0-based decode index, zero-padded, so name order is time order also with ``--every N``
(frames 000000, 000002, ...). Labels, if you have any, go to ``<clip>/mask/<same name>.png``; the classes to
ROOT/classes.json.

Every input is opened and every target checked before anything is written; each clip is decoded into a
hidden staging folder and moved into place when complete, so a failure never leaves a half-written clip.
An existing clip folder is an error unless ``--overwrite``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2
from tqdm import tqdm

from dataset.video_corpus import is_corpus, list_videos, unique_stems

FORMATS = ("jpg", "png")


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
    parser.add_argument("--overwrite", action="store_true", help="replace existing clip folders")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.every < 1 or args.max_frames < 0 or not 0 <= args.quality <= 100:
            raise ValueError("--every must be >= 1, --max-frames >= 0 and --quality in 0..100")
        videos = expand_inputs(args.videos)
        targets = plan_clips(videos, args.out, args.split, args.overwrite)
        for video, target in zip(videos, targets):
            count = extract_clip(video, target, args.every, args.max_frames, args.format, args.quality,
                                 progress=not args.no_progress)
            print(f"wrote {count} frames of {video} to {target / 'origin'}")
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not (Path(args.out) / "classes.json").is_file():
        print(f"next: write {Path(args.out) / 'classes.json'} (class names and colours, docs/formats.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
