"""--dataset vspw (dataset/vspw.py, config/vspw.py) on a tiny VSPW_480p tree written here: the label mapping by
hand (0 and 255 ignored, v -> v − 1), the class list and palette, samples of videos of different sizes, each
bad layout's error, and --evaluate / --inference through the CLI."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import main
from config.presets import get_preset
from config.vspw import CLASS_NAMES, PALETTE, voc_color
from dataset.build import build_dataset
from dataset.vspw import VSPWSequence, read_vspw_label
from dataset.whole_clips import whole_clips
from models.swiftnet import SwiftNet

VIDEOS = {"train": {"1001_a": (6, 60, 84)}, "val": {"2002_b": (5, 100, 180), "2003_c": (4, 60, 84)}}


def write_vspw(root: Path, videos=VIDEOS, values=(0, 1, 5, 124, 255)) -> Path:
    """data/<video>/origin/<8 digits>.jpg + mask/<same>.png (every frame labelled), train.txt / val.txt."""
    rng = np.random.default_rng(0)
    for split, entries in videos.items():
        for name, (n, h, w) in entries.items():
            for sub in ("origin", "mask"):
                (root / "data" / name / sub).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                cv2.imwrite(str(root / "data" / name / "origin" / f"{i:08d}.jpg"),
                            rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
                cv2.imwrite(str(root / "data" / name / "mask" / f"{i:08d}.png"),
                            rng.choice(values, (h, w)).astype(np.uint8))
        (root / f"{split}.txt").write_text("".join(f"{name}\n" for name in entries))
    return root


@pytest.fixture()
def vspw(tmp_path) -> Path:
    return write_vspw(tmp_path / "VSPW_480p")


def test_label_mapping_by_hand(tmp_path):
    path = tmp_path / "m.png"
    cv2.imwrite(str(path), np.array([[0, 1, 124], [255, 7, 2]], np.uint8))
    assert read_vspw_label(path).tolist() == [[255, 0, 123], [255, 6, 1]]
    cv2.imwrite(str(path), np.array([[0, 125, 3], [200, 1, 1]], np.uint8))
    with pytest.raises(ValueError, match=r"m\.png holds value\(s\) \[125, 200\]"):
        read_vspw_label(path)


def test_class_list_and_palette(vspw):
    preset = get_preset("vspw", str(vspw))
    assert preset.num_classes == 124 and len(CLASS_NAMES) == len(set(CLASS_NAMES)) == 124
    assert (CLASS_NAMES[0], CLASS_NAMES[60], CLASS_NAMES[123]) == ("wall", "person", "train")
    assert preset.class_names == CLASS_NAMES and preset.ignore_index == 255 and preset.label_format == "trainIds"
    # PASCAL VOC colour-map rule, worked out by hand: value 1 -> (128, 0, 0), 6 = 0b110 -> (0, 128, 128),
    # 9 = 0b1001 -> (192, 0, 0) (bit 0 -> R bit 7, bit 3 -> R bit 6)
    assert (voc_color(1), voc_color(6), voc_color(9)) == ((128, 0, 0), (0, 128, 128), (192, 0, 0))
    assert PALETTE[0] == voc_color(1) and len(set(PALETTE)) == 124
    assert preset.frame_size == (60, 84) and preset.crop_size == (45, 63)  # from the training video
    # the release's own class file, where present, names the classes
    names = {"others": 0, **{f"class{v}": v for v in range(1, 125)}}
    (vspw / "label_num_dic_final.json").write_text(json.dumps(names))
    assert get_preset("vspw", str(vspw)).class_names[:2] == ("class1", "class2")
    assert get_preset("vspw", str(vspw.parent / "absent")).frame_size == (480, 640)  # no tree: the default


def test_samples_of_videos_of_different_sizes(vspw):
    ds = build_dataset(get_preset("vspw", str(vspw)), "val", 3)
    assert [ds.sample_name(i) for i in range(len(ds))] == ["2002_b/00000003", "2002_b/00000004", "2003_c/00000003"]
    sample = ds[1]
    assert sample["frames"].shape == (4, 3, 100, 180)  # 100 is not a multiple of 8
    raw = cv2.imread(str(vspw / "data" / "2002_b" / "mask" / "00000004.png"), cv2.IMREAD_UNCHANGED).astype(np.int64)
    expected = np.where((raw == 0) | (raw == 255), 255, raw - 1)
    assert torch.equal(sample["label"], torch.from_numpy(expected))
    assert set(np.unique(expected)) == {0, 4, 123, 255}
    clips = whole_clips(get_preset("vspw", str(vspw)), "val")
    assert [(c.name, len(c), c.dense) for c in clips] == [("2002_b", 5, True), ("2003_c", 4, True)]
    assert len(VSPWSequence(vspw, "val", 1, labelled_only=False)) == 4 + 3


def _no_data(root):
    shutil.rmtree(root / "data")


def _no_list(root):
    (root / "val.txt").unlink()


def _empty_list(root):
    (root / "val.txt").write_text("\n")


def _video_without_frames(root):
    shutil.rmtree(root / "data" / "2003_c" / "origin")


def _listed_video_missing(root):
    (root / "val.txt").write_text("2002_b\n9999_gone\n")


def _orphan_mask(root):
    cv2.imwrite(str(root / "data" / "2002_b" / "mask" / "00000099.png"), np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize("breakage, error, words", [
    (_no_data, FileNotFoundError, ["VSPW_480p/data", "not found"]),
    (_no_list, FileNotFoundError, ["val.txt", "not found"]),
    (_empty_list, FileNotFoundError, ["val.txt", "empty"]),
    (_video_without_frames, FileNotFoundError, ["2003_c", "val.txt", "no frames"]),
    (_listed_video_missing, FileNotFoundError, ["9999_gone", "no frames"]),
    (_orphan_mask, ValueError, ["00000099.png", "has no frame"]),
])
def test_bad_layout_is_one_named_error(vspw, breakage, error, words):
    breakage(vspw)
    with pytest.raises(error) as info:
        VSPWSequence(vspw, "val", 0)
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.slow
def test_evaluate_and_infer_through_the_cli(vspw, tmp_path, capsys):
    torch.manual_seed(0)
    weights = tmp_path / "swnet124.pt"
    torch.save(SwiftNet(124).state_dict(), weights)
    common = ["--dataset", "vspw", "--data-path", str(vspw), "--segnet-weights", str(weights), "--log-folder",
              str(tmp_path / "logs"), "--num-worker", "0", "--device", "cpu", "--batch-size", "2"]
    assert main.main(common + ["--evaluate", "1", "--fusion", "copy", "--eval-multi-step", "2",
                               "--ResFolderName", "e"]) == 0
    metrics = json.loads((tmp_path / "logs" / "run" / "vspw" / "swiftnet_test" / "eval_e" / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["class_names"] == list(CLASS_NAMES)
    assert metrics["num_samples"] == {"0": 9, "2": 5}  # 5 + 4 frames; 3 + 2 with two predecessors
    capsys.readouterr()
    out = tmp_path / "pred"
    assert main.main(common + ["--inference", "1", "--input", "val", "--fusion", "copy", "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 9 and summary["keyframes"] == [0, 3, 5, 8] and len(summary["class_names"]) == 124
    label = cv2.imread(str(out / "label" / "2002_b" / "00000004.png"), cv2.IMREAD_UNCHANGED)
    assert label.shape == (100, 180) and label.max() < 124
