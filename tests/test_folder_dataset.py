"""--dataset folder (dataset/folder.py, dataset/clip_sequence.py, config/folder.py) on tiny trees written here:
classes.json parsing, the samples of both modes counted by hand, label values mapped by hand, clips of
100×180 (height not a multiple of 8) through crop/batching, each bad layout's error, the mp4 -> clip folder
command, every CLI mode, and the synthetic data rewritten as clip folders scoring the same mIoU."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import main
from config.presets import get_preset
from dataset import clip_folders
from dataset.build import build_dataset
from dataset.cityscapes import LABEL_ID_TO_TRAIN_ID, CityscapesSequence
from dataset.folder import FolderSequence, read_classes
from dataset.transforms import ClipTransform
from dataset.whole_clips import whole_clips

NAMES = ["sky", "road", "car"]
COLORS = [[70, 130, 180], [128, 64, 128], [0, 0, 142]]
VALUES = {"10": 0, "20": 1, "30": 2, "0": 255}  # PNG value -> class (0 = void)


# ------------------------------------------------------------------ tiny trees
def frame(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def mask(seed: int, h: int, w: int, values=(10, 20, 30, 0)) -> np.ndarray:
    return np.random.default_rng(1000 + seed).choice(values, (h, w)).astype(np.uint8)


def seed_of(clip: str, index: int) -> int:
    return sum(map(ord, clip)) * 100 + index


def write_classes(root: Path, **content) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps({"names": NAMES, "colors": COLORS, **content}))


def write_clip(root: Path, split: str, clip: str, n: int, size: tuple[int, int], labelled=(), names=None,
               ext: str = ".png") -> list[str]:
    """Frames ``names`` (default 00000, 00001, ...) as RGB ``ext`` files and masks for the ``labelled`` indices."""
    names = names or [f"{i:05d}" for i in range(n)]
    folder = root / split / clip
    (folder / "origin").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / "origin" / f"{name}{ext}"), frame(seed_of(clip, i), *size)[:, :, ::-1])
    for i in labelled:
        (folder / "mask").mkdir(exist_ok=True)
        cv2.imwrite(str(folder / "mask" / f"{names[i]}.png"), mask(seed_of(clip, i), *size))
    return names


@pytest.fixture()
def tree(tmp_path) -> Path:
    """train: a (6 frames 64×96, masks at 2, 5), b (6 frames 100×180, masks at 4, 5), c (5 frames, no mask/);
    val: v (6 frames 100×180, masks at 1, 5), w (6 frames 64×96, mask at 5). PNG values 10/20/30/0."""
    root = tmp_path / "mine"
    write_classes(root, label_values=VALUES)
    write_clip(root, "train", "a", 6, (64, 96), (2, 5))
    write_clip(root, "train", "b", 6, (100, 180), (4, 5))
    write_clip(root, "train", "c", 5, (64, 96))
    write_clip(root, "val", "v", 6, (100, 180), (1, 5))
    write_clip(root, "val", "w", 6, (64, 96), (5,))
    return root


# ------------------------------------------------------------------ classes.json and the preset
def test_preset_from_classes_json_and_frame_sizes(tree):
    preset = get_preset("folder", str(tree))
    assert (preset.kind, preset.num_classes, preset.class_names) == ("folder", 3, tuple(NAMES))
    assert preset.palette == tuple(tuple(c) for c in COLORS) and preset.ignore_index == 255
    assert preset.frame_size == (64, 96)  # smallest train height and width
    assert preset.crop_size == (48, 72) and preset.class_weights == (1.0, 1.0, 1.0)
    assert preset.label_format == "trainIds" and preset.data_path == str(tree)
    classes = read_classes(tree)
    assert classes.label_values == {10: 0, 20: 1, 30: 2, 0: 255}
    table = classes.table()
    assert [int(table[v]) for v in (0, 10, 20, 30, 1, 255)] == [255, 0, 1, 2, -1, -1]


def test_optional_keys_of_classes_json(tmp_path):
    write_classes(tmp_path, ignore_index=3, class_weights=[1, 2.5, 4])
    classes = read_classes(tmp_path)
    assert classes.ignore_index == 3 and classes.class_weights == (1.0, 2.5, 4.0) and classes.label_values is None
    table = classes.table()  # no label_values: the values are the class indices or the ignore index
    assert [int(table[v]) for v in (0, 1, 2, 3, 4, 255)] == [0, 1, 2, 3, -1, -1]
    assert get_preset("folder", str(tmp_path)).frame_size == (480, 640)  # no clips yet: the default


# ------------------------------------------------------------------ samples
def test_labelled_samples_counted_and_read_by_hand(tree):
    ds = FolderSequence(tree, "train", 2)
    assert [ds.sample_name(i) for i in range(len(ds))] == ["a/00002", "a/00005", "b/00004", "b/00005"]
    assert len(FolderSequence(tree, "train", 5)) == 2  # a/00005, b/00005 have 5 predecessors
    sample = ds[2]  # b/00004: frames 2, 3, 4 of clip b (100×180)
    assert sample["frames"].shape == (3, 3, 100, 180) and sample["frames"].dtype == torch.uint8
    for t, index in enumerate((2, 3, 4)):
        expected = frame(seed_of("b", index), 100, 180)
        assert torch.equal(sample["frames"][t].permute(1, 2, 0), torch.from_numpy(expected))
    values = mask(seed_of("b", 4), 100, 180)
    expected = np.select([values == 10, values == 20, values == 30], [0, 1, 2], 255)
    assert torch.equal(sample["label"], torch.from_numpy(expected))
    assert (sample["clip"], sample["frame_index"], sample["has_label"], sample["split"]) == ("b", 4, True, "train")
    assert ds.clip_paths(2) == [tree / "train" / "b" / "origin" / f"{i:05d}.png" for i in (2, 3, 4)]
    assert "label" not in FolderSequence(tree, "train", 2, with_label=False)[0]


def test_every_frame_mode_includes_unlabelled_frames_and_clips(tree):
    ds = build_dataset(get_preset("folder", str(tree)), "train", 2, labelled_only=False)
    assert len(ds) == (6 - 2) + (6 - 2) + (5 - 2)  # every frame with 2 predecessors, clip c too
    flags = {ds.sample_name(i): ds[i]["has_label"] for i in range(len(ds))}
    assert sorted(n for n, f in flags.items() if f) == ["a/00002", "a/00005", "b/00004", "b/00005"]
    unlabelled = ds[[ds.sample_name(i) for i in range(len(ds))].index("c/00003")]
    assert unlabelled["frames"].shape[0] == 3 and torch.all(unlabelled["label"] == 255)
    # the whole-clip view of the same split: every frame of each clip, the mask of each frame or None
    clips = whole_clips(get_preset("folder", str(tree)), "val")
    assert [(c.name, len(c), c.dense) for c in clips] == [("v", 6, False), ("w", 6, False)]
    assert [p is not None for p in clips[0].label_paths] == [False, True, False, False, False, True]
    assert np.array_equal(clips[0].read_label(clips[0].label_paths[1]),
                          FolderSequence(tree, "val", 0)[0]["label"].numpy().astype(np.uint8))


def test_natural_frame_order_jpg_and_palette_masks(tmp_path):
    write_classes(tmp_path)
    write_clip(tmp_path, "val", "x", 3, (20, 28), names=["f10", "f2", "f1"], ext=".jpg")
    indexed = np.array([[0, 1, 2], [255, 2, 1]], np.uint8)  # a palette PNG: its indices are the values
    from PIL import Image
    big = np.zeros((20, 28), np.uint8)
    big[:2, :3] = indexed
    image = Image.frombytes("P", (28, 20), big.tobytes())
    image.putpalette([v for c in COLORS for v in c] + [0] * 3 * 253)
    (tmp_path / "val" / "x" / "mask").mkdir()
    image.save(tmp_path / "val" / "x" / "mask" / "f10.png")
    ds = FolderSequence(tmp_path, "val", 2)
    assert [p.name for p in ds.clip_paths(0)] == ["f1.jpg", "f2.jpg", "f10.jpg"]  # 2 before 10
    assert ds[0]["label"][:2, :3].tolist() == indexed.tolist()


def test_crops_and_batches_of_odd_sizes(tree):
    """3/4 of the smallest frame (48×72) cropped out of 100×180 and 64×96 clips, batched together."""
    preset = get_preset("folder", str(tree))
    ds = build_dataset(preset, "train", 1, transform=ClipTransform(preset.crop_size, scales=preset.train_scales,
                                                                    seed=0))
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=False)))
    assert batch["frames"].shape == (4, 2, 3, 48, 72) and batch["label"].shape == (4, 48, 72)
    assert set(torch.unique(batch["label"]).tolist()) <= {0, 1, 2, 255}
    assert batch["name"] == ["a/00002", "a/00005", "b/00004", "b/00005"]


# ------------------------------------------------------------------ bad layouts: one named error each
def _no_classes(root):
    (root / "classes.json").unlink()


def _bad_json(root):
    (root / "classes.json").write_text('{"names": ["sky", ')


def _colour_count(root):
    write_classes(root, colors=COLORS[:2])


def _orphan_mask(root):
    cv2.imwrite(str(root / "val" / "v" / "mask" / "99999.png"), np.zeros((4, 4), np.uint8))


def _unknown_value(root):
    bad = mask(0, 100, 180)
    bad[7, 9] = 40
    cv2.imwrite(str(root / "val" / "v" / "mask" / "00005.png"), bad)


def _empty_split(root):
    shutil.rmtree(root / "val")
    (root / "val").mkdir()


def _missing_split(root):
    shutil.rmtree(root / "val")


def _clip_without_frames(root):
    shutil.rmtree(root / "val" / "w" / "origin")


@pytest.mark.parametrize("breakage, error, words", [
    (_no_classes, FileNotFoundError, ["classes.json", "names"]),
    (_bad_json, ValueError, ["classes.json", "not valid JSON"]),
    (_colour_count, ValueError, ["classes.json", '"colors" must be a list of 3']),
    (_orphan_mask, ValueError, ["99999.png", "has no frame"]),
    (_unknown_value, ValueError, ["00005.png", "[40]", "label_values"]),
    (_empty_split, FileNotFoundError, ["val", "empty"]),
    (_missing_split, FileNotFoundError, ["val", "not found"]),
    (_clip_without_frames, FileNotFoundError, ["origin", "no frames"]),
])
def test_bad_layout_is_one_named_error(tree, breakage, error, words):
    breakage(tree)
    with pytest.raises(error) as info:
        get_preset("folder", str(tree))  # classes.json errors surface here already
        FolderSequence(tree, "val", 0)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_bad_layout_stops_the_cli_before_any_work(tree, tmp_path, capsys):
    _unknown_value(tree)
    rc = main.main(["--evaluate", "1", "--dataset", "folder", "--data-path", str(tree), "--fusion", "copy",
                    "--log-folder", str(tmp_path / "logs"), "--device", "cpu", "--num-worker", "0"])
    err = capsys.readouterr().err
    assert rc == 1 and "00005.png" in err and "[40]" in err and not (tmp_path / "logs" / "run").exists()


# ------------------------------------------------------------------ mp4 -> clip folders
def write_mp4(path: Path, n: int, size=(48, 64)) -> list[np.ndarray]:
    """A tiny mp4 whose frame i is a flat colour (BGR) that changes per frame, so frames can be told apart."""
    colours = [(20 * i % 256, 255 - 20 * i % 256, 100) for i in range(n)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (size[1], size[0]))
    for c in colours:
        writer.write(np.full(size + (3,), c, np.uint8))
    writer.release()
    return colours


def test_mp4_to_clip_folders(tmp_path, capsys):
    colours = write_mp4(tmp_path / "drive.mp4", 8)
    write_mp4(tmp_path / "other.mp4", 3)
    out = tmp_path / "mine"
    assert clip_folders.main([str(tmp_path / "drive.mp4"), str(tmp_path / "other.mp4"), "--out", str(out),
                              "--split", "train", "--no-progress"]) == 0
    files = sorted(p.name for p in (out / "train" / "drive" / "origin").iterdir())
    assert files == [f"{i:06d}.jpg" for i in range(8)] and len(list((out / "train" / "other" / "origin").iterdir())) == 3
    for i in (0, 5):  # frame i of the folder is frame i of the video (mp4 and jpg are lossy: ±6 grey levels)
        got = cv2.imread(str(out / "train" / "drive" / "origin" / f"{i:06d}.jpg")).reshape(-1, 3).mean(0)
        assert np.abs(got - np.array(colours[i])).max() < 6
    assert "classes.json" in capsys.readouterr().out  # the next step is named
    # --every / --max-frames keep the decode index in the names; an existing clip is an error before any work
    assert clip_folders.main([str(tmp_path / "drive.mp4"), "--out", str(out), "--split", "val", "--every", "3",
                              "--max-frames", "2", "--format", "png", "--no-progress"]) == 0
    assert sorted(p.name for p in (out / "val" / "drive" / "origin").iterdir()) == ["000000.png", "000003.png"]
    assert clip_folders.main([str(tmp_path / "drive.mp4"), "--out", str(out), "--split", "val"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert not list((out / "val").glob(".*partial"))
    # the clip folders load as they are: no mask/ is not an error for every-frame samples
    write_classes(out)
    ds = FolderSequence(out, "train", 2, with_label=False, labelled_only=False)
    assert len(ds) == (8 - 2) + (3 - 2) and ds[0]["frames"].shape == (3, 3, 48, 64)


def test_unreadable_video_writes_nothing(tmp_path, capsys):
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    write_mp4(tmp_path / "good.mp4", 2)
    rc = clip_folders.main([str(tmp_path / "good.mp4"), str(tmp_path / "broken.mp4"), "--out", str(tmp_path / "o")])
    assert rc == 1 and "broken.mp4" in capsys.readouterr().err and not (tmp_path / "o").exists()


# ------------------------------------------------------------------ every CLI mode
def _cli(tree: Path, logs: Path, *extra: str) -> list[str]:
    return ["--dataset", "folder", "--data-path", str(tree), "--log-folder", str(logs), "--batch-size", "2",
            "--num-worker", "0", "--device", "cpu", *extra]


@pytest.mark.slow
def test_every_mode_on_clip_folders(tree, tmp_path, capsys):
    logs = tmp_path / "logs"
    run = logs / "run" / "folder"
    assert main.main(_cli(tree, logs, "--train-segnet", "1", "--checkname", "seg", "--max-iters", "2", "--epoch",
                          "1", "--train-scales", "0.75", "1.0")) == 0
    segnet = run / "swiftnet_seg" / "segnet.pt"
    config = json.loads((run / "swiftnet_seg" / "config.json").read_text())
    assert config["train_scales"] == [0.75, 1.0] and segnet.is_file()
    assert main.main(_cli(tree, logs, "--segnet-weights", str(segnet), "--checkname", "prop", "--max-iters", "2",
                          "--epoch", "1", "--multi-step", "1", "5", "--eval-multi-step", "1",
                          "--crop-height", "45", "--crop-width", "75")) == 0  # odd crop: not a multiple of 8
    capsys.readouterr()
    assert main.main(_cli(tree, logs, "--evaluate", "1", "--segnet-weights", str(segnet), "--checkname", "prop",
                          "--resume", "1", "--eval-multi-step", "1", "4", "--ResFolderName", "e",
                          "--save-res", "1", "--batch-size", "1")) == 0
    metrics = json.loads((run / "swiftnet_prop" / "eval_e" / "metrics.json").read_text())
    assert metrics["class_names"] == NAMES and metrics["split"] == "val"
    assert metrics["num_samples"] == {"0": 3, "1": 3, "4": 2}  # v/00001 has 1 predecessor, not 4
    saved = logs / "pred_img_res" / "folder" / "swiftnet_prop" / "e" / "k1"
    assert cv2.imread(str(saved / "v" / "00005.png"), cv2.IMREAD_UNCHANGED).shape == (100, 180)
    assert "sky" in capsys.readouterr().out
    out = tmp_path / "pred"
    assert main.main(_cli(tree, logs, "--inference", "1", "--input", "val", "--segnet-weights", str(segnet),
                          "--checkname", "prop", "--resume", "1", "--output", str(out))) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["class_names"] == NAMES and summary["palette"] == COLORS
    assert summary["frames"] == 12 and summary["keyframes"] == [0, 3, 6, 9]  # each clip starts with a keyframe
    color = cv2.imread(str(out / "color" / "v" / "00003.png"))[:, :, ::-1]
    assert color.shape == (100, 180, 3)
    assert {tuple(c) for c in color.reshape(-1, 3)} <= {tuple(c) for c in COLORS}


# ------------------------------------------------------------------ equivalence with --dataset synthetic
def synthetic_to_folder(src: Path, dst: Path, split: str, names=None, colors=None) -> None:
    """A Cityscapes-layout (synthetic) split rewritten as clip folders: one clip per snippet (its frames copied
    byte for byte), the annotated frame's gtFine labelIds as train ids in mask/, classes.json with the classes."""
    from config.cityscapes import CLASS_NAMES, PALETTE
    (dst).mkdir(parents=True, exist_ok=True)
    (dst / "classes.json").write_text(json.dumps({"names": list(names or CLASS_NAMES),
                                                  "colors": [list(c) for c in (colors or PALETTE)]}))
    ds = CityscapesSequence(src, split, 0)
    for index, name in enumerate(ds.names):
        clip = dst / split / name
        (clip / "origin").mkdir(parents=True)
        (clip / "mask").mkdir()
        for path in ds.snippet_frames(name):
            shutil.copyfile(path, clip / "origin" / path.name.replace("_leftImg8bit", ""))
        label_ids = cv2.imread(str(ds.label_path(name)), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(clip / "mask" / f"{name}.png"), LABEL_ID_TO_TRAIN_ID[label_ids])


