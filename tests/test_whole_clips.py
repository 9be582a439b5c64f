"""Whole clips of an evaluation split (dataset/whole_clips.py) for each dataset kind, on tiny trees."""
from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from config.presets import get_preset
from dataset.whole_clips import WholeClip, whole_clips


def write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def test_synthetic_clips_are_whole_snippets_labelled_on_every_frame(synthetic_data):
    data = synthetic_data(num_val=2, num_frames=7, gt_index=5)
    clips = whole_clips(get_preset("synthetic"), "val", str(data))
    assert [c.name for c in clips] == ["corrington_000000_000280", "corrington_000000_000580"]
    assert [len(c) for c in clips] == [7, 7] and all(c.dense for c in clips)
    assert [p.name for p in clips[0].frame_paths] == [f"corrington_000000_{f:06d}_leftImg8bit.png"
                                                      for f in range(275, 282)]
    clip = pickle.loads(pickle.dumps(clips[0]))       # travels to DataLoader workers
    for t, path in enumerate(clip.label_paths):
        assert path.name == f"corrington_000000_{275 + t:06d}_trainIds.png"
        label = clip.read_label(path)
        assert label.dtype == np.uint8 and label.shape == (64, 128) and set(np.unique(label)) <= set(range(19)) | {255}
    # the annotated frame's per-frame label is its gtFine label in train ids
    from dataset.cityscapes import labels_to_train_ids
    gt = cv2.imread(str(data / "gtFine" / "val" / "corrington" / "corrington_000000_000280_gtFine_labelIds.png"),
                    cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(clip.read_label(clip.label_paths[5]), labels_to_train_ids(gt))


def test_cityscapes_clips_label_only_the_annotated_frame(synthetic_data):
    data = synthetic_data(num_val=2, num_frames=7, gt_index=5)
    clips = whole_clips(get_preset("cityscapes"), "val", str(data))   # the same tree read as Cityscapes
    assert [len(c) for c in clips] == [7, 7] and not any(c.dense for c in clips)
    assert [t for t, p in enumerate(clips[1].label_paths) if p is not None] == [5]
    path = clips[1].label_paths[5]
    assert path.name == "corrington_000000_000580_gtFine_labelIds.png"
    labels = clips[1].read_label(path)                                # labelIds -> train ids
    assert labels.dtype == np.uint8 and labels.max() <= 255 and (labels[labels != 255] < 19).all()


def test_cityscapes_snippets_that_touch_stay_apart(tmp_path):
    """Two annotated frames 25 apart in one sequence: their frames form one run on disk, but each clip keeps its
    own 30-frame snippet GT−19 .. GT+10."""
    folder = tmp_path / "leftImg8bit_sequence" / "val" / "lindau"
    for f in range(0, 55):
        write(folder / f"lindau_000003_{f:06d}_leftImg8bit.png", np.zeros((4, 6, 3), np.uint8))
    for gt in (19, 44):
        write(tmp_path / "gtFine" / "val" / "lindau" / f"lindau_000003_{gt:06d}_gtFine_labelIds.png",
              np.full((4, 6), 7, np.uint8))
    clips = whole_clips(get_preset("cityscapes"), "val", str(tmp_path))
    assert [c.name for c in clips] == ["lindau_000003_000019", "lindau_000003_000044"]
    assert [(c.frame_paths[0].name[14:20], len(c)) for c in clips] == [("000000", 30), ("000025", 30)]
    assert [[t for t, p in enumerate(c.label_paths) if p] for c in clips] == [[19], [19]]
    assert (clips[0].read_label(clips[0].label_paths[19]) == 0).all()      # labelId 7 (road) -> train id 0


def test_camvid_clips_run_from_first_to_last_labelled_frame(tmp_path):
    frame = np.zeros((4, 6, 3), np.uint8)
    labelled = ["0001TP_008550", "0001TP_008580", "Seq05VD_f00000", "Seq05VD_f00030"]
    for name in labelled:
        write(tmp_path / "label_id" / f"{name}_L.png", np.full((4, 6), 3 if name[0] == "0" else 12, np.uint8))
    write(tmp_path / "label_id" / "0001TP_008520_L.png", np.zeros((4, 6), np.uint8))   # train: not in test
    for prefix, seq, first in (("0001TP_0", "0001TP", 8550), ("Seq05VD_f", "Seq05VD", 0)):
        for number in range(first, first + 31):
            if (prefix, number) != ("Seq05VD_f", 30):
                write(tmp_path / "frames" / seq / f"{prefix}{number:05d}.png", frame)
    write(tmp_path / "raw" / "Seq05VD_f00030.png", frame)   # a labelled frame only in raw/
    clips = whole_clips(get_preset("camvid"), "test", str(tmp_path))
    assert [(c.name, len(c)) for c in clips] == [("0001TP", 31), ("Seq05VD", 31)]
    assert [t for t, p in enumerate(clips[0].label_paths) if p is not None] == [0, 30]
    assert clips[0].frame_paths[1].name == "0001TP_008551.png" and not clips[0].dense
    assert clips[1].frame_paths[-1] == tmp_path / "raw" / "Seq05VD_f00030.png"
    assert (clips[1].read_label(clips[1].label_paths[0]) == 255).all()   # CamVid id 12 is void
    assert (clips[0].read_label(clips[0].label_paths[30]) == 3).all()
    (tmp_path / "frames" / "0001TP" / "0001TP_008560.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"0001TP_008560\.png of the CamVid test sequence 0001TP"):
        whole_clips(get_preset("camvid"), "test", str(tmp_path))


def test_clip_contract_and_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="one per frame"):
        WholeClip("c", (Path("a.png"), Path("b.png")), (None,), np.asarray)
    with pytest.raises(ValueError, match="no frames"):
        WholeClip("c", (), (), np.asarray)
    assert WholeClip("c", (Path("a.png"),), (Path("a_L.png"),), np.asarray).dense
    odd = replace(get_preset("camvid"), name="odd")
    object.__setattr__(odd, "kind", "elsewhere")     # a kind no branch knows
    with pytest.raises(ValueError, match="no whole clips for dataset 'odd'"):
        whole_clips(odd, "val", str(tmp_path))
