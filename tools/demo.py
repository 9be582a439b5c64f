"""`make demo`: the whole job on the synthetic dataset, from nothing, on a CPU, in about 10 minutes.

    python -m tools.demo [--out results] [--data data/synthetic]

1. generate the synthetic dataset (Cityscapes layout) unless it is already there;
2. train the keyframe SwiftNet-R18 from scratch (no pretrained weights can be had here);
3. train the GSVNet propagation modules (light flow + GSV) with the keyframe net frozen, and the
   "without intra" ablation (paper Table 4);
4. evaluate GSVNet and the baselines (copy, warp-only, keyframe net alone at scales 0.5 and 0.75), with
   the temporal consistency (TC) of GSVNet, the two baselines and the keyframe net on every frame;
5. time every frame type at the demo frame size (engine.benchmarking.step_timing);
6. dump predictions of one validation snippet as an overlay video;
7. write results/demo.md, an accuracy-vs-throughput plot and a strip of predicted frames.
Every stage runs the same `main.py` command a user would type; each is printed before it runs.
Shortcuts (docs/deviations.md#demo-shortcuts, listed in results/demo.md): dense synthetic labels, cached keyframe logits,
flow pre-training on the generator's true flow, bf16 autocast, class weights, GSV started as identity.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from main import main as cli
from tools.demo_budget import ABLATION, GSVNET, KEYFRAME, SMALL_CROPS, Plan, describe, plan as make_plan, probe

STAGE_SECONDS: dict[str, float] = {}
# Training budget of the demo, tuned to about 10 minutes on a 2-core CPU (see README). Keyframe net:
# channels-last bf16 autocast on every frame of the synthetic snippets (--dense-labels 1).
SEGNET_ARGS = ["--epoch", "5", "--batch-size", "8", "--segnet-lr", "3e-3", "--dense-labels", "1", "--amp", "1",
               "--class-weights", "1"]
# Propagation: flow pre-trained on the true flow, whole frames (no crops) so the frozen keyframe net's
# logits can be cached, CE only (no distillation: every frame has labels), GSV started as the identity
# fusion (--gsv-init skip) so 300 iterations suffice. The flow pre-training holds all pairs in memory (fast).
FLOW_PRETRAIN_ITERS = 800
GSVNET_ARGS = ["--epoch", "1", "--max-iters", "300", "--batch-size", "8", "--class-weights", "1",
               "--dense-labels", "1", "--use-crop", "0", "--cache-keyframes", "1", "--distil", "0",
               "--gsv-init", "skip", "--pretrain-flow", "true", "--pretrain-flow-iters", str(FLOW_PRETRAIN_ITERS),
               "--multi-step", "1", "2", "3", "4", "--eval-multi-step", "1", "2", "3", "4"]
NUM_TRAIN, NUM_VAL = 24, 8


def run_stage(name: str, argv: list[str]) -> None:
    print(f"\n=== demo: {name}\n$ python main.py {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    code = cli(argv)
    STAGE_SECONDS[name] = time.perf_counter() - start
    if code:
        raise SystemExit(f"demo: stage '{name}' failed with exit code {code}")


def common_args(data: str, logs: str) -> list[str]:
    return ["--dataset", "synthetic", "--data-path", data, "--log-folder", logs, "--num-worker", "2"]


def ensure_dataset(data: str) -> None:
    from dataset.synthetic import dataset_matches, generate
    if dataset_matches(data, num_train=NUM_TRAIN, num_val=NUM_VAL):
        print(f"demo: using the synthetic dataset in {data}")
        return
    start = time.perf_counter()
    generate(data, num_train=NUM_TRAIN, num_val=NUM_VAL, overwrite=True)
    STAGE_SECONDS["generate data"] = time.perf_counter() - start


def metrics_of(logs: str, checkname: str, folder: str) -> dict:
    path = Path(logs) / "run" / "synthetic" / f"swiftnet_{checkname}" / f"eval_{folder}" / "metrics.json"
    return json.loads(path.read_text())


def budget_flags(plan: Plan, stage: str, slowdown: float = 1.0) -> list[str]:
    """--time-budget of a training stage, and for the propagation stages the flow pre-training iterations
    cut by the same fraction (tools/demo_budget.py); nothing when the whole recipe fits. slowdown (--slowdown):
    the plan is for a machine that many times slower, so this one gets the budget / slowdown, i.e. the same
    number of iterations that machine would run."""
    if plan.budgets[stage] is None:
        return []
    flags = ["--time-budget", f"{round(plan.budgets[stage] / slowdown, 1):g}"]
    if stage == KEYFRAME and plan.small_crops:
        flags += SMALL_CROPS
    if stage != KEYFRAME:
        flags += ["--pretrain-flow-iters", str(max(50, round(FLOW_PRETRAIN_ITERS * plan.fractions[stage])))]
    return flags


def train_all(data: str, logs: str, plan: Plan, slowdown: float = 1.0) -> tuple[str, str, str | None]:
    """The three training stages; the ablation's checkpoint is None when the plan skips it."""
    base = common_args(data, logs)
    run_stage(KEYFRAME, base + ["--train-segnet", "1", "--checkname", "demo_segnet"] + SEGNET_ARGS
              + budget_flags(plan, KEYFRAME, slowdown))
    segnet = str(Path(logs) / "run" / "synthetic" / "swiftnet_demo_segnet" / "segnet_best.pt")
    gsv = base + ["--segnet-weights", segnet] + GSVNET_ARGS
    run_stage(GSVNET, gsv + ["--checkname", "demo"] + budget_flags(plan, GSVNET, slowdown))
    run_dir = Path(logs) / "run" / "synthetic"
    if plan.skipped(ABLATION):
        print(f"\n=== demo: {ABLATION}: skipped by the training budget", flush=True)
        return segnet, str(run_dir / "swiftnet_demo" / "model_best.pth.tar"), None
    run_stage(ABLATION, gsv + ["--checkname", "demo_nointra", "--intra", "0"]
              + budget_flags(plan, ABLATION, slowdown))
    return segnet, str(run_dir / "swiftnet_demo" / "model_best.pth.tar"), \
        str(run_dir / "swiftnet_demo_nointra" / "model_best.pth.tar")


