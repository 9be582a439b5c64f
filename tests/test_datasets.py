"""Dataset loaders, presets, CamVid frame extraction and video I/O on tiny trees written here."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from config.presets import PRESET_NAMES, get_preset
from dataset.build import build_dataset
from dataset import camvid, camvid_frames, cityscapes, video

H, W = 6, 10


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


def write_gray(path: Path, gray: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), gray)


def coded_frame(number: int, seq: int = 0) -> np.ndarray:
    """A frame whose R channel is its number (mod 256), G its snippet and B a fixed 7."""
    frame = np.zeros((H, W, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = number % 256, seq, 7
    return frame


def make_cityscapes(root: Path, split: str, snippets, first_offset: int = 6,
                    sequence_folder: bool = True) -> None:
    """snippets: (city, seq, gt_frame); writes frames gt-first_offset..gt+2 and a labelIds PNG."""
    folder = "leftImg8bit_sequence" if sequence_folder else "leftImg8bit"
    for city, seq, gt in snippets:
        name = f"{city}_{seq:06d}_{gt:06d}"
        frames = range(gt - first_offset, gt + 3) if sequence_folder else [gt]
        for f in frames:
            write_rgb(root / folder / split / city / f"{city}_{seq:06d}_{f:06d}_leftImg8bit.png",
                      coded_frame(f, seq))
        label = np.arange(H * W, dtype=np.uint8).reshape(H, W) % 35  # labelIds 0..34
        write_gray(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", label)


@pytest.fixture()
def city_root(tmp_path):
    make_cityscapes(tmp_path, "val", [("frankfurt", 0, 294), ("lindau", 3, 19),
                                      ("frankfurt", 1, 1000)])
    return tmp_path


# ---------------------------------------------------------------- Cityscapes
def test_label_table_matches_cityscapesscripts():
    from cityscapesscripts.helpers.labels import labels
    for label in labels:
        if label.id < 0:
            continue
        expected = label.trainId if label.trainId not in (-1, 255) else 255
        assert cityscapes.LABEL_ID_TO_TRAIN_ID[label.id] == expected, label.name
        if label.trainId not in (-1, 255):
            assert cityscapes.TRAIN_ID_TO_LABEL_ID[label.trainId] == label.id
    # hand-picked: road, sky, bicycle, parking (ignored), license-plate-free high values
    table = cityscapes.LABEL_ID_TO_TRAIN_ID
    assert (table[7], table[23], table[33], table[9], table[0], table[34], table[255]) == \
        (0, 10, 18, 255, 255, 255, 255)
    assert table.dtype == np.uint8 and table.shape == (256,)
    assert cityscapes.TRAIN_ID_TO_LABEL_ID[255] == 0  # "unlabeled", ignored by the evaluation
    ids = np.arange(19)
    assert np.array_equal(cityscapes.labels_to_train_ids(cityscapes.train_ids_to_label_ids(ids)),
                          ids)


def test_parse_frame_name():
    assert cityscapes.parse_frame_name(
        "a/b/frankfurt_000000_000294_leftImg8bit.png") == ("frankfurt", 0, 294)
    assert cityscapes.parse_frame_name("lindau_000001_000019_gtFine_labelIds.png") == \
        ("lindau", 1, 19)
    assert cityscapes.parse_frame_name("munster_000036_000019") == ("munster", 36, 19)
    with pytest.raises(ValueError, match="not a Cityscapes frame name"):
        cityscapes.parse_frame_name("image.png")
    assert cityscapes.clip_frame_names("frankfurt_000000_000294", 2) == [
        "frankfurt_000000_000292", "frankfurt_000000_000293", "frankfurt_000000_000294"]


@pytest.mark.parametrize("distance", [0, 1, 3, 6])
def test_cityscapes_clip_frames(city_root, distance):
    ds = cityscapes.CityscapesSequence(city_root, "val", distance)
    # sorted by city, then sequence: frankfurt_000000, frankfurt_000001, lindau_000003
    assert ds.names == ["frankfurt_000000_000294", "frankfurt_000001_001000",
                        "lindau_000003_000019"]
    for index, (seq, gt) in enumerate([(0, 294), (1, 1000), (3, 19)]):
        sample = ds[index]
        frames = sample["frames"]
        assert frames.dtype == torch.uint8 and frames.shape == (distance + 1, 3, H, W)
        numbers = frames[:, 0, 0, 0].tolist()  # R channel = frame number % 256
        assert numbers == [f % 256 for f in range(gt - distance, gt + 1)]
        assert (frames[:, 1] == seq).all() and (frames[:, 2] == 7).all()  # RGB, not BGR
        assert sample["split"] == "val" and sample["name"] == ds.names[index]
        label_ids = np.arange(H * W).reshape(H, W) % 35
        expected = cityscapes.LABEL_ID_TO_TRAIN_ID[label_ids].astype(np.int64)
        assert sample["label"].dtype == torch.int64
        assert np.array_equal(sample["label"].numpy(), expected)


def test_cityscapes_snippet_and_no_label(city_root):
    ds = cityscapes.CityscapesSequence(city_root, "val", 2, with_label=False)
    assert "label" not in ds[0]
    snippet = ds.snippet_frames("lindau_000003_000019")
    assert [cityscapes.parse_frame_name(p)[2] for p in snippet] == list(range(13, 22))
    assert [p.name for p in ds.clip_paths(2)] == [
        f"lindau_000003_0000{f}_leftImg8bit.png" for f in (17, 18, 19)]


def test_cityscapes_plain_leftimg8bit(tmp_path):
    make_cityscapes(tmp_path, "test", [("berlin", 0, 38924)], sequence_folder=False)
    sample = cityscapes.CityscapesSequence(tmp_path, "test", 0)[0]
    assert sample["frames"].shape == (1, 3, H, W) and sample["name"] == "berlin_000000_038924"
    with pytest.raises(FileNotFoundError, match=r"distance 2 .*leftImg8bit_sequence"):
        cityscapes.CityscapesSequence(tmp_path, "test", 2)


def test_cityscapes_errors(city_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="Cityscapes root not found: .*nowhere"):
        cityscapes.CityscapesSequence(tmp_path / "nowhere", "val", 1)
    with pytest.raises(FileNotFoundError, match="train"):
        cityscapes.CityscapesSequence(city_root, "train", 1)
    empty = tmp_path / "empty"
    (empty / "leftImg8bit_sequence" / "val").mkdir(parents=True)
    (empty / "gtFine" / "val").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no annotated frames found"):
        cityscapes.CityscapesSequence(empty, "val", 0)

    frames_dir = city_root / "leftImg8bit_sequence" / "val"
    missing = frames_dir / "frankfurt" / "frankfurt_000000_000291_leftImg8bit.png"
    missing.unlink()
    ds = cityscapes.CityscapesSequence(city_root, "val", 3)
    with pytest.raises(FileNotFoundError) as info:
        ds[0]
    assert str(missing) in str(info.value) and "distance 3" in str(info.value)
    assert cityscapes.CityscapesSequence(city_root, "val", 2)[0]["frames"].shape[0] == 3

    corrupt = frames_dir / "lindau" / "lindau_000003_000018_leftImg8bit.png"
    corrupt.write_bytes(corrupt.read_bytes()[:60])  # a truncated download
    with pytest.raises(RuntimeError, match=f"cannot decode image file {corrupt}"):
        ds[2]

    bad_label = city_root / "gtFine" / "val" / "frankfurt" / \
        "frankfurt_000001_001000_gtFine_labelIds.png"
    write_gray(bad_label, np.zeros((H + 1, W), np.uint8))
    with pytest.raises(ValueError, match=r"has size \(7, 10\).*frames have size \(6, 10\)"):
        ds[1]


# ---------------------------------------------------------------- CamVid
def test_camvid_predecessor_names():
    assert camvid.predecessor_name("0001TP_006690", 1) == "0001TP_006689"
    assert camvid.predecessor_name("0001TP_010000", 2) == "0001TP_009998"
    assert camvid.predecessor_name("0006R0_f00930", 4) == "0006R0_f00926"
    assert camvid.predecessor_name("0016E5_07959", 3) == "0016E5_07956"
    assert camvid.predecessor_name("0016E5_01000", 1) == "0016E5_00999"
    assert camvid.predecessor_name("Seq05VD_f00030", 1) == "Seq05VD_f00029"
    assert camvid.predecessor_name("Seq05VD_f00030", 0) == "Seq05VD_f00030"
    with pytest.raises(ValueError, match="Seq05VD_f00000 has no frame 1"):
        camvid.predecessor_name("Seq05VD_f00000", 1)
    with pytest.raises(ValueError, match="not a CamVid frame name"):
        camvid.predecessor_name("foo", 1)


def camvid_label_names() -> list[str]:
    """The 701 labelled names with the real sequences' ranges and sampling."""
    names = [f"0001TP_{n:06d}" for n in range(6690, 10381, 30)]              # 124
    names += [f"0006R0_f{n:05d}" for n in range(930, 3931, 30)]              # 101
    names += [f"0016E5_{n:05d}" for n in [390 + 30 * i for i in range(202)] + [7950, 8190]]
    names += [f"0016E5_{n:05d}" for n in range(7959, 8160, 2)]               # 101 val
    names += [f"Seq05VD_f{n:05d}" for n in range(0, 5101, 30)]               # 171
    return names


