"""Deterministic synthetic street-video dataset in the Cityscapes layout (the embedded default).

    python -m dataset.synthetic --out data/synthetic          # 24 train + 8 val snippets, 256×512

Layout under ROOT (Cityscapes conventions; stem = {city}_{seq:06d}_{frame:06d}):
    leftImg8bit_sequence/{split}/{city}/{stem}_leftImg8bit.png   every frame of every snippet (RGB PNG)
    gtFine/{split}/{city}/{stem}_gtFine_labelIds.png             annotated frame only: uint8 labelIds
    gtFine/{split}/{city}/{stem}_gtFine_instanceIds.png          uint16: labelId*1000 + instance index
                                      (0, 1, ... per class) on car/truck/bus/person pixels, else labelId
    gtFine/{split}/{city}/{stem}_gtFine_color.png                RGB colours of the labelIds (3 channels)
    extras/{split}/{city}/{stem}_flow.npy      every frame: true backward flow, H×W×2 float16 (~0.03 px
                                      steps below 64 px), channel 0 = x, in pixels, so that
                                      frame_t(p) ≈ frame_{t-1}(p + flow(p)); all zero on a snippet's
                                      first frame
    extras/{split}/{city}/{stem}_trainIds.png  every frame: uint8 trainIds (255 = ignore)
    extras/{split}/{city}/{stem}_valid.png     every frame: 255 where the flow is valid (the point is
                                      inside frame t-1 and not occluded there), else 0; all 0 on the 1st frame
    synthetic.json                             marker: parameters, cities, "complete" (false while writing)
Snippets have num_frames (30) frames, annotated at index gt_index (19). Train snippets alternate
between "aldermoor" (frames 000000..000029 of sequence i, GT 000019) and "brackenfield"; val uses
"corrington". The last two number frames absolutely like Cityscapes' frankfurt: three snippets per
sequence, frames 000275..000304 (GT 000294), 000575.. (GT 000594), 000875.. (GT 000894), so GT != 19.
The ego vehicle's bonnet (labelId 1, ignored) is at the bottom of every frame, as in Cityscapes.
Scene model: dataset/synthetic_scene.py. Snippet i of a split is drawn from
np.random.default_rng([seed, split code, i]) alone, so the bytes depend only on the parameters (not
on the worker count), given the same numpy/OpenCV builds.
Helpers: dataset_matches / read_marker (is a matching dataset there?), extras_paths (a frame's
extras), copy_baseline_miou (what the motion costs a label-copying or true-flow-warping predictor).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dataset.synthetic_render import backward_flow, flow_validity, instance_ids, render_geometry
from dataset.synthetic_scene import sample_scene
from dataset.synthetic_texture import appearance, shade
from utils.errors import UserError

MARKER = "synthetic.json"
FORMAT_VERSION = 1
SPLITS = ("train", "val")
CITIES = {"train": (("aldermoor", False), ("brackenfield", True)), "val": (("corrington", True),)}
OWNED = ("leftImg8bit_sequence", "gtFine", "extras", MARKER)
NUM_CLASSES = 19


def label_tables():
    """(labelId -> trainId uint8 (256,), 255 = ignore; labelId -> RGB colour uint8 (256, 3))."""
    from cityscapesscripts.helpers.labels import labels
    train_id, colour = np.full(256, 255, np.uint8), np.zeros((256, 3), np.uint8)
    for lab in labels:
        if 0 <= lab.id < 256:
            train_id[lab.id] = lab.trainId if 0 <= lab.trainId < 255 else 255
            colour[lab.id] = lab.color
    return train_id, colour


# ----------------------------------------------------------------------------- writing
def _imwrite(path, array):
    if not cv2.imwrite(str(path), array):
        raise UserError(f"could not write {path}")


def _plan(num_train, num_val, num_frames):
    """(split, city, seq, first frame number, index in split) of every snippet."""
    jobs = []
    for split, n in (("train", num_train), ("val", num_val)):
        cities = CITIES[split]
        for i in range(n):
            city, absolute = cities[i % len(cities)]
            j = i // len(cities)
            spacing = max(300, num_frames + 20)
            seq, first = (j // 3, 275 + spacing * (j % 3)) if absolute else (j, 0)
            jobs.append((split, city, seq, first, i))
    return jobs


def extras_paths(root, split: str, stem: str) -> dict:
    """Paths of the extras of one frame: {"flow", "train_ids", "valid"}; stem = city_seq_frame."""
    base = Path(root) / "extras" / split / stem.split("_")[0]
    return {"flow": base / f"{stem}_flow.npy", "train_ids": base / f"{stem}_trainIds.png",
            "valid": base / f"{stem}_valid.png"}


def _write_snippet(job):
    """Render one snippet and write all its files; returns the labelIds seen in its GT frame."""
    root, (split, city, seq, first, index), p = Path(job[0]), job[1], job[2]
    rng = np.random.default_rng([p["seed"], SPLITS.index(split), index])
    scene = sample_scene(rng, p["height"], p["width"], p["num_frames"])
    look = appearance(rng, scene, p["num_frames"])
    train_id, colour = label_tables()
    folders = [root / top / split / city for top in ("leftImg8bit_sequence", "gtFine", "extras")]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    prev, seen = None, []
    for t in range(p["num_frames"]):
        g = render_geometry(scene, t)
        stem = f"{city}_{seq:06d}_{first + t:06d}"
        ex = extras_paths(root, split, stem)
        labels = np.take(scene.obj["label"].astype(np.uint8), g["obj"])
        flow, ahead = backward_flow(scene, t, g["obj"], g["depth"])
        valid = np.zeros_like(ahead) if prev is None else flow_validity(g["obj"], prev, flow, ahead)
        _imwrite(folders[0] / f"{stem}_leftImg8bit.png", shade(scene, look, g, t, rng)[..., ::-1])
        _imwrite(ex["train_ids"], np.take(train_id, labels))
        _imwrite(ex["valid"], valid.astype(np.uint8) * 255)
        np.save(ex["flow"], flow.astype(np.float16))
        if t == p["gt_index"]:
            _imwrite(folders[1] / f"{stem}_gtFine_labelIds.png", labels)
            _imwrite(folders[1] / f"{stem}_gtFine_instanceIds.png",
                     instance_ids(scene, g["obj"]).astype(np.uint16))
            _imwrite(folders[1] / f"{stem}_gtFine_color.png", np.take(colour[:, ::-1], labels, axis=0))
            seen = np.unique(labels).tolist()
        prev = g["obj"]
    return seen


# ----------------------------------------------------------------------------- dataset
def read_marker(root):
    """The parsed synthetic.json of root, or None when root holds no synthetic dataset."""
    path = Path(root) / MARKER
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable synthetic-dataset marker ({err})") from err
    return marker if isinstance(marker, dict) and "params" in marker else None


def _write_marker(root, params, replaceable, complete, classes=()):
    marker = {"generator": "GSVNet-repro dataset.synthetic", "format_version": FORMAT_VERSION,
              "complete": complete, "params": params, "replaceable": replaceable,
              "cities": {s: [c for c, _ in CITIES[s]] for s in SPLITS},
              "gt_label_ids": sorted(set(classes))}
    tmp = Path(root) / (MARKER + ".tmp")
    tmp.write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, Path(root) / MARKER)


def dataset_matches(root, num_train=24, num_val=8, height=256, width=512, num_frames=30,
                    gt_index=19, seed=0) -> bool:
    """True when root holds a complete synthetic dataset generated with exactly these parameters."""
    marker = read_marker(root)
    params = dict(num_train=num_train, num_val=num_val, height=height, width=width,
                  num_frames=num_frames, gt_index=gt_index, seed=seed)
    return bool(marker and marker.get("complete") and marker.get("format_version") == FORMAT_VERSION
                and marker["params"] == params)


def _checked(**params) -> dict:
    p = {k: int(v) for k, v in params.items()}
    if min(p["num_train"], p["num_val"]) < 0 or p["num_train"] + p["num_val"] == 0:
        raise ValueError(f"num_train and num_val must be >= 0 with a positive sum, got "
                         f"{p['num_train']} and {p['num_val']}")
    if p["height"] < 32 or p["width"] < 32:
        raise ValueError(f"height and width must be >= 32, got {p['height']}x{p['width']}")
    if p["num_frames"] < 2 or not 0 <= p["gt_index"] < p["num_frames"]:
        raise ValueError(f"need num_frames >= 2 and 0 <= gt_index < num_frames, got "
                         f"num_frames={p['num_frames']}, gt_index={p['gt_index']}")
    return p


def generate(root, num_train=24, num_val=8, height=256, width=512, num_frames=30, gt_index=19,
             seed=0, progress=True, overwrite=False, workers=None) -> dict:
    """Write the dataset under root (layout: module docstring) and return its marker dict.

    A previous synthetic dataset in root is replaced (only the folders this generator owns are
    removed); any other non-empty folder is refused unless overwrite=True, which writes into it
    without deleting anything, then or on later runs. workers: processes (None = up to 2; the
    bytes do not depend on it)."""
    params = _checked(num_train=num_train, num_val=num_val, height=height, width=width,
                      num_frames=num_frames, gt_index=gt_index, seed=seed)
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} exists and is not a folder; the dataset root must be a folder")
    # Only a tree this generator created in an empty folder is ever deleted ("replaceable"); a
    # folder with foreign files (--overwrite) is written over in place, now and on later runs.
    replaceable = True
    if root.is_dir() and any(root.iterdir()):
        if (root / MARKER).is_file():
            try:
                replaceable = bool((read_marker(root) or {}).get("replaceable", False))
            except RuntimeError:
                replaceable = False
            for path in (root / name for name in OWNED if replaceable):
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        elif not overwrite:
            raise UserError(f"{root} is not empty and holds no synthetic dataset ({MARKER} missing); "
                               f"choose an empty folder or pass --overwrite to write into it anyway")
        else:
            replaceable = False
    root.mkdir(parents=True, exist_ok=True)
    _write_marker(root, params, replaceable, complete=False)
    jobs = [(str(root), job, params) for job in _plan(num_train, num_val, num_frames)]
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    bar = tqdm(total=len(jobs), desc="synthetic snippets", unit="snippet", disable=not progress)
    classes = []
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            classes += _write_snippet(job)
            bar.update()
    else:
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
            for seen in pool.map(_write_snippet, jobs):
                classes += seen
                bar.update()
    bar.close()
    _write_marker(root, params, replaceable, complete=True, classes=classes)
    return read_marker(root)


# ----------------------------------------------------------------------------- checks
def _read(path, flags=cv2.IMREAD_UNCHANGED):
    image = cv2.imread(str(path), flags)
    if image is None:
        raise FileNotFoundError(f"missing or unreadable file {path}")
    return image


def warp_labels_true_flow(labels: np.ndarray, flows: list) -> np.ndarray:
    """Carry labels of frame s to frame s+k with the true backward flows [flow_{s+k}, ..., flow_{s+1}]
    (each H×W×2): the sampling positions are chained p -> p + flow_{s+k}(p) -> ..., the flows
    sampled bilinearly, the labels nearest (border pixels repeat outside)."""
    H, W = labels.shape
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    for flow in flows:
        step = cv2.remap(flow.astype(np.float32), xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        xs, ys = xs + step[..., 0], ys + step[..., 1]
    return cv2.remap(labels, xs, ys, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)


def copy_baseline_miou(root, split: str, distance: int, warp: bool = False) -> float:
    """mIoU (percent, 19 classes, dataset-level confusion matrix) of using the trainIds of frame
    GT-distance as the prediction of every GT frame of the split; warp=True first carries them to
    the GT frame with the true flow (warp_labels_true_flow)."""
    root, (train_id, _) = Path(root), label_tables()
    gts = sorted((root / "gtFine" / split).glob("*/*_gtFine_labelIds.png"))
    if not gts:
        raise FileNotFoundError(f"no gtFine/{split}/*/*_gtFine_labelIds.png under {root}")
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES + 1), np.int64)   # last column: void predicted
    for gt in gts:
        city, seq, frame = re.match(r"(.+)_(\d{6})_(\d{6})_gtFine", gt.name).groups()
        stem = lambda f: f"{city}_{seq}_{f:06d}"
        target = train_id[_read(gt)]
        pred = _read(extras_paths(root, split, stem(int(frame) - distance))["train_ids"])
        if warp and distance > 0:
            flows = [np.load(extras_paths(root, split, stem(f))["flow"])
                     for f in range(int(frame), int(frame) - distance, -1)]
            pred = warp_labels_true_flow(pred, flows)
        keep = target < NUM_CLASSES
        pred = np.minimum(pred[keep], NUM_CLASSES).astype(np.int64)
        cm += np.bincount(target[keep].astype(np.int64) * (NUM_CLASSES + 1) + pred,
                          minlength=NUM_CLASSES * (NUM_CLASSES + 1)).reshape(cm.shape)
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(1) + cm[:, :NUM_CLASSES].sum(0) - tp       # a void prediction is a miss (FN)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(100 * np.nanmean(np.where(union > 0, tp / union, np.nan)))


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dataset.synthetic", description=(
        "Write the deterministic synthetic street-video dataset in the Cityscapes layout "
        "(plus true flow and per-frame labels under extras/). Same arguments -> same bytes."))
    p.add_argument("--out", default="data/synthetic", help="Output folder (default: %(default)s). "
                   "A previous synthetic dataset there is replaced; other non-empty folders are refused.")
    p.add_argument("--num-train", type=int, default=24, help="Training snippets (default: %(default)s).")
    p.add_argument("--num-val", type=int, default=8, help="Validation snippets (default: %(default)s).")
    p.add_argument("--height", type=int, default=256, help="Frame height in pixels (default: %(default)s).")
    p.add_argument("--width", type=int, default=512, help="Frame width in pixels (default: %(default)s); "
                   "keep width = 2*height for Cityscapes-like framing.")
    p.add_argument("--num-frames", type=int, default=30,
                   help="Frames per snippet (default: %(default)s, as Cityscapes).")
    p.add_argument("--gt-index", type=int, default=19, help="Index of the annotated frame in its snippet "
                   "(default: %(default)s, as Cityscapes); distances up to this value stay in the snippet.")
    p.add_argument("--seed", type=int, default=0, help="Random seed (default: %(default)s).")
    p.add_argument("--workers", type=int, default=None, help="Worker processes (default: up to 2); "
                   "the output does not depend on it.")
    p.add_argument("--overwrite", action="store_true", help="Write into a non-empty folder that is not "
                   "a synthetic dataset (nothing is deleted there). Default: refuse.")
    p.add_argument("--skip-existing", action="store_true", help="Do nothing when --out already holds a "
                   "complete dataset made with the same parameters.")
    p.add_argument("--check", action="store_true", help="Afterwards print the label-copy and true-flow "
                   "warp mIoU on val for distances 0..4 (how much the motion costs).")
    p.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    params = dict(num_train=args.num_train, num_val=args.num_val, height=args.height, width=args.width,
                  num_frames=args.num_frames, gt_index=args.gt_index, seed=args.seed)
    if args.skip_existing and dataset_matches(args.out, **params):
        print(f"{args.out}: synthetic dataset with these parameters already exists; nothing to do")
    else:
        try:
            generate(args.out, **params, progress=not args.no_progress, overwrite=args.overwrite,
                     workers=args.workers)
        except (RuntimeError, ValueError) as err:
            raise SystemExit(f"error: {err}")
        print(f"wrote {args.num_train} train + {args.num_val} val snippets to {args.out}")
    if args.check:
        split = "val" if args.num_val else "train"
        for k in range(min(4, args.gt_index) + 1):
            print(f"{split} distance {k}: copy mIoU {copy_baseline_miou(args.out, split, k):.1f}, "
                  f"true-flow warp mIoU {copy_baseline_miou(args.out, split, k, warp=True):.1f}")


if __name__ == "__main__":
    main()