NO_TC = ["--temporal-consistency", "0"]
EVALS = {  # row name -> (checkname, extra flags); all at the paper's key scale 0.75 unless stated. Temporal
    # consistency (on by default, true flow here) for GSVNet, the two baselines and the keyframe net on
    # every frame (l = 1, the flicker baseline); off for the ablation and the 0.5 scale, which it would not inform
    "GSVNet": ("demo", ["--fusion", "gsv"]),
    "warp-only": ("demo", ["--fusion", "warp"]),
    "copy": ("demo", ["--fusion", "copy"]),
    "GSVNet w/o intra": ("demo_nointra", ["--fusion", "gsv", "--intra", "0"] + NO_TC),
    "SwiftNet-R18 @0.75": ("demo", ["--keyframe-only", "1", "--eval-scale", "0.75"]),
    "SwiftNet-R18 @0.5": ("demo", ["--keyframe-only", "1", "--eval-scale", "0.5"] + NO_TC),
}


def evaluate_all(data: str, logs: str, segnet: str, ckpts: dict[str, str | None]) -> dict[str, dict]:
    """The EVALS rows; a row whose checkpoint was not trained (None: the skipped ablation) is left out."""
    base = common_args(data, logs) + ["--segnet-weights", segnet, "--evaluate", "1", "--batch-size", "4"]
    results = {}
    for row, (checkname, flags) in EVALS.items():
        folder = "demo_" + row.replace(" ", "_").replace("/", "").replace("@", "s").replace(".", "")
        keyframe_only = "--keyframe-only" in flags
        if not keyframe_only and ckpts[checkname] is None:
            continue
        argv = base + ["--checkname", checkname, "--ResFolderName", folder] + flags
        if not keyframe_only:
            argv += ["--resume", ckpts[checkname], "--eval-multi-step", "1", "2", "3", "4"]
        run_stage(f"evaluate {row}", argv)
        results[row] = metrics_of(logs, checkname, folder)
    return results


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic", help="synthetic dataset folder (generated if missing)")
    p.add_argument("--logs", default="logs", help="--log-folder of every stage")
    p.add_argument("--out", default="results", help="where demo.md, the plot, the strip and the video go")
    p.add_argument("--slowdown", type=float, default=1.0,
                   help="plan the training budget for a CPU this many times slower than this one (with "
                        "GSVNET_NO_BF16=1: also without native bf16) and run the iterations that CPU would get, "
                        "to try the scaled recipe here; 1 = plan from the measured speed")
    p.add_argument("--whole-recipe", action="store_true",
                   help="train with the whole recipe whatever this CPU's speed (no time budget; may take longer "
                        "than 10 minutes)")
    return p.parse_args(argv)


def plan_budget(data: str, slowdown: float, whole_recipe: bool = False) -> Plan:
    """Time the probe, plan the training budget (tools/demo_budget.py) and print what it scales."""
    from dataset.synthetic import dataset_matches
    start = time.perf_counter()
    probed = {k: v * slowdown for k, v in probe().items()}
    STAGE_SECONDS["speed probe"] = time.perf_counter() - start
    plan = make_plan(probed, generate=not dataset_matches(data, num_train=NUM_TRAIN, num_val=NUM_VAL),
                     whole_recipe=whole_recipe)
    print("\n=== demo: training budget\n" + "\n".join(describe(plan)), flush=True)
    return plan


def main(argv=None) -> int:
    args = parse_args(argv)
    from tools.demo_report import benchmark_demo, dump_video, write_report
    start = time.perf_counter()
    plan = plan_budget(args.data, args.slowdown, args.whole_recipe)
    ensure_dataset(args.data)
    segnet, best, best_nointra = train_all(args.data, args.logs, plan, args.slowdown)
    results = evaluate_all(args.data, args.logs, segnet, {"demo": best, "demo_nointra": best_nointra})
    mark = time.perf_counter()
    bench = benchmark_demo(args.data, segnet, best, args.out)
    video = dump_video(args.data, args.logs, segnet, best, args.out)
    STAGE_SECONDS["benchmark and video"] = time.perf_counter() - mark
    STAGE_SECONDS["total"] = time.perf_counter() - start
    ok = write_report(results, bench, video, args, segnet, best, STAGE_SECONDS, describe(plan))
    print("demo: all checks passed" if ok else
          "demo: finished, but not every check passed (see the FAIL lines above and results/demo.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
