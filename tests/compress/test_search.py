"""Accuracy-budget search: pure choices, and a measured search on the digits net."""

from __future__ import annotations

from typing import Any

import pytest

from device_agent.errors import EdgeError
from edge_sdk.data import Dataset
from edge_sdk.passes.base import PassContext
from edge_sdk.search import SearchConfig, back_off, format_steps, pick_ratios, search
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
    assert all(s.drop <= 1.0 for s in rest)
    assert rest[-1].params < base.params and rest[0].macs < base.macs
    assert set(res.sensitivity) == {"c1", "c2", "fc1"}
    assert dict(res.layer_ratios) and all(r in (0.0, 0.25, 0.5, 0.75) for _, r in res.layer_ratios)
    assert "search: sensitivity" in seen


def test_budget_no_recipe_meets(lenet: Any, digits: Any) -> None:
    with pytest.raises(EdgeError, match=r"--max-drop 0.0: no pruning step stays within the budget"):
        search(lenet, context(digits), SearchConfig(max_drop=0.0, ratios=(0.97,), clusters=(4,)))


def test_bad_search_config() -> None:
    with pytest.raises(EdgeError, match="--max-drop must be >= 0"):
        SearchConfig(max_drop=-1)
    with pytest.raises(EdgeError, match="increasing and in"):
        SearchConfig(ratios=(0.5, 0.25))