def test_camvid_split_rule_and_video_test_split(tmp_path):
    names = camvid_label_names()
    assert len(names) == 701
    counts = {s: sum(camvid.split_of(n) == s for n in names) for s in camvid.SPLITS}
    assert counts == {"train": 367, "val": 101, "test": 233}
    assert (camvid.split_of("0001TP_008520"), camvid.split_of("0001TP_008550")) == ("train", "test")
    assert (camvid.split_of("0016E5_07950"), camvid.split_of("0016E5_08159")) == ("train", "val")
    for name in names:  # tiny label files: the derived split is discovered from label_id/
        write_gray(tmp_path / "label_id" / f"{name}_L.png", np.zeros((2, 2), np.uint8))
    sizes = {k: len(camvid.CamVidSequence(tmp_path, "test", k)) for k in (0, 1, 4)}
    assert sizes == {0: 232, 1: 232, 4: 232}
    test_names = camvid.CamVidSequence(tmp_path, "test", 1).names
    assert "Seq05VD_f00000" not in test_names and "Seq05VD_f00030" in test_names
    image_protocol = camvid.CamVidSequence(tmp_path, "test", 0, video_protocol=False)
    assert len(image_protocol) == 233
    assert len(camvid.CamVidSequence(tmp_path, "train", 2)) == 367
    assert len(camvid.CamVidSequence(tmp_path, "val", 2)) == 101


