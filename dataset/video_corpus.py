"""A corpus of videos for ``--input``: a folder of video files or a ``.txt`` list of video paths.

Conventions:

* A **folder** is a corpus when it directly holds video files (extensions ``VIDEO_EXTENSIONS``,
  any case; sub-folders are not searched), sorted naturally by file name (``clip2`` before
  ``clip10``). A folder of images only is *not* a corpus: it is one image sequence for
  ``dataset.video.open_frames``. A folder holding both videos and images is rejected as ambiguous.
* A **.txt list** holds one path per line; blank lines and lines starting with ``#`` are skipped,
  relative paths are relative to the folder of the .txt file, order is kept as listed.
* Each video's results go to ``OUT/<name>/`` with names from ``unique_stems``; ``OUT/manifest.json``
  (``manifest``) lists every video with its frame count, whether it was skipped, and its error (null
  when it completed).
* Work is split over ranks by ``shard_by_frames`` from the frame counts of ``shard_counts`` (0 for a
  video that cannot be opened: it still gets a rank, which reports it as failed).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import cv2

from dataset.video import IMAGE_EXTENSIONS, natural_key
from utils.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
MANIFEST_NAME = "manifest.json"
# Per-video numbers of a corpus run, one row per video (a float tensor that ranks all-reduce).
MANIFEST_COLUMNS = ("frames", "num_keyframes", "seconds", "skipped", "rank")


def _files_with(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions]


def is_corpus(path: str | os.PathLike) -> bool:
    """True for a ``.txt`` list file or a folder that directly holds video files; False for
    anything else (a single video or image, an image folder, a camera id, a missing path).
    Raises ValueError for a folder holding both videos and images."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".txt"
    if not path.is_dir():
        return False
    has_videos = bool(_files_with(path, VIDEO_EXTENSIONS))
    if has_videos and _files_with(path, IMAGE_EXTENSIONS):
        raise ValueError(f"folder {path} holds both videos and images: pass a folder of videos "
                         "(a corpus), a folder of images (one sequence) or a .txt list of videos")
    return has_videos


