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
