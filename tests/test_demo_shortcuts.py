"""The demo's documented shortcuts: dense synthetic labels, the keyframe cache, snippets of long sequences."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from dataset.cityscapes import CityscapesSequence, parse_frame_name
from dataset.synthetic import extras_paths
from dataset.synthetic_dense import SyntheticDenseSequence
from engine.training.keyframe_cache import KeyframeCache, clip_keys, frame_key

NUM_FRAMES = 8


@pytest.fixture(scope="module")
def tiny(synthetic_data):
    # 2 train snippets per city: "brackenfield" holds two snippets under one sequence number
    return synthetic_data(num_train=4, num_val=1, height=48, width=96, num_frames=NUM_FRAMES, gt_index=5)


def test_snippet_frames_stay_inside_one_snippet_of_a_long_sequence(tiny):
    ds = CityscapesSequence(tiny, "train", 0)
    long_city = [n for n in ds.names if n.startswith("brackenfield")]
    assert len(long_city) == 2 and {parse_frame_name(n)[1] for n in long_city} == {0}  # same sequence number
    for name in long_city:
        frames = ds.snippet_frames(name)
        numbers = [parse_frame_name(p)[2] for p in frames]
        assert len(frames) == NUM_FRAMES and numbers == list(range(numbers[0], numbers[0] + NUM_FRAMES))
        assert parse_frame_name(name)[2] in numbers


def test_dense_dataset_has_every_frame_and_its_own_label(tiny):
    for k in (0, 2):
        ds = SyntheticDenseSequence(tiny, "train", k)
        assert len(ds) == 4 * (NUM_FRAMES - k)  # 4 snippets, clips ending at frames k..7
    ds = SyntheticDenseSequence(tiny, "train", 2)
    sample = ds[3]
    assert sample["frames"].shape == (3, 3, 48, 96) and sample["frames"].dtype == torch.uint8
    truth = cv2.imread(str(extras_paths(tiny, "train", sample["name"])["train_ids"]), cv2.IMREAD_UNCHANGED)
    assert torch.equal(sample["label"], torch.from_numpy(truth.astype(np.int64)))
    # the clip is the 3 consecutive frames ending at the labelled one
    city, seq, frame = parse_frame_name(sample["name"])
    last = cv2.imread(str(tiny / "leftImg8bit_sequence" / "train" / city / f"{sample['name']}_leftImg8bit.png"))
    assert np.array_equal(sample["frames"][-1].permute(1, 2, 0).numpy(), last[:, :, ::-1])


def test_dense_labels_refuse_other_datasets(tmp_path):
    with pytest.raises(FileNotFoundError, match="synthetic"):
        SyntheticDenseSequence(tmp_path, "train", 1)


def test_keyframe_cache_computes_each_frame_once():
    calls = []

    def compute(x):
        calls.append(x.shape[0])
        return x * 2

    cache = KeyframeCache()
    a = cache.get(["f1", "f2"], torch.tensor([[1.0], [2.0]]), compute)
    b = cache.get(["f2", "f3", "f1"], torch.tensor([[9.0], [3.0], [9.0]]), compute)
    assert calls == [2, 1] and len(cache) == 3
    assert torch.equal(a, torch.tensor([[2.0], [4.0]])) and torch.equal(b, torch.tensor([[4.0], [6.0], [2.0]]))


def test_clip_keys_name_the_keyframe_and_the_last_frame():
    keys, last = clip_keys(["lindau_000001_000019", "frankfurt_000000_000294"], 4)
    assert keys == ["lindau_000001_000015", "frankfurt_000000_000290"] and last[1] == "frankfurt_000000_000294"
    assert frame_key("0001TP_006690", -2) == "0001TP_006690@-2"  # not a Cityscapes name: clip-style key