def _read_list(txt: Path) -> list[Path]:
    videos = []
    for number, line in enumerate(txt.read_text(encoding="utf-8").splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        video = Path(entry).expanduser()
        video = video if video.is_absolute() else txt.parent / video
        if not video.is_file():
            raise FileNotFoundError(f"{txt}, line {number}: video file not found: {video}")
        videos.append(video)
    return videos


def list_videos(path: str | os.PathLike) -> list[Path]:
    """The videos of a corpus (see the module docstring), in corpus order. Raises
    FileNotFoundError for a missing path, a listed file that does not exist or an empty corpus,
    ValueError for a path that is not a corpus (e.g. an image folder)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video corpus not found: {path}")
    if not is_corpus(path):
        raise ValueError(f"{path} is not a video corpus (expected a folder of "
                         f"{'/'.join(VIDEO_EXTENSIONS)} files or a .txt list of video paths)")
    if path.is_dir():
        videos = sorted(_files_with(path, VIDEO_EXTENSIONS), key=lambda p: natural_key(p.name))
    else:
        videos = _read_list(path)
    if not videos:
        raise FileNotFoundError(f"video corpus {path} is empty: no video files listed")
    return videos


def frame_count(path: str | os.PathLike) -> int:
    """Number of frames of a video: the container's count (CAP_PROP_FRAME_COUNT), or, when it
    reports none (≤ 0), the frames actually decoded. The container's count is metadata and may be
    off by a few frames; it is meant for balancing work. Raises for a file that is missing,
    cannot be opened or has no decodable first frame, naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise UserError(f"cannot open video file {path}: unknown format or corrupt file")
        reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if not capture.grab():
            raise UserError(f"video file {path} opened but no frame could be decoded")
        if reported > 0:
            return reported
        counted = 1
        while capture.grab():
            counted += 1
        return counted
    finally:
        capture.release()


def shard_counts(paths: Sequence[str | os.PathLike]) -> list[int]:
    """``frame_count`` of each video for ``shard_by_frames``, 0 for one that is missing or cannot be
    opened or decoded: a corpus run does not stop for it; the rank that gets it reports the error."""
    counts = []
    for path in paths:
        try:
            counts.append(frame_count(path))
        except (OSError, UserError):
            counts.append(0)
    return counts


def shard_by_frames(counts: Sequence[int], world_size: int) -> list[list[int]]:
    """Split video indices 0..len(counts)-1 over ``world_size`` ranks, balancing total frames.

    Greedy longest-first: videos in order of decreasing count (equal counts: lower index first)
    each go to the rank with the fewest frames so far (equal loads: lower rank). Every index lands
    in exactly one share; each share lists its indices in increasing (corpus) order; a rank may get
    an empty share when there are fewer videos than ranks. Example: counts [10, 9, 1, 1] over 2
    ranks -> [[0, 3], [1, 2]] (11 and 10 frames).
    """
    if world_size < 1:
        raise ValueError(f"world_size: expected >= 1, got {world_size}")
    if any(int(c) != c or c < 0 for c in counts):
        raise ValueError(f"counts: expected non-negative integers, got {list(counts)}")
    loads = [0] * world_size
    shares: list[list[int]] = [[] for _ in range(world_size)]
    for index in sorted(range(len(counts)), key=lambda i: (-counts[i], i)):
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        loads[rank] += int(counts[index])
        shares[rank].append(index)
    return [sorted(share) for share in shares]


def unique_stems(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Output folder names for ``paths``: each file's stem, made unique in list order. The first
    path with a stem keeps it; later ones get ``stem-2``, ``stem-3``, ... skipping any name that
    another path's own stem uses. Names are compared case-insensitively, so the folders also differ
    on case-insensitive file systems. Example: [x/a.mp4, y/a.mp4, a-2.avi] -> [a, a-3, a-2]."""
    stems = [Path(p).stem for p in paths]
    reserved = {s.casefold() for s in stems}
    taken: set[str] = set()
    names = []
    for stem in stems:
        name, suffix = stem, 2
        while name.casefold() in taken or (name != stem and name.casefold() in reserved):
            name, suffix = f"{stem}-{suffix}", suffix + 1
        taken.add(name.casefold())
        names.append(name)
    return names


def manifest(source: str, world_size: int, videos: Sequence[str | os.PathLike], dests: Sequence[str | os.PathLike],
             rows: Sequence[Sequence[float]], errors: dict[int, str]) -> dict:
    """The content of manifest.json: ``rows`` hold ``MANIFEST_COLUMNS`` per video, ``errors`` the error text
    of each failed video by index (its entry has 0 frames; every other entry has ``"error": null``)."""
    entries = []
    for i, (video, dest, row) in enumerate(zip(videos, dests, rows)):
        r = dict(zip(MANIFEST_COLUMNS, row))
        entries.append({"video": str(video), "output": str(dest), "frames": int(r["frames"]),
                        "num_keyframes": int(r["num_keyframes"]), "seconds": r["seconds"],
                        "skipped": bool(r["skipped"]), "rank": int(r["rank"]), "error": errors.get(i)})
    return {"input": source, "world_size": world_size, "total_frames": sum(e["frames"] for e in entries),
            "videos": entries}


def failed_videos(root: str | os.PathLike) -> set[str]:
    """The videos that ``root``'s manifest.json lists with an error; empty without a readable manifest.
    ``--skip-existing`` runs them again, even where an older complete output of theirs is in place (a failed
    video leaves its folder as it was)."""
    try:
        entries = json.loads((Path(root) / MANIFEST_NAME).read_text(encoding="utf-8"))["videos"]
        return {str(e["video"]) for e in entries if e.get("error")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()
