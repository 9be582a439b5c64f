"""`make keyframes`: GSVNet on top of different keyframe nets, each trained from scratch on the same budget.

    python -m tools.keyframes [--nets SPEC ...] [--budget-seconds 180] [--prop-budget-seconds 150] [--quick]

For every keyframe-net spec (models/keyframe_net.py; default SwiftNet-R18, PIDNet-S and torchvision's
LR-ASPP MobileNetV3-Large), on the synthetic dataset (data/synthetic, generated as `make demo` does when
missing, reused when present):
1. train the keyframe net from scratch with the demo's recipe for --budget-seconds seconds of training
   (`--train-segnet 1 --time-budget S`; the poly LR decays over the budget, so every net ends its
   schedule when its time is up);
2. train its propagation modules (light flow + GSV, keyframe net frozen) with the demo's shortcuts and
   iterations (800 flow pre-training, 300 end to end), capped at the same --prop-budget-seconds for
   every net;
3. evaluate (scale 0.75): the keyframe net alone (k = 0), GSVNet at k = 0..4 (l = 3 and l = 4 avg/min,
   k = 4), warp-only and copy at the single distance k = 4;
4. `--benchmark 1` at 1024×2048 with the trained files: per-frame times, speedups, FLOPs and parameters.
Writes results/keyframes.md (tables, budgets, CPU model, date, every command) and results/keyframes.png
(avg mIoU vs frames/s at l = 1, 3, 4, one curve per keyframe net). --quick: a tiny dataset and
seconds-long stages, to check the tool end to end (numbers meaningless).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from main import main as cli
from engine.training.segnet import weights_name
from models.keyframe_spec import parse_spec, spec_dirname
from tools.demo import GSVNET_ARGS, NUM_TRAIN, NUM_VAL, SEGNET_ARGS
from utils.visualize import save_figure

NETS = {"swiftnet": "SwiftNet-R18", "pidnet_s": "PIDNet-S",
        "torchvision:lraspp_mobilenet_v3_large": "LR-ASPP MobileNetV3-L"}
QUICK_DATA = dict(num_train=2, num_val=1, height=64, width=128, num_frames=6, gt_index=4)
EPOCHS_UNTIL_BUDGET = "1000"  # the time budget, not the epoch count, ends keyframe-net training
INTERVALS = ("1", "3", "4")  # plotted keyframe intervals l (l = 1: keyframe net alone)


def override(argv: list[str], **flags: str) -> list[str]:
    """argv with each single-valued flag (``max_iters`` -> ``--max-iters``) set to a new value."""
    out = list(argv)
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if flag in out:
            out[out.index(flag) + 1] = str(value)
        else:
            out += [flag, str(value)]
    return out


def settings(args: argparse.Namespace) -> dict[str, list[str]]:
    """Flags of each stage: the demo's recipes (tools/demo.py), with the budgets of this comparison."""
    segnet = override(SEGNET_ARGS, epoch=EPOCHS_UNTIL_BUDGET, time_budget=f"{args.budget_seconds:g}")
    prop = override(GSVNET_ARGS, time_budget=f"{args.prop_budget_seconds:g}")
    bench = ["--bench-scales", "0.75", "--bench-repeats", str(args.bench_repeats)]
    common = ["--dataset", "synthetic", "--data-path", args.data, "--log-folder", args.logs, "--num-worker", "2"]
    if args.quick:
        segnet = override(segnet, batch_size=2)
        prop = override(prop, batch_size=2, max_iters=3, pretrain_flow_iters=3)
        bench = override(bench, bench_height=64, bench_width=128, bench_repeats=1)
        common = override(common, num_worker=0)
    return {"common": common, "segnet": segnet, "prop": prop, "bench": bench}


def ensure_data(args: argparse.Namespace) -> None:
    from dataset.synthetic import dataset_matches, generate
    params = QUICK_DATA if args.quick else dict(num_train=NUM_TRAIN, num_val=NUM_VAL)
    if dataset_matches(args.data, **params):
        print(f"keyframes: using the synthetic dataset in {args.data}")
        return
    generate(args.data, **params, overwrite=True, progress=not args.quick)


