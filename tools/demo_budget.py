"""How much of its training recipe `make demo` can afford on this machine, so it ends in 10 minutes anywhere.

A CPU without native bf16 runs the keyframe-net stage in fp32 (``--amp 1`` falls back, engine.training.losses), and
an older CPU runs fp32 itself several times slower than the machine the recipe was tuned on. Before any
work the demo times a few training steps (``probe``): SwiftNet-R18 forward + backward with ``--amp 1`` as it
takes effect here and in fp32. The ratios to the same probe on the reference machine estimate every stage's
time here (the keyframe-net stage scales with the AMP probe, all others with the fp32 one). When the
estimate exceeds TARGET_SECONDS, the "without intra" ablation is skipped first, then the two remaining
training stages get a wall-clock budget (``--time-budget``; the GSVNet stage, which the demo's checks judge,
first: ``shares``) and the flow pre-training the GSVNet stage's share of its iterations; evaluation,
benchmark and video are never cut. ``plan`` is pure; the demo prints its lines.

The reference figures are the demo's own stage times (results/demo.md) and this probe, measured together
on the project's machine (REFERENCE_CPU) with nothing else running.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

REFERENCE_CPU = "AMD EPYC (family 25 model 17), native bf16, 2 cores"
REFERENCE_PROBE = {"amp": 0.148, "fp32": 0.248}  # seconds of probe() there
KEYFRAME, GSVNET, ABLATION = "train keyframe net", "train GSVNet", "train GSVNet without intra"  # stage names
REFERENCE_STAGES = {                             # seconds of each demo stage there, recipe uncut (2026-12-05)
    "generate data": 19.0,
    KEYFRAME: 338.0,
    GSVNET: 206.0,
    ABLATION: 185.0,
    "evaluate": 64.0,                            # the six evaluations together
    "benchmark and video": 4.0,
}
AMP_STAGES = (KEYFRAME,)
TRAINING_STAGES = (KEYFRAME, GSVNET, ABLATION)
TARGET_SECONDS = 510.0       # 10 minutes less a margin for what the estimate misses (start-up, loaders)
MIN_FRACTION = 0.05          # below this a stage would not learn anything worth checking
GSVNET_SHARE = 0.5           # when even the two main stages do not fit: the GSVNet stage's share of the time
SMALL_CROPS_BELOW = 0.5      # a keyframe-net stage cut below this share trains on SMALL_CROPS instead
SMALL_CROPS = ["--crop-height", "96", "--crop-width", "192", "--batch-size", "16"]  # half the pixels per step


@dataclass(frozen=True)
class Plan:
    """fractions: share of each training stage's recipe kept (1 = uncut, 0 = skipped); budgets: --time-budget
    seconds per training stage (None = no budget); estimate_s: expected demo seconds with the plan; factors:
    AMP/fp32 slowdowns against the reference machine."""
    fractions: dict[str, float]
    budgets: dict[str, float | None]
    estimate_s: float
    factors: dict[str, float]

    @property
    def scaled(self) -> bool:
        return any(f < 1.0 for f in self.fractions.values())

    def skipped(self, stage: str) -> bool:
        return self.fractions[stage] == 0.0

    @property
    def small_crops(self) -> bool:
        """The keyframe net learns on SMALL_CROPS: with a few dozen steps, 96×192 crops, 16 a batch, reached
        24.9 mIoU in the 36.7 s where the recipe's 192×384, 8 a batch, reached 18.6 (synthetic val, fp32)."""
        return self.fractions[KEYFRAME] < SMALL_CROPS_BELOW


def cpu_description() -> str:
    """CPU model (with family/model numbers, which tell AMD generations apart) and whether bf16 is native."""
    import platform
    import re
    from pathlib import Path

    from engine.training.losses import cpu_has_native_bf16
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    field = {k: (re.search(rf"^{k}\s*:\s*(.+)$", info, re.MULTILINE) or [None, None])[1]
             for k in ("model name", "cpu family", "model")}
    name = field["model name"] or platform.processor() or platform.machine()
    if field["cpu family"] and field["model"]:
        name += f" (family {field['cpu family']} model {field['model']})"
    return name + (", native bf16" if cpu_has_native_bf16() else ", no native bf16")


