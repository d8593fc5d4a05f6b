"""Accuracy-budget search: pure choices, and a measured search on the digits net."""

from __future__ import annotations

from typing import Any

import pytest

from device_agent.errors import EdgeError
from edge_sdk.model.data import Dataset
from edge_sdk.passes.base import PassContext
from edge_sdk.recipe.search import (
    SearchConfig,
    back_off,
    float_budget,
    format_steps,
    from_flags,
    pick_ratios,
    plan,
    search,
)
from tests.compress.conftest import context

SENS = {"a": {0.25: 0.0, 0.5: 0.4, 0.75: 3.0}, "b": {0.25: 0.1, 0.5: 0.9, 0.75: 5.0}}


def test_pick_and_back_off() -> None:
    assert pick_ratios(SENS, 0.5) == {"a": 0.5, "b": 0.25}
    assert pick_ratios(SENS, 0.0) == {"a": 0.25, "b": 0.0}
    # a at 0.5 costs 0.4, b at 0.25 costs 0.1: a steps down first
    assert back_off({"a": 0.5, "b": 0.25}, SENS) == {"a": 0.25, "b": 0.25}
    assert back_off({"a": 0.25, "b": 0.25}, SENS) == {"a": 0.25, "b": 0.0}
    assert back_off({"a": 0.0, "b": 0.0}, SENS) is None


def test_search_within_budget(lenet: Any, digits: Any) -> None:
    seen: list[str] = []
    test = Dataset(digits.x_test, digits.y_test, "test")  # held out: lenet never saw it
    ctx = PassContext(calibration=context(digits).calibration, validation=test,
                      progress=lambda d, i, n: seen.append(d))
    cfg = SearchConfig(max_drop=1.0, ratios=(0.25, 0.5, 0.75), clusters=(4, 8), share_fine_tune_steps=30)
    res = search(lenet, ctx, cfg)
    print("\n" + format_steps(res), res.layer_ratios, res.clusters)
    base, *rest = res.steps
    assert base.drop == 0 and rest[0].name == "prune"
    # the recipe ends within budget; a step over it is a prune that distillation recovered
    assert rest[-1].drop <= 1.0
    assert all(s.drop <= 1.0 or (s.name == "prune" and rest[i + 1].name == "distill") for i, s in enumerate(rest))
    assert len(res.models) == len(rest)
    assert rest[-1].params < base.params and rest[0].macs < base.macs
    assert set(res.sensitivity) == {"c1", "c2", "fc1"}
    assert dict(res.layer_ratios) and all(r in (0.0, 0.25, 0.5, 0.75) for _, r in res.layer_ratios)
    assert "search: sensitivity" in seen


def test_lowrank_step_only_within_budget(lenet: Any, digits: Any) -> None:
    from edge_sdk.recipe.search import _evaluator, _lowrank_within

    ctx = context(digits)
    ev = _evaluator(lenet, ctx)
    loose = _lowrank_within(lenet, ctx, SearchConfig(max_drop=100.0, lowrank=(0.3, 0.9)), ev)
    assert [s.name for s, _ in loose] == ["lowrank"] and loose[0][0].detail.startswith("30% of SVD energy")
    assert loose[0][1].get_layer("fc1_lowrank") is not None
    assert loose[0][0].params < ev.step("baseline", "", lenet).params
    # keeping 30% of fc1's energy costs accuracy: with no budget, no factorization is chosen
    assert loose[0][0].drop > 0
    assert _lowrank_within(lenet, ctx, SearchConfig(max_drop=0.0, lowrank=(0.3,)), ev) == []


def test_budget_no_recipe_meets(lenet: Any, digits: Any) -> None:
    # 97% of every group's channels, 5% of the SVD energy and 2 values per kernel without
    # fine-tuning: no step is lossless
    cfg = SearchConfig(max_drop=0.0, ratios=(0.97,), clusters=(2,), share_fine_tune_steps=0, distill=None,
                       lowrank=(0.05,))
    with pytest.raises(EdgeError, match=r"--max-drop 0.0: nothing met the budget; the cheapest pruning "
                       r"\(\w+ at 97%\) costs [\d.]+ points; sharing at 2 clusters costs [\d.]+"):
        plan(lenet, context(digits), cfg)


def test_float_budget_and_flags() -> None:
    assert float_budget(0.5, int8=False) == 0.5
    assert float_budget(0.5, int8=True) == pytest.approx(0.3)
    assert from_flags(None, None, False, True) is None  # no --max-drop: no search
    assert from_flags(None, 0.5, True, True) is None  # chosen steps: --max-drop is the int8 budget
    cfg = from_flags(None, 0.5, False, True)
    assert cfg is not None and cfg.max_drop == pytest.approx(0.3)
    assert from_flags(False, 0.5, False, True) is None
    with pytest.raises(EdgeError, match="leave out --prune/--share/--lowrank"):
        from_flags(True, 0.5, True, False)
    with pytest.raises(EdgeError, match=r"--max-drop must be >= 0 points, got -0\.1"):
        from_flags(None, -0.1, False, False)


def test_bad_search_config() -> None:
    with pytest.raises(EdgeError, match="--max-drop must be >= 0"):
        SearchConfig(max_drop=-1)
    with pytest.raises(EdgeError, match="increasing and in"):
        SearchConfig(ratios=(0.5, 0.25))
    with pytest.raises(EdgeError, match="low-rank energies must be increasing"):
        SearchConfig(lowrank=(0.9, 0.5))