def test_camvid_clip_and_list_file(tmp_path):
    gt = "0006R0_f00930"
    for k in range(4):
        write_rgb(tmp_path / "frames" / "0006R0" / f"0006R0_f{930 - k:05d}.png",
                  coded_frame(930 - k))
    label = np.tile(np.array([0, 10, 11, 255, 3], np.uint8), (H, 2))  # H×W, 11 and 255 void
    write_gray(tmp_path / "label_id" / f"{gt}_L.png", label)
    (tmp_path / "train.txt").write_text(f"raw/{gt}.png label_id/{gt}_L.png\n")
    (tmp_path / "val.txt").write_text(f"raw/{gt}.png elsewhere/{gt}.png\n")
    ds = camvid.CamVidSequence(tmp_path, "train", 3)
    assert ds.names == [gt]  # the list file wins over the split rule (which says train too)
    assert camvid.CamVidSequence(tmp_path, "val", 3).label_path(gt) == \
        tmp_path / "elsewhere" / f"{gt}.png"
    sample = ds[0]
    assert sample["frames"][:, 0, 0, 0].tolist() == [927 % 256, 928 % 256, 929 % 256, 930 % 256]
    assert sample["label"][0, :5].tolist() == [0, 10, 255, 255, 3]
    missing = tmp_path / "frames" / "0006R0" / "0006R0_f00927.png"
    missing.unlink()
    with pytest.raises(FileNotFoundError) as info:
        ds[0]
    assert str(missing) in str(info.value) and "distance 3" in str(info.value)
    with pytest.raises(FileNotFoundError, match="CamVid root not found"):
        camvid.CamVidSequence(tmp_path / "nope", "train", 1)
    with pytest.raises(FileNotFoundError, match="val.txt"):
        camvid.CamVidSequence(tmp_path / "frames", "val", 1)


