"""The ``--inference 1`` job: predict every frame of a video, image folder, camera, dataset split or video corpus.

    python main.py --inference 1 --input drive.mp4 --resume 1 --key-interval 3
    python main.py --inference 1 --input val --dataset cityscapes --resume 1 --save-labelids 1
    torchrun --nproc_per_node 2 main.py --inference 1 --input videos/ --output out --resume 1 --skip-existing 1

Frames stream through ``VideoPredictor`` (keyframe every ``--key-interval`` frames at ``--eval-scale``,
propagation with ``--fusion`` in between), pipelined by engine/streaming/video_job.py (decode ahead, outputs
written by background threads). Output folder (``--output``, else
logs/pred_img_res/{dataset}/{segnet}_{checkname}/{ResFolderName or time stamp}/), by ``--save``::

    color/{frame}.png       colour label map                                   (color, default)
    label/{frame}.png       train ids (uint8, one channel)                     (label, default)
    overlay.mp4             the frames with the colour map blended over them   (overlay, default; H.264,
                            or mp4v by --video-codec or without PyAV)
    labelIds/{frame}.png    Cityscapes labelIds (labelIds or --save-labelids 1; Cityscapes-style presets)
    summary.json            frames, keyframe indices, processing fps, video fps (always, also --save none)

A dataset split ('val' / 'test' / 'train', when no file of that name exists) runs snippet by snippet
in frame order, resetting the predictor between snippets so each starts with a keyframe (folder/vspw: one
snippet per clip, files named ``<clip>/<frame>``). summary.json also holds the class names and the palette
of the label PNGs (folder: from classes.json).

A corpus (a folder of video files or a .txt list, dataset/video_corpus.py) writes OUT/<video stem>/ per
video and OUT/manifest.json. Under torchrun each rank takes a disjoint, frame-balanced share; rank 0
writes the manifest after every rank has finished. A video that cannot be opened or stops decoding early
prints ``error: <video>: <why>``, gets that error in the manifest and no output; the others go on and the
exit code is 1. ``--skip-existing 1`` skips videos whose folder is complete (published with its summary.json)
and runs the failed ones again.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Callable

import torch

from config.config import Config
from config.dataset_preset import DatasetPreset
from dataset.video import h264_available, open_frames
from dataset.video_corpus import (MANIFEST_COLUMNS, MANIFEST_NAME, failed_videos, is_corpus, list_videos, manifest,
                                  shard_by_frames, shard_counts, unique_stems)
from engine import distributed as dist
from engine.deployment.onnx_runtime import onnx_model_for
from engine.evaluation.save_results import SUMMARY_NAME, is_complete, parse_outputs
from engine.model_builder import build_model
from engine.runs import pred_dir, preset_of, resolve_resume, timestamp
from engine.streaming.input_plan import DEFAULT_FPS, plan_input
from engine.streaming.predictor import VideoPredictor
from engine.streaming.video_job import make_predictor, run_to_folder, warm_up
from utils.errors import USER_ERRORS, error_text
from utils.logging import write_json
from utils.temporal_consistency import StreamingTC


def _outputs(cfg: Config, preset: DatasetPreset) -> tuple[str, ...]:
    """--save (+ --save-labelids 1) checked against the dataset before anything loads."""
    outputs = parse_outputs(cfg.save, cfg.save_labelids)
    if "labelIds" in outputs and preset.label_format != "labelIds":
        raise ValueError(f"--save-labelids 1 / --save labelIds: dataset {cfg.dataset} has no Cityscapes labelIds; "
                         "its label PNGs already hold train ids")
    return outputs


def _video_codec(cfg: Config, outputs: tuple[str, ...]) -> str:
    """--video-codec resolved once, before any work: h264 without PyAV is an error; auto is h264 when PyAV is
    installed, else mp4v with a note (when an overlay video is to be written)."""
    if cfg.video_codec == "h264" and not h264_available():
        raise ValueError("--video-codec h264: PyAV is not installed (pip install av, pinned in requirements.txt); "
                         "install it or pass --video-codec mp4v")
    if cfg.video_codec != "auto":
        return cfg.video_codec
    if h264_available():
        return "h264"
    if "overlay" in outputs and dist.is_main():
        print("note: PyAV is not installed: overlay.mp4 is written as MPEG-4 Part 2 (mp4v), which browsers do not "
              "play; pip install av for H.264 (--video-codec mp4v: this choice, without the note)",
              file=sys.stderr, flush=True)
    return "mp4v"


def _load_predictor(cfg: Config, preset: DatasetPreset, device: torch.device) -> VideoPredictor:
    resume = resolve_resume(cfg) if cfg.backend == "pytorch" else Path(cfg.export_dir)
    if resume is None and cfg.key_interval > 1 and cfg.fusion != "copy" and dist.is_main():
        print("WARNING: no --resume given: the flow net and GSV module are RANDOMLY INITIALISED; "
              "non-keyframes are meaningless (pass --resume 1 or --resume PATH)", file=sys.stderr, flush=True)
    if cfg.backend == "onnxruntime":
        model = onnx_model_for(cfg, preset, device, cfg.eval_scale)
    else:
        model, _ = build_model(cfg, preset, device, resume=resume)
    predictor = make_predictor(model, cfg, device)
    warm_up(predictor)
    return predictor


def _frame_hooks(cfg: Config, preset: DatasetPreset, source: str) -> tuple[Callable | None, Callable[[], dict]]:
    """(on_frame, extra) for one input's run (engine.streaming.video_job.run_to_folder); ``extra()`` gives the summary
    fields beyond the stream's own. The place where --temporal-consistency 1 plugs in a per-frame
    accumulator and adds {"temporal_consistency": ...} (null when off: the default for --inference)."""
    legend = {"class_names": list(preset.class_names), "palette": [list(c) for c in preset.palette]}
    if cfg.temporal_consistency != 1:
        return None, lambda: {"input": source, **legend}
    stream = StreamingTC(preset.num_classes)
    return (lambda index, name, frame, out: stream.add(frame, out.labels),
            lambda: {"input": source, **legend, "temporal_consistency": stream.result()})


def _report(dest: Path, info: dict) -> str:
    where = {"color": ("colour PNGs (indexed)", dest / "color"), "label": ("label PNGs (train ids)", dest / "label"),
             "labelIds": ("labelIds PNGs", dest / "labelIds"), "overlay": ("overlay video", dest / "overlay.mp4")}
    fps = info["processing_fps"]
    keys = info["num_keyframes"]
    lines = [f"wrote {info['frames']} frames ({keys} keyframe{'' if keys == 1 else 's'}, {fps:.2f} frames/s) "
             f"to {dest}:"]
    lines += [f"  {where[kind][0]:<24}{where[kind][1]}" for kind in info["outputs"]]
    lines.append(f"  {'summary':<24}{dest / SUMMARY_NAME}")
    return "\n".join(lines)


def _infer_single(cfg: Config, device: torch.device) -> int:
    """One video, image folder, image, camera or dataset split -> one output folder."""
    preset = preset_of(cfg)
    outputs = _outputs(cfg, preset)
    codec = _video_codec(cfg, outputs)
    plan = plan_input(cfg, preset)  # a missing input fails before the model loads
    predictor = _load_predictor(cfg, preset, device)
    dest = Path(cfg.output) if cfg.output else pred_dir(cfg, cfg.ResFolderName or timestamp())
    on_frame, extra = _frame_hooks(cfg, preset, cfg.input)
    _, info = run_to_folder(plan.items(), predictor, dest, outputs, preset.palette, plan.fps, plan.video_fps,
                            what=f"--input {cfg.input}", live=plan.live, progress=True, total=plan.total,
                            on_frame=on_frame, extra=extra, video_codec=codec)
    print(_report(dest, info))
    return 0


# --- a corpus of videos ---------------------------------------------------------------------------
def _threads_per_rank(device: torch.device) -> None:
    """Share the CPU cores between the ranks of this machine (torchrun sets LOCAL_WORLD_SIZE). Keyframe
    logits differ by ~1e-5 between thread counts (oneDNN splits reductions by thread), which can flip a
    label where two classes nearly tie; runs with the same threads per process give identical labels."""
    if device.type != "cpu" or not dist.is_dist():
        return
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def _video_row(info: dict, skipped: bool = False) -> list[float]:
    return [info["frames"], info.get("num_keyframes", len(info["keyframes"])), info.get("seconds") or 0.0,
            float(skipped), float(dist.rank())]


def _prefix() -> str:
    return f"[rank {dist.rank()}] " if dist.is_dist() else ""


def _run_video(cfg: Config, preset: DatasetPreset, predictor: VideoPredictor, outputs: tuple[str, ...],
               codec: str, video: Path, dest: Path) -> dict:
    """One video of the corpus into ``dest``; returns its summary."""
    source = open_frames(video)
    items = ((name, frame, k == 0) for k, (name, frame) in enumerate(source))
    on_frame, extra = _frame_hooks(cfg, preset, str(video))
    _, info = run_to_folder(items, predictor, dest, outputs, preset.palette, source.fps or DEFAULT_FPS[preset.kind],
                            source.fps, what=str(video), progress=dist.is_main(), total=source.num_frames,
                            on_frame=on_frame, extra=extra, video_codec=codec)
    return info


def _run_share(cfg: Config, device: torch.device, videos: list[Path], dests: list[Path], share: list[int],
               rows: torch.Tensor, codec: str) -> dict[int, str]:
    """This rank's videos, each into its own folder; fills this rank's rows of ``rows``. A video that cannot be
    read (or fails in any other way) is reported, leaves no output and does not stop the others: returns
    {video index: error text} of this rank's failures."""
    preset = preset_of(cfg)
    outputs = _outputs(cfg, preset)
    retry = failed_videos(dests[0].parent) if cfg.skip_existing and share else set()  # errored: not complete
    predictor, errors = None, {}
    for i in share:
        if cfg.skip_existing and is_complete(dests[i]) and str(videos[i]) not in retry:
            info = json.loads((dests[i] / SUMMARY_NAME).read_text())
            rows[i] = torch.tensor(_video_row(info, skipped=True), dtype=rows.dtype)
            print(f"{_prefix()}skipped {videos[i]}: {dests[i]} is complete", flush=True)
            continue
        if predictor is None:  # not loaded when every video of the share is skipped
            predictor = _load_predictor(cfg, preset, device)
        try:
            info = _run_video(cfg, preset, predictor, outputs, codec, videos[i], dests[i])
        except Exception as err:  # this video only (KeyboardInterrupt still stops the run)
            errors[i] = error_text(err) if isinstance(err, USER_ERRORS) else f"{type(err).__name__}: {err}"
            if not isinstance(err, USER_ERRORS):  # a bug, not the input: keep its traceback
                traceback.print_exception(err, file=sys.stderr)
            print(f"{_prefix()}error: {videos[i]}: {errors[i]}", file=sys.stderr, flush=True)
            rows[i] = torch.tensor(_video_row({"frames": 0, "keyframes": []}), dtype=rows.dtype)
            continue
        rows[i] = torch.tensor(_video_row(info), dtype=rows.dtype)
        print(f"{_prefix()}{_report(dests[i], info)}", flush=True)
    return errors