def probe(steps: int = 3) -> dict[str, float]:
    """Seconds of one SwiftNet-R18 training step (batch 4, 128×256, Adam) with --amp 1 as it takes effect on
    this CPU ("amp") and in fp32 ("fp32"): the fastest of ``steps`` steps after one warm-up step each (the
    fastest, so that a moment of other load does not make the machine look slow)."""
    from engine.training.losses import amp_active, autocast
    from models.swiftnet import SwiftNet
    cpu = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 128, 256, generator=generator).contiguous(memory_format=torch.channels_last)
    result = {}
    for name, amp in (("fp32", False), ("amp", True)):
        if name == "amp" and not amp_active(cpu, True):
            result[name] = result["fp32"]  # falls back to fp32 here: the same work
            continue
        torch.manual_seed(0)
        net = SwiftNet(19).train().to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(net.parameters(), 1e-3)
        times = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            with autocast(cpu, amp):
                out = net(x)
            loss = out.float().square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        result[name] = min(times[1:])
    return result


def shares(estimate: dict[str, float], available: float) -> dict[str, float]:
    """The share of each training stage's recipe that fits ``available`` seconds, in this order of priority:
    the whole recipe; else without the ablation (it informs no check); else the GSVNet stage (what the checks
    judge) keeps max(GSVNET_SHARE of the time, what the whole keyframe-net stage leaves) and the keyframe net
    the rest; no kept stage below MIN_FRACTION."""
    if sum(estimate[s] for s in TRAINING_STAGES) <= available:
        return {s: 1.0 for s in TRAINING_STAGES}
    key, gsv = estimate[KEYFRAME], estimate[GSVNET]
    if key + gsv <= available:
        return {KEYFRAME: 1.0, GSVNET: 1.0, ABLATION: 0.0}
    gsv_s = min(gsv, max(GSVNET_SHARE * available, available - key))
    return {KEYFRAME: max(MIN_FRACTION, (available - gsv_s) / key), GSVNET: max(MIN_FRACTION, gsv_s / gsv),
            ABLATION: 0.0}


def plan(probed: dict[str, float], generate: bool, whole_recipe: bool = False) -> Plan:
    """The budgets that keep the estimated demo time within TARGET_SECONDS (``shares``); whole_recipe: no
    budget whatever the estimate (the demo's --whole-recipe)."""
    factors = {k: probed[k] / REFERENCE_PROBE[k] for k in ("amp", "fp32")}
    estimate = {s: t * factors["amp" if s in AMP_STAGES else "fp32"] for s, t in REFERENCE_STAGES.items()
                if generate or s != "generate data"}
    fixed = sum(estimate.values()) - sum(estimate[s] for s in TRAINING_STAGES) + sum(probed.values())
    kept = {s: 1.0 for s in TRAINING_STAGES} if whole_recipe else shares(estimate, TARGET_SECONDS - fixed)
    budgets = {s: (round(estimate[s] * f, 1) if 0.0 < f < 1.0 else None) for s, f in kept.items()}
    return Plan(kept, budgets, fixed + sum(estimate[s] * f for s, f in kept.items()), factors)


def describe(p: Plan) -> list[str]:
    """What the plan changes, for the console and results/demo.md."""
    speed = (f"this CPU runs the demo's training steps {p.factors['amp']:.2f}x (--amp 1 stage) / "
             f"{p.factors['fp32']:.2f}x (fp32 stages) the time of the reference machine ({REFERENCE_CPU})")
    if not p.scaled:
        return [speed + f"; the whole recipe fits (estimated {p.estimate_s / 60:.1f} min)."]
    kept = "; ".join(f"{s}: {_kept(p, s)}" for s in TRAINING_STAGES)
    return [speed + ".",
            f"To finish in about {TARGET_SECONDS / 60:.1f} min the training stages keep: {kept}. Evaluation, benchmark and video "
            f"are not cut. Estimated {p.estimate_s / 60:.1f} min; figures of such a run sit below the README's, "
            "which used the whole recipe."]


def _kept(p: Plan, stage: str) -> str:
    fraction = p.fractions[stage]
    if fraction == 0.0:
        return "skipped (its table row and the ablation with it)"
    if fraction == 1.0:
        return "the whole recipe"
    flow = ", flow pre-training the same share of its iterations" if stage != KEYFRAME else ""
    if stage == KEYFRAME and p.small_crops:
        flow = ", on 96×192 crops, 16 a batch"
    return f"{100 * fraction:.0f} % (--time-budget {p.budgets[stage]:g} s{flow})"