def test_camvid_raw_fallback_for_distance_zero(tmp_path):
    name = "0001TP_006690"
    write_rgb(tmp_path / "raw" / f"{name}.png", coded_frame(6690))
    write_gray(tmp_path / "label_id" / f"{name}_L.png", np.full((H, W), 3, np.uint8))
    sample = camvid.CamVidSequence(tmp_path, "train", 0)[0]
    assert sample["frames"].shape == (1, 3, H, W) and (sample["label"] == 3).all()
    with pytest.raises(FileNotFoundError, match="0001TP_006689.png"):
        camvid.CamVidSequence(tmp_path, "train", 1)[0]


# ---------------------------------------------------------------- CamVid frame extraction
def write_coded_video(path: Path, count: int) -> None:
    """MJPG video whose frame i is a flat grey of value 10 + 20*i (robust to lossy coding)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (32, 16))
    assert writer.isOpened()
    for i in range(count):
        writer.write(np.full((16, 32, 3), 10 + 20 * i, np.uint8))
    writer.release()


def decoded_index(png: Path) -> int:
    return int(round((cv2.imread(str(png)).mean() - 10) / 20))


def test_camvid_frames_naming():
    name = camvid_frames.label_aligned_name
    assert name("0001TP", 0) == "0001TP_006660" and name("0001TP", 30) == "0001TP_006690"
    assert name("0006R0", 931) == "0006R0_f00930" and name("0006R0", 0) is None
    assert name("0016E5", 391) == "0016E5_00390" and name("Seq05VD", 1) == "Seq05VD_f00000"
    assert name("Seq05VD", 31) == "Seq05VD_f00030"  # DAVSS: decoded 000031 (1-based 32) ↔ f00030
    with pytest.raises(ValueError, match="unknown CamVid sequence"):
        name("0005VD", 3)


def test_camvid_frames_extract_video(tmp_path):
    video_path = tmp_path / "clip.avi"
    write_coded_video(video_path, 8)
    out = tmp_path / "camvid" / "frames"
    camvid_frames.main(["--video", str(video_path), "--sequence", "Seq05VD", "--out", str(out),
                        "--no-progress"])
    files = sorted((out / "Seq05VD").glob("*.png"))
    assert [f.stem for f in files] == [f"Seq05VD_f{n:05d}" for n in range(7)]
    assert [decoded_index(f) for f in files] == list(range(1, 8))  # name = decoded index − 1

    label_dir = tmp_path / "camvid" / "label_id"
    write_gray(label_dir / "0001TP_006665_L.png", np.zeros((2, 2), np.uint8))
    camvid_frames.main(["--video", str(video_path), "--sequence", "0001TP", "--out", str(out),
                        "--only-near-labels", str(label_dir), "--max-distance", "2",
                        "--no-progress"])
    files = sorted((out / "0001TP").glob("*.png"))
    assert [f.stem for f in files] == ["0001TP_006663", "0001TP_006664", "0001TP_006665"]
    assert [decoded_index(f) for f in files] == [3, 4, 5]

    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(RuntimeError, match="bad.avi"):
        camvid_frames.extract_frames(bad, "0001TP", out, progress=False)
    with pytest.raises(FileNotFoundError, match="missing.avi"):
        camvid_frames.extract_frames(tmp_path / "missing.avi", "0001TP", out, progress=False)


# ---------------------------------------------------------------- video I/O
def test_open_frames_folder(tmp_path):
    for number in (10, 2, 1):
        write_rgb(tmp_path / "seq" / f"img{number}.png", coded_frame(number))
    (tmp_path / "seq" / "notes.txt").write_text("ignored")
    source = video.open_frames(tmp_path / "seq")
    assert source.kind == "folder" and len(source) == 3 and source.size == (H, W)
    items = list(source)
    assert [n for n, _ in items] == ["img1", "img2", "img10"]
    assert [int(f[0, 0, 0]) for _, f in items] == [1, 2, 10]
    assert all(f.dtype == np.uint8 and f.shape == (H, W, 3) and f[0, 0, 2] == 7 for _, f in items)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no images"):
        video.open_frames(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="input not found"):
        video.open_frames(tmp_path / "absent.mp4")


def test_video_writer_and_reader_roundtrip(tmp_path):
    path = tmp_path / "out" / "clip.mp4"
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (120, 120, 120)]
    with video.VideoWriter(path, fps=10) as writer:
        for colour in colours:
            writer.write(np.full((32, 48, 3), colour, np.uint8))
        with pytest.raises(ValueError, match="differs from the video size"):
            writer.write(np.zeros((16, 48, 3), np.uint8))
    source = video.open_frames(str(path))
    assert source.kind == "video" and source.size == (32, 48) and source.fps == pytest.approx(10)
    items = list(source)
    assert [n for n, _ in items] == [f"clip_{i:06d}" for i in range(4)]
    for (_, frame), colour in zip(items, colours):  # lossy codec: compare the mean colour
        assert np.abs(frame.reshape(-1, 3).mean(0) - colour).max() < 12
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="bad.mp4"):
        video.open_frames(bad)


def test_read_label_rejects_colour_images(tmp_path):
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 0] = 70
    colour[..., 2] = 180
    write_rgb(tmp_path / "c.png", colour)
    with pytest.raises(ValueError, match="colour image"):
        video.read_label(tmp_path / "c.png")


# ---------------------------------------------------------------- presets
def test_presets():
    from cityscapesscripts.helpers.labels import trainId2label
    city = get_preset("cityscapes")
    assert city.palette == tuple(trainId2label[i].color for i in range(19))
    assert city.class_names == tuple(trainId2label[i].name for i in range(19))
    assert city.palette[10] == (70, 130, 180) and city.frame_size == (1024, 2048)
    assert city.class_weights[0] == pytest.approx(3.03871497) and len(city.class_weights) == 19
    assert get_preset("cityscapes_2k").palette == city.palette
    cam = get_preset("camvid")
    assert cam.num_classes == 11 and cam.frame_size == (720, 960) and cam.ignore_index == 255
    assert cam.palette[0] == (128, 128, 128) and cam.class_names[9] == "Pedestrian"
    assert cam.class_weights[-1] == pytest.approx(40.105909294306784)
    syn = get_preset("synthetic")
    assert len(syn.class_weights) == 19 and syn.class_weights[0] == pytest.approx(3.28)
    assert syn.frame_size == (256, 512) and syn.kind == "cityscapes"
    assert {get_preset(n).name for n in PRESET_NAMES} == set(PRESET_NAMES)
    with pytest.raises(ValueError, match="cityscapes_2k, cityscapes, camvid, synthetic"):
        get_preset("kitti")


def test_build_dataset_from_preset_and_collate(city_root):
    from torch.utils.data import DataLoader
    from dataset.transforms import ClipTransform
    ds = build_dataset(get_preset("synthetic"), "val", 2, root=city_root,
                       transform=ClipTransform((4, 8), seed=0))
    assert isinstance(ds, cityscapes.CityscapesSequence) and len(ds) == 3
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["frames"].shape == (2, 3, 3, 4, 8) and batch["frames"].dtype == torch.uint8
    assert batch["label"].shape == (2, 4, 8) and batch["label"].dtype == torch.int64
    assert batch["name"] == ["frankfurt_000000_000294", "frankfurt_000001_001000"]
