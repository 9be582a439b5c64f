"""`main.py --inference 1` on an mp4, a folder of PNGs, a dataset split and a 1280×720 frame."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import main
from engine.predictor import VideoPredictor
from tests.test_eval_cli import make_env

VH, VW, VFRAMES = 96, 160, 7


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return make_env(tmp_path_factory.mktemp("infer_cli"), num_val=2)


def cli(env, source, *extra: str) -> list[str]:
    return ["--inference", "1", "--input", str(source), "--dataset", "synthetic", "--data-path", str(env["data"]),
            "--segnet-weights", str(env["segnet"]), "--log-folder", str(env["logs"]), "--device", "cpu", *extra]


def moving_frames(n: int, h: int, w: int) -> list[np.ndarray]:
    """RGB frames of a smooth pattern that shifts 2 px per frame (some motion for the flow net)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return [np.stack([128 + 100 * np.sin((x + 2 * t) / 9), 128 + 100 * np.cos(y / 7),
                      128 + 60 * np.sin((x + y + 2 * t) / 13)], -1).astype(np.uint8) for t in range(n)]


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    cap.release()
    return frames


def check_outputs(out: Path, names: list[str], size: tuple[int, int], labelids: bool = False) -> None:
    color = sorted(p.stem for p in (out / "color").glob("*.png"))
    label = sorted(p.stem for p in (out / "label").glob("*.png"))
    assert color == label == sorted(names)
    for name in names[:2] + names[-1:]:
        c = cv2.imread(str(out / "color" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        lab = cv2.imread(str(out / "label" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert c.shape == size + (3,) and lab.shape == size and lab.max() < 19
        if labelids:
            ids = cv2.imread(str(out / "labelIds" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
            from cityscapesscripts.helpers.labels import trainId2label
            np.testing.assert_array_equal(ids, np.vectorize(lambda t: trainId2label[t].id)(lab))
    video = read_video(out / "overlay.mp4")
    assert len(video) == len(names) and video[0].shape == size + (3,)
    assert not list(out.parent.glob(f".{out.name}*partial"))


def test_video_file(env, tmp_path, capsys):
    frames = moving_frames(VFRAMES, VH, VW)
    src = tmp_path / "drive.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (VW, VH))
    for f in frames:
        writer.write(f[:, :, ::-1].copy())
    writer.release()
    out = tmp_path / "out"
    rc = main.main(cli(env, src, "--resume", str(env["ckpt"]), "--key-interval", "3", "--output", str(out)))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    names = [f"drive_{i:06d}" for i in range(VFRAMES)]
    check_outputs(out, names, (VH, VW))
    assert str(out / "overlay.mp4") in captured.out and "RANDOMLY" not in captured.err
    # the label PNGs are what VideoPredictor gives for the decoded frames (keyframes at 0, 3, 6)
    predictor = VideoPredictor.from_checkpoints(segnet_weights=str(env["segnet"]), checkpoint=str(env["ckpt"]),
                                                key_interval=3, key_scale=0.75)
    decoded = [bgr[:, :, ::-1].copy() for bgr in read_video(src)]
    for i, frame in enumerate(decoded):
        step = predictor.step(frame)
        assert step.is_keyframe == (i % 3 == 0)
        np.testing.assert_array_equal(cv2.imread(str(out / "label" / f"{names[i]}.png"), cv2.IMREAD_UNCHANGED),
                                      step.labels)


def test_image_folder_natural_order_labelids_and_default_folder(env, tmp_path, capsys):
    src = tmp_path / "frames"
    src.mkdir()
    names = [f"img{i}" for i in (1, 2, 10)]  # natural order: img2 before img10
    for name, frame in zip(names, moving_frames(3, VH, VW)):
        cv2.imwrite(str(src / f"{name}.png"), frame[:, :, ::-1])
    rc = main.main(cli(env, src, "--resume", str(env["ckpt"]), "--save-labelids", "1",
                       "--ResFolderName", "folder_run"))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    out = env["logs"] / "pred_img_res" / "synthetic" / "swiftnet_test" / "folder_run"
    check_outputs(out, names, (VH, VW), labelids=True)


def test_dataset_split_resets_per_snippet(env, tmp_path, capsys):
    out = tmp_path / "val_out"
    rc = main.main(cli(env, "val", "--resume", str(env["ckpt"]), "--key-interval", "4", "--output", str(out)))
    assert rc == 0, capsys.readouterr().err
    frames = sorted((env["data"] / "leftImg8bit_sequence" / "val").glob("*/*_leftImg8bit.png"))
    assert len(frames) == 2 * 7
    check_outputs(out, [p.stem for p in frames], (64, 128))
    # the second snippet starts with a keyframe (frame 7 of the stream would not be one at interval 4)
    first = sorted(frames, key=lambda p: p.name)[7]
    predictor = VideoPredictor.from_checkpoints(segnet_weights=str(env["segnet"]), checkpoint=str(env["ckpt"]))
    expected = predictor.step(cv2.imread(str(first))[:, :, ::-1].copy()).labels
    np.testing.assert_array_equal(cv2.imread(str(out / "label" / f"{first.stem}.png"), cv2.IMREAD_UNCHANGED),
                                  expected)


def test_1280x720_frame_with_random_weights(env, tmp_path, capsys):
    src = tmp_path / "big.png"
    cv2.imwrite(str(src), moving_frames(1, 720, 1280)[0])
    out = tmp_path / "big_out"
    rc = main.main(cli(env, src, "--output", str(out)))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "RANDOMLY" in captured.err  # no --resume: the warning says so
    check_outputs(out, ["big"], (720, 1280))


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_bad_input_is_a_clear_error_and_writes_nothing(env, tmp_path, capsys, problem):
    src = tmp_path / "frames"
    if problem == "corrupt":
        src.mkdir()
        good = moving_frames(2, VH, VW)
        cv2.imwrite(str(src / "a1.png"), good[0][:, :, ::-1])
        (src / "a2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    rc = main.main(cli(env, src, "--resume", str(env["ckpt"]), "--output", str(out)))
    err = capsys.readouterr().err
    assert rc != 0 and "error" in err
    assert (str(src) if problem == "missing" else "a2.png") in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))
