"""`main.py --inference 1` on an mp4, a folder of PNGs, a dataset split, a 1280×720 frame and a corpus of
videos (one process, two torchrun processes, --skip-existing); --save variants and errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import main
from engine.streaming.predictor import VideoPredictor
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
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == VFRAMES and summary["keyframes"] == [0, 3, 6] and summary["num_keyframes"] == 3
    assert summary["video_fps"] == pytest.approx(10.0) and summary["temporal_consistency"] is None
    assert summary["processing_fps"] > 0 and summary["outputs"] == ["color", "label", "overlay"]


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


@pytest.mark.slow
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


# --- --save variants and errors ---------------------------------------------------------------------
def write_mp4(path: Path, n: int, h: int = 64, w: int = 96, shift: int = 0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    for f in moving_frames(n + shift, h, w)[shift:]:
        writer.write(f[:, :, ::-1].copy())
    writer.release()
    return path


@pytest.mark.parametrize("save, files", [("none", {"summary.json"}),
                                         ("label,overlay", {"summary.json", "label", "overlay.mp4"})])
def test_save_chooses_the_outputs(env, tmp_path, capsys, save, files):
    src = write_mp4(tmp_path / "clip.mp4", 4)
    out = tmp_path / "out"
    rc = main.main(cli(env, src, "--resume", str(env["ckpt"]), "--save", save, "--output", str(out)))
    assert rc == 0, capsys.readouterr().err
    assert {p.name for p in out.iterdir()} == files
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 4 and summary["keyframes"] == [0, 3]


def test_unknown_save_name_is_a_clear_error(env, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main.main(cli(env, write_mp4(tmp_path / "clip.mp4", 2), "--save", "colour,label", "--output", str(out)))
    err = capsys.readouterr().err
    assert rc == 1 and "--save" in err and "color, label, overlay, labelIds" in err and "'colour'" in err
    assert not out.exists()


def test_writer_error_stops_the_run_with_that_error(env, tmp_path, capsys, monkeypatch):
    from engine.streaming import video_job

    from utils.errors import UserError

    def broken_png(labels, label_path=None, color_path=None, palette=None, compression=1):
        raise UserError(f"cannot write {Path(label_path).name}: disk full")  # as utils.visualize.save_png raises

    monkeypatch.setattr(video_job, "save_label_pngs", broken_png)
    out = tmp_path / "out"
    rc = main.main(cli(env, write_mp4(tmp_path / "clip.mp4", 5), "--resume", str(env["ckpt"]), "--output", str(out)))
    err = capsys.readouterr().err
    assert rc == 1 and "disk full" in err and "clip_000000.png" in err
    assert list(tmp_path.iterdir()) == [tmp_path / "clip.mp4"]  # no output folder, no staging left


# --- a corpus of videos ---------------------------------------------------------------------------
CORPUS = {"b": 4, "a": 3, "c10": 5, "c9": 2}  # stem -> frames; natural order: a, b, c9, c10


def make_corpus(folder: Path, count: int) -> Path:
    folder.mkdir()
    for k, (stem, n) in enumerate(list(CORPUS.items())[:count]):
        write_mp4(folder / f"{stem}.mp4", n, shift=k)
    return folder


def check_corpus(out: Path, stems: list[str]) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    assert [Path(v["video"]).stem for v in manifest["videos"]] == stems
    assert manifest["total_frames"] == sum(CORPUS[s] for s in stems)
    for video in manifest["videos"]:
        stem, n = Path(video["video"]).stem, video["frames"]
        assert n == CORPUS[stem] and video["output"] == str(out / stem)
        assert video["num_keyframes"] == len(range(0, n, 3))
        assert sorted(p.stem for p in (out / stem / "label").glob("*.png")) == [f"{stem}_{i:06d}" for i in range(n)]
        assert len(read_video(out / stem / "overlay.mp4")) == n
        summary = json.loads((out / stem / "summary.json").read_text())
        assert summary["frames"] == n and summary["keyframes"] == list(range(0, n, 3))
    return manifest


def test_corpus_folder_and_skip_existing(env, tmp_path, capsys):
    videos = make_corpus(tmp_path / "videos", 3)
    out = tmp_path / "out"
    args = cli(env, videos, "--resume", str(env["ckpt"]), "--output", str(out))
    assert main.main(args) == 0, capsys.readouterr().err
    manifest = check_corpus(out, ["a", "b", "c10"])
    assert manifest["world_size"] == 1 and not any(v["skipped"] for v in manifest["videos"])
    mtimes = {s: (out / s / "summary.json").stat().st_mtime_ns for s in ("a", "c10")}
    # b's output is gone and a crashed run left a staging folder for c10: only b is redone
    import shutil
    shutil.rmtree(out / "b")
    (out / ".c10.partial").mkdir()
    (out / ".c10.partial" / "junk.png").write_bytes(b"x")
    assert main.main(args + ["--skip-existing", "1"]) == 0, capsys.readouterr().err
    manifest = check_corpus(out, ["a", "b", "c10"])
    assert [v["skipped"] for v in manifest["videos"]] == [True, False, True]
    assert {s: (out / s / "summary.json").stat().st_mtime_ns for s in ("a", "c10")} == mtimes
    assert (out / "b" / "summary.json").is_file()
    # a staging leftover without a published folder is discarded and the video redone
    shutil.rmtree(out / "c10")
    assert main.main(args + ["--skip-existing", "1"]) == 0, capsys.readouterr().err
    assert not (out / ".c10.partial").exists()
    assert [v["skipped"] for v in check_corpus(out, ["a", "b", "c10"])["videos"]] == [True, True, False]


@pytest.mark.slow
def test_corpus_two_processes_write_the_labels_of_one(env, tmp_path, capsys):
    """torchrun, 2 ranks of 1 thread each (gloo) vs one process of 1 thread: identical label PNGs. (Keyframe
    logits differ by ~1e-5 between thread counts, which could flip a near-tie label.)"""
    import torch
    from tests.test_distributed_eval import REPO, free_port
    videos = make_corpus(tmp_path / "videos", 4)
    common = ["--resume", str(env["ckpt"]), "--save", "label"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main.main(cli(env, videos, *common, "--output", str(tmp_path / "one"))) == 0, capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           "main.py", *cli(env, videos, *common, "--output", str(tmp_path / "two"))]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    one = json.loads((tmp_path / "one" / "manifest.json").read_text())
    two = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert two["world_size"] == 2 and sorted(v["rank"] for v in two["videos"]) == [0, 0, 1, 1]
    assert [(v["frames"], v["num_keyframes"]) for v in two["videos"]] == [(v["frames"], v["num_keyframes"])
                                                                         for v in one["videos"]]
    assert two["total_frames"] == sum(CORPUS.values())
    for stem in CORPUS:
        files = sorted((tmp_path / "one" / stem / "label").glob("*.png"))
        assert len(files) == CORPUS[stem]
        for path in files:
            np.testing.assert_array_equal(cv2.imread(str(tmp_path / "two" / stem / "label" / path.name),
                                                     cv2.IMREAD_UNCHANGED), cv2.imread(str(path), cv2.IMREAD_UNCHANGED))


def test_adaptive_keyframes_reach_summary(env, tmp_path, capsys):
    """--keyframe-policy adaptive: the frame after a hard cut is a keyframe, and summary.json says so
    (256×512: the calibrated scene-change threshold holds from 1/8 grids of 32×64). Two shots of a smooth
    1 px/frame pan (the benchmark's texture), the second darker and flipped: scores ~0.05 within a shot,
    ~0.77 at the cut, against the threshold 0.22."""
    from engine.benchmarking.step_timing import moving_frame, synthetic_texture
    texture = synthetic_texture(256, 512)
    darker = np.ascontiguousarray(texture[::-1, :, ::-1] // 3)
    src = tmp_path / "cut.mp4"
    first, second = [moving_frame(texture, i) for i in range(4)], [moving_frame(darker, i) for i in range(4)]
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (512, 256))
    for f in first + second:
        writer.write(f[:, :, ::-1].copy())
    writer.release()
    out = tmp_path / "out"
    rc = main.main(cli(env, src, "--resume", str(env["ckpt"]), "--key-interval", "10", "--keyframe-policy", "adaptive",
                       "--save", "none", "--output", str(out)))
    assert rc == 0, capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["keyframes"] == [0, 4]


def test_temporal_consistency_reaches_summary(env, tmp_path, capsys):
    """--temporal-consistency 1: summary.json holds TC of the written labels under DIS flow, equal to an
    independent computation from the frames and label PNGs on disk; off by default (null)."""
    from utils.optical_flow import dis_backward_flow
    from utils.temporal_consistency import TemporalConsistency
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = moving_frames(4, 64, 96)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f[:, :, ::-1])
    out, off = tmp_path / "out", tmp_path / "off"
    assert main.main(cli(env, folder, "--resume", str(env["ckpt"]), "--output", str(out),
                         "--temporal-consistency", "1", "--save", "label")) == 0, capsys.readouterr().err
    assert main.main(cli(env, folder, "--resume", str(env["ckpt"]), "--output", str(off), "--save", "none")) == 0
    tc = json.loads((out / "summary.json").read_text())["temporal_consistency"]
    assert json.loads((off / "summary.json").read_text())["temporal_consistency"] is None
    labels = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((out / "label").glob("*.png"))]
    ref = TemporalConsistency(19)
    for prev_f, f, prev_l, lab in zip(frames, frames[1:], labels, labels[1:]):
        ref.add(prev_l, lab, *dis_backward_flow(prev_f, f))
    expected = ref.result()
    assert tc["flow"] == "dis" and tc["pairs"] == 3
    for key in ("miou", "miou_unmasked", "excluded_fraction"):
        assert tc[key] == pytest.approx(expected[key], abs=1e-9)


# --- the overlay video's codec ----------------------------------------------------------------------
def video_codec_of(path: Path) -> tuple[str, float, int]:
    """(codec name as PyAV reads it, frame rate, frames) of a video file."""
    import av
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, float(stream.average_rate), sum(1 for _ in container.decode(stream))


def test_overlay_video_is_h264_and_shows_the_labels(env, tmp_path, capsys):
    """Default: H.264 at the input's rate, each frame within the encoder's loss of the overlay made from the
    decoded input and the label PNGs; --video-codec mp4v: MPEG-4 Part 2 (FourCC FMP4), as before."""
    pytest.importorskip("av")
    from config.presets import get_preset
    from tests.test_video_output import decode, psnr
    from utils.visualize import overlay
    src = write_mp4(tmp_path / "clip.mp4", 4)
    out = tmp_path / "out"
    assert main.main(cli(env, src, "--resume", str(env["ckpt"]), "--output", str(out))) == 0, capsys.readouterr().err
    codec, pix_fmt, rate, decoded = decode(out / "overlay.mp4")
    assert (codec, pix_fmt, rate) == ("h264", "yuv420p", 10)
    palette = get_preset("synthetic").palette
    inputs = [bgr[:, :, ::-1] for bgr in read_video(src)]
    labels = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((out / "label").glob("*.png"))]
    assert len(decoded) == len(inputs) == len(labels) == 4
    expected = [overlay(np.ascontiguousarray(frame), lab, palette, 0.5) for frame, lab in zip(inputs, labels)]
    for i, got in enumerate(decoded):
        # measured 30.2-33.0 dB against its own overlay, at most 22.2 against the others: a random-weight net's
        # labels have many class edges, whose colours 4:2:0 chroma blurs (the conversion alone: 30.8-34.2 dB)
        scores = [psnr(got, want) for want in expected]
        assert scores[i] > 28.0 and int(np.argmax(scores)) == i
    mp4v = tmp_path / "mp4v"
    assert main.main(cli(env, src, "--resume", str(env["ckpt"]), "--output", str(mp4v), "--save", "overlay",
                         "--video-codec", "mp4v")) == 0, capsys.readouterr().err
    cap = cv2.VideoCapture(str(mp4v / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") == b"FMP4"
    cap.release()
    assert video_codec_of(mp4v / "overlay.mp4") == ("mpeg4", 10.0, 4)


def test_video_codec_without_pyav(env, tmp_path, capsys, monkeypatch):
    """--video-codec h264 without PyAV: a named error before any work; the default then falls back to mp4v
    with one note for the whole run (a corpus of two videos here)."""
    from dataset import video
    from engine.streaming import inference_job as infer
    monkeypatch.setattr(video, "h264_available", lambda: False)
    monkeypatch.setattr(infer, "h264_available", lambda: False)
    load = infer._load_predictor
    monkeypatch.setattr(infer, "_load_predictor", lambda *a: pytest.fail("the model was loaded"))
    src = write_mp4(tmp_path / "clip.mp4", 2)
    out = tmp_path / "out"
    rc = main.main(cli(env, src, "--resume", str(env["ckpt"]), "--output", str(out), "--video-codec", "h264"))
    err = capsys.readouterr().err
    assert rc == 1 and "error: --video-codec h264: PyAV is not installed" in err and "--video-codec mp4v" in err
    assert not out.exists()
    monkeypatch.setattr(infer, "_load_predictor", load)
    videos = tmp_path / "videos"
    videos.mkdir()
    for stem in ("a", "b"):
        write_mp4(videos / f"{stem}.mp4", 2)
    rc = main.main(cli(env, videos, "--resume", str(env["ckpt"]), "--output", str(out), "--save", "overlay"))
    err = capsys.readouterr().err
    assert rc == 0, err
    assert err.count("note: PyAV is not installed") == 1
    for stem in ("a", "b"):
        cap = cv2.VideoCapture(str(out / stem / "overlay.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") == b"FMP4"
        cap.release()


# --- a corpus with videos that cannot be read ---------------------------------------------------------
def bad_videos(folder: Path) -> dict[str, str]:
    """Three unreadable videos in ``folder``: random bytes, OpenCV's mp4 cut in half (its index, at the end, is
    lost: it does not open) and our H.264 mp4 cut in half (its index is first: it opens, announces 10 frames
    and decodes 4). Returns stem -> the start of its error."""
    from tests.test_video_corpus import _cut, write_h264
    (folder / "garbage.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 5000, np.uint8).tobytes())
    _cut(write_mp4(folder / "half.mp4", 6), 0.5)
    _cut(write_h264(folder / "stops.mp4", 10), 0.5)
    return {"garbage": "cannot open video file", "half": "cannot open video file",
            "stops": "video file {}: decoding stopped after"}


def check_failures(out: Path, folder: Path, errors: dict[str, str], err: str, manifest: dict) -> None:
    entries = {Path(v["video"]).stem: v for v in manifest["videos"]}
    for stem, start in errors.items():
        video = folder / f"{stem}.mp4"
        entry = entries[stem]
        assert entry["error"].startswith(start.format(video)) and str(video) in entry["error"]
        assert entry["frames"] == 0 and not entry["skipped"]
        assert f"error: {video}: {entry['error']}" in err
        assert not (out / stem).exists()
    assert not list(out.glob(".*partial"))  # no staging left either
    assert all(v["error"] is None for s, v in entries.items() if s not in errors)


def run_corpus_with_bad_videos(env, tmp_path, capsys) -> tuple[Path, Path, dict[str, str], list[str]]:
    """a, b and the three bad_videos as a corpus, run once: the good videos complete, the bad ones are listed
    as failed, the exit code is 1. Returns (videos, out, errors, args)."""
    videos = make_corpus(tmp_path / "videos", 2)  # b (4 frames), a (3)
    errors = bad_videos(videos)
    out = tmp_path / "out"
    args = cli(env, videos, "--resume", str(env["ckpt"]), "--output", str(out))
    assert main.main(args) == 1
    captured = capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [Path(v["video"]).stem for v in manifest["videos"]] == ["a", "b", "garbage", "half", "stops"]
    check_failures(out, videos, errors, captured.err, manifest)
    for stem in ("a", "b"):  # the good videos are complete
        assert len(read_video(out / stem / "overlay.mp4")) == CORPUS[stem]
        assert json.loads((out / stem / "summary.json").read_text())["frames"] == CORPUS[stem]
    assert manifest["total_frames"] == 7 and "5 videos (2 run, 0 skipped, 3 failed)" in captured.out
    return videos, out, errors, args


def test_corpus_goes_on_past_unreadable_videos(env, tmp_path, capsys):
    pytest.importorskip("av")
    videos, out, errors, args = run_corpus_with_bad_videos(env, tmp_path, capsys)
    # --skip-existing 1 runs the failed videos again (here they fail again) and skips the complete ones
    assert main.main(args + ["--skip-existing", "1", "--save", "label"]) == 1
    captured = capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [v["skipped"] for v in manifest["videos"]] == [True, True, False, False, False]
    check_failures(out, videos, errors, captured.err, manifest)
    assert "5 videos (0 run, 2 skipped, 3 failed)" in captured.out


@pytest.mark.slow
def test_corpus_retries_failed_videos_until_they_complete(env, tmp_path, capsys):
    pytest.importorskip("av")
    videos, out, errors, args = run_corpus_with_bad_videos(env, tmp_path, capsys)
    # once repaired, a failed video completes under --skip-existing 1; the exit code says whether any still fails
    write_mp4(videos / "garbage.mp4", 2)
    assert main.main(args + ["--skip-existing", "1"]) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(v["skipped"], v["frames"]) for v in manifest["videos"]] == [(True, 3), (True, 4), (False, 2),
                                                                         (False, 0), (False, 0)]
    del errors["garbage"]
    check_failures(out, videos, errors, capsys.readouterr().err, manifest)
    for stem in ("half", "stops"):
        write_mp4(videos / f"{stem}.mp4", 2)
    assert main.main(args + ["--skip-existing", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [v["error"] for v in manifest["videos"]] == [None] * 5 and manifest["total_frames"] == 13
    capsys.readouterr()
    # a video that completed once and then fails keeps its old folder, but its errored entry is not complete
    (videos / "a.mp4").write_bytes(b"no longer a video" * 100)
    assert main.main(args) == 1
    assert (out / "a" / "summary.json").is_file()
    assert main.main(args + ["--skip-existing", "1"]) == 1
    entry = json.loads((out / "manifest.json").read_text())["videos"][0]
    assert not entry["skipped"] and entry["error"].startswith("cannot open video file")
    assert f"skipped {videos / 'a.mp4'}" not in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["garbage", "stops"])
def test_single_video_that_cannot_be_read_is_an_error(env, tmp_path, capsys, monkeypatch, bad):
    """One unreadable video fails at once, before the model loads; one that stops decoding early fails at its
    end; neither leaves output."""
    pytest.importorskip("av")
    from engine.streaming import inference_job as infer
    folder = tmp_path / "in"
    folder.mkdir()
    expected = bad_videos(folder)[bad].format(folder / f"{bad}.mp4")
    if bad == "garbage":
        monkeypatch.setattr(infer, "_load_predictor", lambda *a: pytest.fail("the model was loaded"))
    out = tmp_path / "out"
    rc = main.main(cli(env, folder / f"{bad}.mp4", "--resume", str(env["ckpt"]), "--output", str(out)))
    err = capsys.readouterr().err
    assert rc == 1 and f"error: {expected}" in err and str(folder / f"{bad}.mp4") in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.slow
def test_corpus_two_processes_with_an_unreadable_video(env, tmp_path):
    """torchrun, 2 ranks: the rank that gets the unreadable video reports it; rank 0's manifest holds its
    error; both ranks exit 1 and the good videos are complete."""
    from tests.test_distributed_eval import REPO, free_port
    videos = make_corpus(tmp_path / "videos", 3)
    (videos / "garbage.mp4").write_bytes(np.random.default_rng(2).integers(0, 256, 5000, np.uint8).tobytes())
    torchrun = Path(sys.executable).parent / "torchrun"
    out = tmp_path / "out"
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           "main.py", *cli(env, videos, "--resume", str(env["ckpt"]), "--save", "label", "--output", str(out))]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and [Path(v["video"]).stem for v in manifest["videos"]] == [
        "a", "b", "c10", "garbage"]
    entry = manifest["videos"][3]
    assert entry["frames"] == 0 and entry["error"].startswith(f"cannot open video file {videos / 'garbage.mp4'}")
    assert f"error: {videos / 'garbage.mp4'}: cannot open video file" in proc.stderr
    assert [v["error"] for v in manifest["videos"][:3]] == [None] * 3
    assert manifest["total_frames"] == CORPUS["a"] + CORPUS["b"] + CORPUS["c10"] and not (out / "garbage").exists()