def stage(name: str, argv: list[str], log: dict) -> float:
    """Run ``python main.py argv`` in-process, print and record the command; returns its wall seconds."""
    print(f"\n=== keyframes: {name}\n$ python main.py {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    if cli(argv):
        raise SystemExit(f"keyframes: stage '{name}' failed")
    log["commands"].append(f"python main.py {' '.join(argv)}")
    log["seconds"][name] = time.perf_counter() - start
    return log["seconds"][name]


def run_folder(args, spec: str, checkname: str) -> Path:
    return Path(args.logs) / "run" / "synthetic" / f"{spec_dirname(parse_spec(spec))}_{checkname}"


def train_net(args, s: dict, spec: str, log: dict) -> dict:
    """Keyframe net, then its propagation modules; the files and how far each stage got."""
    from utils.checkpoint import load_file
    base = s["common"] + ["--segnet", spec]
    seconds = stage(f"train {spec}", base + ["--train-segnet", "1", "--checkname", "kf_segnet"] + s["segnet"], log)
    seg_dir = run_folder(args, spec, "kf_segnet")
    seg_ckpt = load_file(seg_dir / "segnet_checkpoint.pth.tar")
    segnet = str(seg_dir / weights_name(parse_spec(spec), best=True))
    prop_seconds = stage(f"train {spec} propagation",
                         base + ["--segnet-weights", segnet, "--checkname", "kf"] + s["prop"], log)
    prop_dir = run_folder(args, spec, "kf")
    prop_ckpt = load_file(prop_dir / "checkpoint.pth.tar")
    return {"segnet": segnet, "gsvnet": str(prop_dir / "model_best.pth.tar"), "segnet_iters": int(seg_ckpt["step"]),
            "segnet_epochs": int(seg_ckpt["epoch"]), "prop_iters": int(prop_ckpt["step"]),
            "segnet_stage_s": seconds, "prop_stage_s": prop_seconds}


EVALS = {  # name -> extra flags of `--evaluate 1` (all at scale 0.75, no temporal consistency)
    "keyframe": ["--keyframe-only", "1"],
    "gsv": ["--fusion", "gsv", "--eval-multi-step", "1", "2", "3", "4"],
    "warp": ["--fusion", "warp", "--eval-single", "0", "--eval-multi-step", "4"],
    "copy": ["--fusion", "copy", "--eval-single", "0", "--eval-multi-step", "4"],
}


def evaluate_net(args, s: dict, spec: str, files: dict, log: dict) -> dict[str, dict]:
    base = s["common"] + ["--segnet", spec, "--segnet-weights", files["segnet"], "--checkname", "kf", "--evaluate",
                          "1", "--batch-size", "4", "--eval-scale", "0.75", "--temporal-consistency", "0"]
    out = {}
    for name, flags in EVALS.items():
        resume = [] if name == "keyframe" else ["--resume", files["gsvnet"]]
        stage(f"evaluate {spec} {name}", base + ["--ResFolderName", f"kf_{name}"] + resume + flags, log)
        path = run_folder(args, spec, "kf") / f"eval_kf_{name}" / "metrics.json"
        out[name] = json.loads(path.read_text())
    return out


def benchmark_net(args, s: dict, spec: str, files: dict, log: dict) -> dict:
    folder = Path(args.out) / "keyframes_bench" / spec_dirname(parse_spec(spec))
    argv = ["--benchmark", "1", "--dataset", "synthetic", "--segnet", spec, "--segnet-weights", files["segnet"],
            "--resume", files["gsvnet"], "--results-dir", str(folder)] + s["bench"]
    stage(f"benchmark {spec}", argv, log)
    return json.loads(next(folder.glob("bench_*.json")).read_text())


def summarise(spec: str, files: dict, evals: dict, bench: dict) -> dict:
    """One plain row of numbers per keyframe net (what the writers read)."""
    gsv = evals["gsv"]["intervals"]
    rows = {str(r["l"]): r for r in bench["throughput"]["0.75"]}
    height, width = bench["settings"]["frame_size"]
    return {"label": NETS.get(spec, spec), "spec": spec, "frame_size": f"{height}×{width}",
            "keyframe_miou": evals["keyframe"]["per_distance"]["0"]["miou"],
            "l3": [gsv["3"]["avg_miou"], gsv["3"]["min_miou"]], "l4": [gsv["4"]["avg_miou"], gsv["4"]["min_miou"]],
            "k4": {f: evals[f]["per_distance"]["4"]["miou"] for f in ("gsv", "warp", "copy")},
            "key_ms": bench["times_ms"]["keyframe"]["0.75"]["step_labels"]["median_ms"],
            "nonkey_ms": bench["times_ms"]["nonkeyframe"]["step_labels"]["median_ms"],
            "fps": {l: rows[l]["fps"] for l in INTERVALS},
            "speedup": {l: rows[l]["speedup"] for l in ("3", "4")},
            "limit": {l: rows[l]["flop_ratio_limit"] for l in ("3", "4")},
            "key_gmacs": bench["flops"]["keyframe"]["0.75"]["gmacs"],
            "nonkey_gmacs": bench["flops"]["nonkeyframe"]["gmacs"],
            "segnet_params": bench["params"]["segnet"]["count"], "total_params": bench["params"]["total"]["count"],
            **{k: files[k] for k in ("segnet_iters", "segnet_epochs", "prop_iters", "segnet_stage_s", "prop_stage_s")}}


def _f(x, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def tables(rows: list[dict]) -> list[str]:
    acc = ["| keyframe net | keyframe only (l=1) | GSVNet l=3 avg / min | GSVNet l=4 avg / min | k=4: GSVNet / "
           "warp-only / copy | keyframe-net iterations (epochs) | propagation iterations |", "|---" * 7 + "|"]
    acc += [f"| {r['label']} | {_f(r['keyframe_miou'])} | {_f(r['l3'][0])} / {_f(r['l3'][1])} | {_f(r['l4'][0])} / "
            f"{_f(r['l4'][1])} | {_f(r['k4']['gsv'])} / {_f(r['k4']['warp'])} / {_f(r['k4']['copy'])} | "
            f"{r['segnet_iters']} ({r['segnet_epochs']}) | {r['prop_iters']} |" for r in rows]
    speed = ["| keyframe net | params (keyframe net / all) | GMACs keyframe / non-keyframe | keyframe ms | "
             "non-keyframe ms (% of keyframe) | FPS l=1 / 3 / 4 | speedup l=3 (FLOP limit) | "
             "speedup l=4 (FLOP limit) |",
             "|---" * 8 + "|"]
    speed += [f"| {r['label']} | {r['segnet_params'] / 1e6:.2f} M / {r['total_params'] / 1e6:.2f} M | "
              f"{r['key_gmacs']:.2f} / {r['nonkey_gmacs']:.2f} | {r['key_ms']:.1f} | {r['nonkey_ms']:.1f} "
              f"({100 * r['nonkey_ms'] / r['key_ms']:.1f} %) | " + " / ".join(_f(r['fps'][l], 2) for l in INTERVALS)
              + " | " + " | ".join(f"{r['speedup'][l]:.2f}× ({r['limit'][l]:.2f}×)" for l in ("3", "4")) + " |"
              for r in rows]
    return acc + [""] + speed


def notes(rows: list[dict]) -> list[str]:
    """What the numbers say, generated from them: where the propagation gains less, and why."""
    lines = []
    for r in rows:
        change = (r["l3"][0] - r["keyframe_miou"]) if None not in (r["l3"][0], r["keyframe_miou"]) else None
        lines.append(f"- {r['label']}: a non-keyframe costs {100 * r['nonkey_ms'] / r['key_ms']:.1f} % of a keyframe, "
                     f"so l = 3 runs {r['speedup']['3']:.2f}× faster than the keyframe net alone, for "
                     f"{'—' if change is None else f'{change:+.1f}'} points of avg mIoU.")
    if len(rows) > 1:
        least = min(rows, key=lambda r: r["speedup"]["3"])
        why = (f"the non-keyframe path (flow + warp + GSV, {least['nonkey_gmacs']:.2f} GMACs) does the same work "
               "whatever the keyframe net, so the cheaper the keyframe net, the less is left to save"
               if least is min(rows, key=lambda r: r["key_ms"]) else
               "its non-keyframe step is the largest share of its keyframe time, although its keyframe net is not "
               "the fastest here (check the timing noise)")
        lines.append(f"- The propagation gains least with {least['label']} ({least['speedup']['3']:.2f}× at l = 3): "
                     f"{why}.")
    worse = [r["label"] for r in rows if None not in r["k4"].values() and r["k4"]["gsv"] <= r["k4"]["warp"]]
    if worse:
        lines.append(f"- At k = 4 GSVNet scores at or below warp-only for {', '.join(worse)}: in this budget the "
                     "GSV fusion learned nothing over the warped keyframe logits there.")
    iters = {r["prop_iters"] for r in rows}
    lines.append(f"- Propagation: every net got the same {iters.pop()} end-to-end iterations." if len(iters) == 1 else
                 "- Propagation: the time budget ended the nets' end-to-end training after different numbers of "
                 "iterations (last column of the first table); a slower keyframe net also fills the keyframe-logit "
                 "cache more slowly.")
    return lines


def write_markdown(rows: list[dict], meta: dict, path: Path) -> Path:
    lines = ["# GSVNet with different keyframe nets (generated by `make keyframes`)", "",
             f"{meta['date']}, {meta['cpu']} ({meta['threads']} threads), torch {meta['torch']}. Synthetic validation "
             f"split ({meta['data']}); every keyframe net trained from scratch for **{meta['budget_s']:g} s** of "
             f"training (`--time-budget {meta['budget_s']:g}`; the demo's recipe otherwise, its poly LR decaying over "
             "the budget), then its propagation modules (light flow + GSV) with the demo's shortcuts and iterations, "
             f"capped at the same **{meta['prop_budget_s']:g} s** each (`--time-budget`, flow pre-training "
             "included). mIoU in %, keyframes at scale 0.75; l = keyframe interval (avg pools k = 0..l−1, min is "
             "k = l−1).", ""]
    lines += tables(rows) + [""]
    lines += [f"Times: `--benchmark 1` at {meta['frame_size']}, batch 1, float32, CPU, medians of step + labels; "
              "speedup over the keyframe net alone, FLOP limit = the speedup if time followed FLOPs. The l = 3 "
              "figures pool k = 0..2 of the `--eval-multi-step 1 2 3 4` run, the same numbers `--eval-multi-step "
              "1 2` gives; warp-only and copy are evaluated at the single distance 4 (keyframe GT−4), the same "
              "figure the demo's k = 4 column reports.", "", "## Notes", ""] + notes(rows)
    if meta.get("quick"):
        lines += ["- **--quick run**: tiny dataset and seconds-long stages; the numbers only show that the tool works."]
    lines += ["", "## Commands", ""] + [f"    {c}" for c in meta["commands"]]
    lines += ["", "## Stage times (s)", ""] + [f"- {k}: {v:.0f}" for k, v in meta["seconds"].items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_plot(rows: list[dict], meta: dict, path: Path) -> Path:
    """Avg mIoU vs frames/s at l = 1 (keyframe net alone), 3 and 4, one curve per keyframe net."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for r in rows:
        xs = [r["fps"][l] for l in INTERVALS]
        ys = [r["keyframe_miou"], r["l3"][0], r["l4"][0]]
        ax.plot(xs, ys, "o-", label=r["label"])
        for l, x, y in zip(INTERVALS, xs, ys):
            ax.annotate(f"l={l}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(f"frames / s ({meta['frame_size']}, {meta['cpu']}, {meta['threads']} threads)", fontsize=8)
    ax.set_ylabel("avg mIoU (%), synthetic val")
    ax.set_title(f"GSVNet per keyframe net ({meta['budget_s']:g} s keyframe + {meta['prop_budget_s']:g} s "
                 "propagation training each)" + (" — --quick, meaningless" if meta.get("quick") else ""), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        text = ""
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name:")]
    return names[0] if names else (platform.processor() or platform.machine())


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", default=list(NETS), help="keyframe-net specs (--segnet syntax)")
    p.add_argument("--budget-seconds", type=float, default=180.0,
                   help="training seconds of each keyframe net (the same for all; ~3 min keeps the run under 25 min)")
    p.add_argument("--prop-budget-seconds", type=float, default=150.0,
                   help="training seconds of each net's propagation modules (flow pre-training included); a cap "
                        "on the demo's 300 end-to-end iterations, so that normally every net gets all 300")
    p.add_argument("--bench-repeats", type=int, default=3, help="timed rounds of the benchmark (medians)")
    p.add_argument("--quick", action="store_true", help="tiny dataset and budgets: checks the tool, not the nets")
    p.add_argument("--data", default=None, help="synthetic dataset folder (default data/synthetic, with --quick "
                                                "<logs>/keyframes_quick_data; generated if missing)")
    p.add_argument("--logs", default="logs", help="--log-folder of every stage")
    p.add_argument("--out", default=None, help="where keyframes.md, keyframes.png and the benchmarks go (default "
                                               "results; with --quick <logs>/keyframes_quick, not to overwrite them)")
    args = p.parse_args(argv)
    if min(args.budget_seconds, args.prop_budget_seconds) <= 0:
        p.error("--budget-seconds and --prop-budget-seconds must be > 0 (they are what ends training)")
    if args.quick:
        args.budget_seconds = min(args.budget_seconds, 2.0)
        args.prop_budget_seconds = min(args.prop_budget_seconds, 2.0)
    args.data = args.data or (str(Path(args.logs) / "keyframes_quick_data") if args.quick else "data/synthetic")
    args.out = args.out or (str(Path(args.logs) / "keyframes_quick") if args.quick else "results")
    return args


def main(argv=None) -> int:
    import torch
    args = parse_args(argv)
    start, log = time.perf_counter(), {"commands": [], "seconds": {}}
    ensure_data(args)
    s = settings(args)
    rows = []
    for spec in args.nets:
        files = train_net(args, s, spec, log)
        rows.append(summarise(spec, files, evaluate_net(args, s, spec, files, log),
                              benchmark_net(args, s, spec, files, log)))
    log["seconds"]["total"] = time.perf_counter() - start
    meta = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "data": args.data, "budget_s": args.budget_seconds,
            "prop_budget_s": args.prop_budget_seconds, "frame_size": rows[0]["frame_size"], "quick": args.quick, **log}
    out = Path(args.out)
    md, png = write_markdown(rows, meta, out / "keyframes.md"), write_plot(rows, meta, out / "keyframes.png")
    print("\n".join(tables(rows) + [""] + notes(rows)) + f"\n\nkeyframes: wrote {md} and {png} "
          f"({log['seconds']['total']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
