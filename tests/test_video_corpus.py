"""Tests for dataset/video_corpus.py: what counts as a corpus, listing order, errors that name the
file, frame counts of tiny mp4s, balanced sharding (hand cases and an independent heap version),
unique output names."""
import heapq

import cv2
import numpy as np
import pytest

from dataset import video_corpus
from dataset.video_corpus import frame_count, is_corpus, list_videos, shard_by_frames, unique_stems


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")
    return folder


def _write_mp4(path, frames, size=(32, 48)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size[::-1])
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full(size + (3,), 20 * i, dtype=np.uint8))
    writer.release()
    return path


def test_folder_corpus_natural_order_and_non_corpora(tmp_path):
    videos = _touch(tmp_path / "videos", "clip10.mp4", "clip2.MOV", "clip1.avi", "b.webm",
                    "a.m4v", "c.mkv", "notes.md")
    (videos / "sub").mkdir()
    (videos / "sub" / "clip0.mp4").write_bytes(b"x")  # sub-folders are not searched
    assert is_corpus(videos)
    assert [p.name for p in list_videos(videos)] == ["a.m4v", "b.webm", "c.mkv", "clip1.avi",
                                                     "clip2.MOV", "clip10.mp4"]
    images = _touch(tmp_path / "images", "f1.png", "f2.jpg")
    assert not is_corpus(images)
    with pytest.raises(ValueError, match="not a video corpus"):
        list_videos(images)
    assert not is_corpus(videos / "clip1.avi") and not is_corpus(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="missing"):
        list_videos(tmp_path / "missing")
    mixed = _touch(tmp_path / "mixed", "a.mp4", "b.png")
    with pytest.raises(ValueError, match="both videos and images"):
        is_corpus(mixed)


