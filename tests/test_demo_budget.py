"""tools/demo_budget.py: the demo's training budget from a speed probe (pure planning, hand-checked)."""
import pytest

from tools import demo_budget as B
from tools.demo import budget_flags, FLOW_PRETRAIN_ITERS


def _probe(factor_amp: float, factor_fp32: float) -> dict[str, float]:
    return {"amp": B.REFERENCE_PROBE["amp"] * factor_amp, "fp32": B.REFERENCE_PROBE["fp32"] * factor_fp32}


def test_a_fast_cpu_keeps_the_whole_recipe():
    plan = B.plan(_probe(0.4, 0.4), generate=True)
    assert not plan.scaled and set(plan.fractions.values()) == {1.0} and set(plan.budgets.values()) == {None}
    expected = 0.4 * sum(B.REFERENCE_STAGES.values()) + sum(_probe(0.4, 0.4).values())
    assert plan.estimate_s == pytest.approx(expected)
    assert budget_flags(plan, "train GSVNet") == []


def test_reference_cpu_skips_the_ablation_and_cuts_the_keyframe_net_by_hand():
    """The reference machine's own uncut recipe (820 s) is over 10 minutes. Without the ablation there are
    510 - (19 + 64 + 4 + probe) = 423 s for 338 + 206 s of training: the GSVNet stage keeps its whole recipe
    (206 s < half of 423 s) and the keyframe net the 217 s left."""
    probed = _probe(1, 1)
    plan = B.plan(probed, generate=True)
    available = B.TARGET_SECONDS - (19 + 64 + 4 + probed["amp"] + probed["fp32"])
    assert plan.fractions == pytest.approx({B.KEYFRAME: (available - 206) / 338, B.GSVNET: 1.0, B.ABLATION: 0.0})
    assert plan.skipped(B.ABLATION) and plan.scaled and plan.estimate_s == pytest.approx(B.TARGET_SECONDS)
    assert plan.budgets == pytest.approx({B.KEYFRAME: available - 206, B.GSVNET: None, B.ABLATION: None}, abs=0.051)
    assert budget_flags(plan, B.GSVNET) == [] and not plan.small_crops  # 64 % of the keyframe net: its crops
    # --slowdown 2 plans for a CPU twice as slow and gives this one the iterations that CPU would run
    flags = budget_flags(plan, B.KEYFRAME, slowdown=2.0)
    assert float(flags[1]) == pytest.approx(plan.budgets[B.KEYFRAME] / 2, abs=0.051)
    whole = B.plan(probed, generate=True, whole_recipe=True)
    assert not whole.scaled and whole.estimate_s == pytest.approx(19 + 64 + 4 + sum(probed.values()) + 338 + 206 + 185)


def test_slow_cpu_gives_the_gsvnet_stage_half_of_the_time_by_hand():
    """A CPU 3x slower in fp32 and 5x slower in the --amp stage (no native bf16): (510 - 3 (64 + 4) - probe)
    seconds of training are split in halves between the keyframe net (338 * 5 s whole) and GSVNet (206 * 3 s)."""
    probed = _probe(5.0, 3.0)
    plan = B.plan(probed, generate=False)
    half = (B.TARGET_SECONDS - 3 * (64 + 4) - sum(probed.values())) / 2
    assert plan.fractions == pytest.approx({B.KEYFRAME: half / (338 * 5), B.GSVNET: half / (206 * 3), B.ABLATION: 0})
    assert plan.budgets[B.KEYFRAME] == pytest.approx(half, abs=0.051)
    assert plan.budgets[B.GSVNET] == pytest.approx(half, abs=0.051)
    assert plan.estimate_s == pytest.approx(B.TARGET_SECONDS)
    flags = budget_flags(plan, B.GSVNET)
    assert flags == ["--time-budget", f"{plan.budgets[B.GSVNET]:g}", "--pretrain-flow-iters",
                     str(round(FLOW_PRETRAIN_ITERS * half / (206 * 3)))]
    # a keyframe-net stage cut below SMALL_CROPS_BELOW (here 9 %) trains on the small crops
    assert plan.small_crops
    assert budget_flags(plan, B.KEYFRAME) == ["--time-budget", f"{plan.budgets[B.KEYFRAME]:g}"] + B.SMALL_CROPS
    text = B.describe(plan)[1]
    assert "train GSVNet without intra: skipped" in text and f"{plan.budgets[B.GSVNET]:g} s" in text


def test_the_gsvnet_stage_keeps_what_the_whole_keyframe_net_leaves():
    """When the keyframe net's whole recipe leaves more than half of the time, GSVNet gets all the rest."""
    estimate = {B.KEYFRAME: 100.0, B.GSVNET: 400.0, B.ABLATION: 300.0}
    assert B.shares(estimate, 300.0) == {B.KEYFRAME: 1.0, B.GSVNET: 0.5, B.ABLATION: 0.0}
    assert B.shares(estimate, 500.0) == {B.KEYFRAME: 1.0, B.GSVNET: 1.0, B.ABLATION: 0.0}
    assert B.shares(estimate, 800.0) == {B.KEYFRAME: 1.0, B.GSVNET: 1.0, B.ABLATION: 1.0}


def test_hopelessly_slow_cpu_keeps_the_minimum_share():
    plan = B.plan(_probe(100, 100), generate=True)
    assert plan.fractions == {B.KEYFRAME: B.MIN_FRACTION, B.GSVNET: B.MIN_FRACTION, B.ABLATION: 0.0}
    assert plan.estimate_s > B.TARGET_SECONDS


def test_probe_times_both_precisions(monkeypatch):
    monkeypatch.setenv("GSVNET_NO_BF16", "1")
    from engine.training import losses
    losses.cpu_has_native_bf16.cache_clear()
    try:
        probed = B.probe(steps=1)
    finally:
        monkeypatch.delenv("GSVNET_NO_BF16")
        losses.cpu_has_native_bf16.cache_clear()
    assert probed["amp"] == probed["fp32"] > 0       # no native bf16: --amp 1 is fp32, timed once