def _gather_errors(errors: dict[int, str]) -> dict[int, str]:
    """Every rank's {video index: error text}, merged (each video ran on one rank)."""
    if not dist.is_dist():
        return errors
    import torch.distributed
    parts: list = [None] * dist.world_size()
    torch.distributed.all_gather_object(parts, errors)
    return {i: text for part in parts for i, text in part.items()}


def _infer_corpus(cfg: Config, device: torch.device) -> int:
    """Every video of the corpus; this rank's share by frame count (dataset/video_corpus.py). Returns 1 when any
    video failed (each has an "error" in manifest.json), else 0."""
    codec = _video_codec(cfg, _outputs(cfg, preset_of(cfg)))  # a bad --save fails on every rank before any work
    videos = list_videos(cfg.input)
    share = shard_by_frames(shard_counts(videos), dist.world_size())[dist.rank()]
    root = Path(cfg.output) if cfg.output else pred_dir(cfg, cfg.ResFolderName or dist.shared_timestamp())
    dests = [root / name for name in unique_stems(videos)]
    _threads_per_rank(device)
    rows = torch.zeros(len(videos), len(MANIFEST_COLUMNS), dtype=torch.float64)
    with dist.fail_together("inference over the corpus"):
        errors = _run_share(cfg, device, videos, dests, share, rows, codec)
    dist.all_reduce_sum(rows)  # each row was filled by exactly one rank
    errors = _gather_errors(errors)
    if not dist.is_main():
        return 1 if errors else 0
    info = manifest(cfg.input, dist.world_size(), videos, dests, rows.tolist(), errors)
    write_json(root / MANIFEST_NAME, info)
    skipped = sum(e["skipped"] for e in info["videos"])
    print(f"corpus: {len(videos)} videos ({len(videos) - skipped - len(errors)} run, {skipped} skipped, "
          f"{len(errors)} failed), {info['total_frames']} frames; manifest {root / MANIFEST_NAME}")
    return 1 if errors else 0


def infer(cfg: Config, device: torch.device) -> int:
    """The ``--inference 1`` job: a corpus (every rank its share) or any other input (one output folder).
    Returns 0, or 1 when an input (or, in a corpus, any video) failed. A folder of both videos and images is an
    error (is_corpus), not an image folder."""
    return (_infer_corpus if is_corpus(cfg.input) else _infer_single)(cfg, device)


def on_every_rank(cfg: Config) -> bool:
    """Whether the job runs on every torchrun rank (a corpus) or on rank 0 only (any other input). An --input
    that is_corpus rejects runs on rank 0, where the job raises the error again: one line, exit code 1."""
    try:
        return is_corpus(cfg.input)
    except ValueError:
        return False