def test_txt_list_relative_absolute_comments(tmp_path):
    _touch(tmp_path / "lists" / "near", "v2.mp4")
    far = _touch(tmp_path / "far", "v1.avi") / "v1.avi"
    listing = tmp_path / "lists" / "corpus.txt"
    listing.write_text(f"# my corpus\n\nnear/v2.mp4\n   {far}  \n# done\n", encoding="utf-8")
    assert is_corpus(listing)
    assert list_videos(listing) == [tmp_path / "lists" / "near" / "v2.mp4", far]  # listed order

    listing.write_text("near/v2.mp4\nnear/gone.mp4\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=r"corpus.txt, line 2: .*gone.mp4"):
        list_videos(listing)
    listing.write_text("# nothing\n\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="empty"):
        list_videos(listing)


def test_frame_count_of_tiny_mp4s(tmp_path, monkeypatch):
    assert frame_count(_write_mp4(tmp_path / "seven.mp4", 7)) == 7
    assert frame_count(_write_mp4(tmp_path / "one.mp4", 1)) == 1
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(RuntimeError, match="bad.mp4"):
        frame_count(bad)
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        frame_count(tmp_path / "nope.mp4")

    real = cv2.VideoCapture

    class NoCountCapture:  # a container without a frame count: frames are counted by decoding
        def __init__(self, path):
            self._capture = real(path)

        def get(self, prop):
            return -1.0 if prop == cv2.CAP_PROP_FRAME_COUNT else self._capture.get(prop)

        def __getattr__(self, name):
            return getattr(self._capture, name)

    monkeypatch.setattr(video_corpus.cv2, "VideoCapture", NoCountCapture)
    assert frame_count(tmp_path / "seven.mp4") == 7


def test_shard_by_frames_hand_cases():
    # 10 -> rank 0; 9 -> rank 1; first 1 -> rank 1 (9 < 10); second 1 -> tie 10/10 -> rank 0
    assert shard_by_frames([10, 9, 1, 1], 2) == [[0, 3], [1, 2]]
    assert shard_by_frames([5, 5, 5], 2) == [[0, 2], [1]]
    assert shard_by_frames([1, 8, 3], 1) == [[0, 1, 2]]
    assert shard_by_frames([4, 7], 4) == [[1], [0], [], []]
    assert shard_by_frames([], 3) == [[], [], []]
    with pytest.raises(ValueError, match="world_size"):
        shard_by_frames([1], 0)
    with pytest.raises(ValueError, match="counts"):
        shard_by_frames([3, -1], 2)


def _heap_shards(counts, world_size):
    """Independent version: a heap of (load, rank) gives the least loaded, lowest rank."""
    heap = [(0, r) for r in range(world_size)]
    shares = [[] for _ in range(world_size)]
    for index in sorted(range(len(counts)), key=lambda i: (-counts[i], i)):
        load, rank = heapq.heappop(heap)
        shares[rank].append(index)
        heapq.heappush(heap, (load + counts[index], rank))
    return [sorted(s) for s in shares]


def test_shard_by_frames_random_counts():
    rng = np.random.default_rng(3)
    for _ in range(50):
        counts = rng.integers(0, 500, size=rng.integers(1, 40)).tolist()
        if rng.random() < 0.3:
            counts = [int(c) // 100 * 100 for c in counts]  # many ties
        world_size = int(rng.integers(1, 9))
        shares = shard_by_frames(counts, world_size)
        assert shares == _heap_shards(counts, world_size)
        assert sorted(i for s in shares for i in s) == list(range(len(counts)))
        assert all(s == sorted(s) for s in shares)
        loads = [sum(counts[i] for i in s) for s in shares]
        assert max(loads) - min(loads) <= max(counts)  # greedy bound


def test_unique_stems():
    assert unique_stems(["x/a.mp4", "y/b.mp4", "c.avi"]) == ["a", "b", "c"]
    assert unique_stems(["x/a.mp4", "y/a.mp4", "z/a.mkv"]) == ["a", "a-2", "a-3"]
    assert unique_stems(["x/a.mp4", "y/a.mp4", "a-2.avi"]) == ["a", "a-3", "a-2"]
    assert unique_stems(["x/Drive.mp4", "y/drive.mov"]) == ["Drive", "drive-2"]


# --- unreadable and truncated videos ------------------------------------------------------------------
def _cut(path, fraction, to=None):
    """``path`` cut to ``fraction`` of its bytes (into ``to``, default in place)."""
    data = path.read_bytes()
    target = to or path
    target.write_bytes(data[:int(len(data) * fraction)])
    return target


def write_h264(path, frames, size=(64, 96)):
    """An H.264 MP4 with its index first (the project's writer), so that a cut file still opens."""
    from dataset.video import VideoWriter
    y, x = np.mgrid[0:size[0], 0:size[1]]
    with VideoWriter(path, fps=10.0, codec="h264") as writer:
        for t in range(frames):  # a moving pattern, so that every frame costs bits
            writer.write(np.stack([(x * 7 + t * 29) % 256, (y * 5 + t * 13) % 256, (x * y + t) % 256],
                                  -1).astype(np.uint8))
    return path


def test_truncated_files_fail_at_open_or_when_decoding_stops(tmp_path):
    """A file cut in half fails: OpenCV's mp4 keeps its index (moov) at the end, so the cut file does not open;
    ours keeps it first, so the cut file opens, announces every frame and decodes only the first ones."""
    from dataset.video import missing_frames_allowed, open_frames
    from utils.errors import UserError
    half = _cut(_write_mp4(tmp_path / "half.mp4", 7), 0.5)
    with pytest.raises(UserError, match="cannot open video file .*half.mp4"):
        open_frames(half)
    with pytest.raises(UserError, match="half.mp4"):
        frame_count(half)
    pytest.importorskip("av")
    whole = write_h264(tmp_path / "whole.mp4", 10)
    stops = _cut(whole, 0.5, to=tmp_path / "stops.mp4")
    assert len(list(open_frames(whole))) == 10
    source = open_frames(stops)
    assert source.num_frames == 10 == frame_count(stops)  # the container still announces 10
    decoded = []
    with pytest.raises(UserError, match=r"stops.mp4: decoding stopped after 4 of the 10 frames"):
        for name, frame in source:
            decoded.append(name)
    assert decoded == [f"stops_{i:06d}" for i in range(4)]  # what it could decode, in order
    assert [missing_frames_allowed(n) for n in (1, 40, 199, 200, 1000)] == [2, 2, 2, 2, 10]
    # the boundary: a container that announces 2 frames more than a 7-frame file decodes is still read whole
    from dataset.video import FrameSource
    seven = str(_write_mp4(tmp_path / "seven.mp4", 7))
    assert len(list(FrameSource("video", seven, 10.0, (32, 48), 9, stem="seven"))) == 7
    with pytest.raises(UserError, match="decoding stopped after 7 of the 10 frames"):
        list(FrameSource("video", seven, 10.0, (32, 48), 10, stem="seven"))


def test_shard_counts_give_unreadable_videos_zero(tmp_path):
    from dataset.video_corpus import shard_counts
    good = _write_mp4(tmp_path / "good.mp4", 5)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    half = _cut(_write_mp4(tmp_path / "half.mp4", 7), 0.5)
    assert shard_counts([good, garbage, half, tmp_path / "gone.mp4"]) == [5, 0, 0, 0]
    assert shard_by_frames([5, 0, 0, 0], 2) == [[0], [1, 2, 3]]  # they still get a rank, which reports them


def test_manifest_entries_and_failed_videos(tmp_path):
    from dataset.video_corpus import MANIFEST_NAME, failed_videos, manifest
    rows = [[3, 1, 0.5, 0, 0], [0, 0, 0.0, 0, 1], [4, 2, 0.0, 1, 0]]
    info = manifest("videos", 2, ["v/a.mp4", "v/b.mp4", "v/c.mp4"], ["o/a", "o/b", "o/c"], rows,
                    {1: "cannot open video file v/b.mp4"})
    assert info["input"] == "videos" and info["world_size"] == 2 and info["total_frames"] == 7
    assert info["videos"][1] == {"video": "v/b.mp4", "output": "o/b", "frames": 0, "num_keyframes": 0,
                                 "seconds": 0.0, "skipped": False, "rank": 1,
                                 "error": "cannot open video file v/b.mp4"}
    assert [v["error"] for v in info["videos"]] == [None, "cannot open video file v/b.mp4", None]
    assert [v["skipped"] for v in info["videos"]] == [False, False, True]
    assert failed_videos(tmp_path) == set()  # no manifest yet
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    assert failed_videos(tmp_path) == set()
    import json
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(info))
    assert failed_videos(tmp_path) == {"v/b.mp4"}
