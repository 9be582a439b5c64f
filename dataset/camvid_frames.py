"""Extract label-aligned 30 fps frames from the four raw CamVid videos.

    python -m dataset.camvid_frames --video 01TP_extract.avi --sequence 0001TP \
        --out data/camvid/frames

writes ``data/camvid/frames/0001TP/0001TP_006660.png``, ... so that a frame and the label of the
same instant share a name. Index offsets (0-based OpenCV decode index i; independently confirmed
by AR-Seg, TMANet and the DAVSS lists):

* 0001TP (01TP_extract.avi, an extract that starts at frame 6660): ``0001TP_{i + 6660:06d}``
* 0006R0 / Seq05VD (.MXF): ``{seq}_f{i - 1:05d}``; 0016E5 (.MXF): ``0016E5_{i - 1:05d}``
  (decoded frame 0 has no label-aligned name and is skipped).

An off-by-one here silently shifts every "previous frame": check one frame against the labelled
image, e.g. compare frames/0001TP/0001TP_006690.png with the CamVid 701_StillsRaw_full image.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
from tqdm import tqdm

from dataset.camvid import SEQUENCES, split_name
from utils.errors import UserError

# sequence -> (offset added to the 0-based decode index, name prefix, digits)
NAMING = {
    "0001TP": (6660, "0001TP_", 6),
    "0006R0": (-1, "0006R0_f", 5),
    "0016E5": (-1, "0016E5_", 5),
    "Seq05VD": (-1, "Seq05VD_f", 5),
}


def label_aligned_name(sequence: str, decoded_index: int) -> str | None:
    """Label-aligned name of the ``decoded_index``-th (0-based) frame, or None if it has none."""
    if sequence not in NAMING:
        raise ValueError(f"unknown CamVid sequence {sequence!r}; expected one of "
                         f"{', '.join(SEQUENCES)}")
    offset, prefix, digits = NAMING[sequence]
    number = decoded_index + offset
    return None if number < 0 else f"{prefix}{number:0{digits}d}"


def frames_near_labels(label_dir: Path, sequence: str, max_distance: int) -> set[int]:
    """Frame numbers within ``max_distance`` frames before (or at) a labelled frame."""
    names = [p.name[: -len("_L.png")] for p in Path(label_dir).glob(f"{sequence}_*_L.png")]
    if not names:
        raise FileNotFoundError(f"no labels {sequence}_*_L.png found in {label_dir}")
    numbers = [split_name(n)[2] for n in names]
    return {n - k for n in numbers for k in range(max_distance + 1) if n - k >= 0}


def extract_frames(video: str | Path, sequence: str, out_dir: str | Path,
                   keep: set[int] | None = None, progress: bool = True) -> int:
    """Decode ``video`` and write label-aligned PNGs to ``out_dir/sequence/``.

    ``keep``: frame numbers (as in the names) to write; None writes every frame. Returns the
    number of files written.
    """
    video = Path(video)
    if not video.is_file():
        raise FileNotFoundError(f"video file not found: {video}")
    label_aligned_name(sequence, 0)  # validates the sequence before decoding anything
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise UserError(f"cannot open video file {video} (unknown format or corrupt)")
    target = Path(out_dir) / sequence
    target.mkdir(parents=True, exist_ok=True)
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    last_needed = max(keep) if keep else None
    written, decoded = 0, 0
    try:
        with tqdm(total=total, desc=f"{sequence} frames", unit="frame",
                  disable=not progress) as bar:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                name = label_aligned_name(sequence, decoded)
                decoded += 1
                bar.update(1)
                if name is None:
                    continue
                number = split_name(name)[2]
                if keep is None or number in keep:
                    if not cv2.imwrite(str(target / f"{name}.png"), bgr):
                        raise UserError(f"cannot write {target / f'{name}.png'}")
                    written += 1
                if last_needed is not None and number >= last_needed:
                    break  # nothing later is needed; saves decoding the rest of the video
    finally:
        capture.release()
    if decoded == 0:
        raise UserError(f"no frame could be decoded from {video}")
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dataset.camvid_frames",
        description="Extract CamVid video frames named like the labels (frames/<seq>/<name>.png) "
                    "so that CamVidSequence can find the predecessors of each labelled frame.")
    parser.add_argument("--video", required=True,
                        help="raw CamVid video: 01TP_extract.avi, 0006R0.MXF, 0016E5.MXF or "
                             "0005VD.MXF (the last one is sequence Seq05VD)")
    parser.add_argument("--sequence", required=True, choices=SEQUENCES,
                        help="which sequence the video holds; selects the index offset")
    parser.add_argument("--out", required=True,
                        help="output folder, normally <camvid root>/frames; files go to "
                             "<out>/<sequence>/")
    parser.add_argument("--only-near-labels", default=None, metavar="LABEL_DIR",
                        help="write only frames within --max-distance before a label found in "
                             "this label_id folder (saves most of the disk space); default: "
                             "write every frame")
    parser.add_argument("--max-distance", type=int, default=4,
                        help="with --only-near-labels: largest keyframe distance you will "
                             "train/evaluate with (default: 4, the official maximum)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_distance < 0:
        parser.error(f"--max-distance must be >= 0, got {args.max_distance}")
    keep = None
    if args.only_near_labels is not None:
        keep = frames_near_labels(Path(args.only_near_labels), args.sequence, args.max_distance)
    written = extract_frames(args.video, args.sequence, args.out, keep=keep,
                             progress=not args.no_progress)
    print(f"wrote {written} frames to {Path(args.out) / args.sequence}")
    return written


if __name__ == "__main__":
    main()
