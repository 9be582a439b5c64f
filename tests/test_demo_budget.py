"""tools/demo_budget.py: the demo's training budget from a speed probe (pure planning, hand-checked)."""
import pytest

from tools import demo_budget as B
from tools.demo import budget_flags, FLOW_PRETRAIN_ITERS


def _probe(factor_amp: float, factor_fp32: float) -> dict[str, float]:
    return {"amp": B.REFERENCE_PROBE["amp"] * factor_amp, "fp32": B.REFERENCE_PROBE["fp32"] * factor_fp32}


def test_a_fast_cpu_keeps_the_whole_recipe():
    plan = B.plan(_probe(0.4, 0.4), generate=True)
    assert plan.fraction == 1.0 and not plan.scaled and set(plan.budgets.values()) == {None}
    expected = 0.4 * sum(B.REFERENCE_STAGES.values()) + sum(_probe(0.4, 0.4).values())
    assert plan.estimate_s == pytest.approx(expected)
    assert budget_flags(plan, "train GSVNet") == []


def test_reference_cpu_is_scaled_to_the_target_by_hand():
    """The reference machine's own uncut recipe (820 s) is over 10 minutes: it keeps
    (510 - (19 + 64 + 4 + probe)) / (338 + 206 + 185) of its training."""
    probed = _probe(1, 1)
    plan = B.plan(probed, generate=True)
    fixed = 19 + 64 + 4 + probed["amp"] + probed["fp32"]
    assert plan.fraction == pytest.approx((B.TARGET_SECONDS - fixed) / (338 + 206 + 185))
    assert 0.5 < plan.fraction < 0.65 and plan.estimate_s == pytest.approx(B.TARGET_SECONDS)
    assert plan.budgets["train keyframe net"] == pytest.approx(338 * plan.fraction, abs=0.051)
    # --slowdown 2 plans for a CPU twice as slow and gives this one the iterations that CPU would run
    flags = budget_flags(plan, "train GSVNet", slowdown=2.0)
    assert float(flags[1]) == pytest.approx(plan.budgets["train GSVNet"] / 2, abs=0.051)
    whole = B.plan(probed, generate=True, whole_recipe=True)
    assert not whole.scaled and whole.estimate_s == pytest.approx(fixed + 338 + 206 + 185)


def test_slow_cpu_cuts_training_by_one_fraction_to_hit_the_target():
    """A CPU 3x slower in fp32 and 7.5x slower in the --amp stage (no native bf16): worked out by hand."""
    probed = _probe(7.5, 3.0)
    plan = B.plan(probed, generate=False)
    stages = {s: t for s, t in B.REFERENCE_STAGES.items() if s != "generate data"}
    est = {s: t * (7.5 if s in B.AMP_STAGES else 3.0) for s, t in stages.items()}
    training = sum(est[s] for s in B.TRAINING_STAGES)
    fixed = sum(est.values()) - training + sum(probed.values())
    fraction = (B.TARGET_SECONDS - fixed) / training
    assert plan.scaled and plan.fraction == pytest.approx(max(B.MIN_FRACTION, fraction))
    for s in B.TRAINING_STAGES:
        assert plan.budgets[s] == pytest.approx(est[s] * plan.fraction, abs=0.051)
    if fraction >= B.MIN_FRACTION:
        assert plan.estimate_s == pytest.approx(B.TARGET_SECONDS)
    flags = budget_flags(plan, "train GSVNet")
    assert flags[:2] == ["--time-budget", f"{plan.budgets['train GSVNet']:g}"]
    assert flags[3] == str(max(50, round(FLOW_PRETRAIN_ITERS * plan.fraction)))
    assert budget_flags(plan, "train keyframe net") == ["--time-budget", f"{plan.budgets['train keyframe net']:g}"]
    assert "keeps" in B.describe(plan)[1] and "--time-budget" in B.describe(plan)[1]


def test_hopelessly_slow_cpu_keeps_the_minimum_share():
    plan = B.plan(_probe(100, 100), generate=True)
    assert plan.fraction == B.MIN_FRACTION and plan.estimate_s > B.TARGET_SECONDS


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