@pytest.mark.slow
def test_synthetic_as_clip_folders_gives_the_same_miou(tmp_path, capsys):
    from tests.test_eval_cli import make_env
    env = make_env(tmp_path / "env")
    folder = tmp_path / "as_folder"
    synthetic_to_folder(env["data"], folder, "val")
    common = ["--evaluate", "1", "--segnet-weights", str(env["segnet"]), "--resume", str(env["ckpt"]),
              "--eval-multi-step", "1", "2", "--batch-size", "1", "--num-worker", "0", "--device", "cpu",
              "--temporal-consistency", "0", "--log-folder", str(env["logs"]), "--ResFolderName", "same"]
    assert main.main(common + ["--dataset", "synthetic", "--data-path", str(env["data"])]) == 0
    assert main.main(common + ["--dataset", "folder", "--data-path", str(folder)]) == 0
    capsys.readouterr()
    synthetic, mine = (json.loads((env["logs"] / "run" / d / "swiftnet_test" / "eval_same" / "metrics.json")
                                  .read_text()) for d in ("synthetic", "folder"))
    assert mine["num_samples"] == synthetic["num_samples"] == {"0": 3, "1": 3, "2": 3}
    assert mine["class_names"] == synthetic["class_names"]
    for k in ("0", "1", "2"):
        assert mine["per_distance"][k]["miou"] == synthetic["per_distance"][k]["miou"]
        assert mine["per_distance"][k]["iou"] == synthetic["per_distance"][k]["iou"]
    assert mine["intervals"] == synthetic["intervals"]
    assert 0 < mine["per_distance"]["2"]["miou"] < 100
