"""The shipped-form search: pure choices (front, objective, limits) and flags."""

from __future__ import annotations

from typing import Any

import pytest

from device_agent.errors import EdgeError
from edge_sdk.recipe.shipped_search import (
    Candidate,
    Objective,
    Shipped,
    ShippedConfig,
    candidate_lines,
    choose,
    from_flags,
    hidden_dense,
    pareto,
)


def _c(i: int, acc: float, nbytes: int, ms: float, macs: int, base: float = 99.0) -> Candidate:
    return Candidate(i, 0.25 * i, None, Shipped(acc, nbytes, ms, 1000, macs), round(base - acc, 4))


CANDS = [
    _c(0, 99.0, 100_000, 0.30, 900),  # most accurate
    _c(1, 98.8, 40_000, 0.20, 500),
    _c(2, 98.8, 45_000, 0.25, 600),  # dominated by 1
    _c(3, 98.0, 20_000, 0.10, 200),  # smallest, over a 0.5 budget
    _c(4, 98.6, 30_000, 0.22, 300),
]


def test_the_front_drops_dominated_points() -> None:
    pts = [(c.shipped.bytes, c.shipped.accuracy, c.shipped.latency_ms) for c in CANDS]
    assert pareto(pts) == [3, 4, 1, 0]
    assert pareto([(1, 1.0, 1.0), (1, 1.0, 1.0)]) == [0, 1]  # equal points dominate neither


def test_objective_and_hard_limits_choose_among_the_budget() -> None:
    assert choose(CANDS, ShippedConfig(max_drop=0.5)) == 4  # smallest within 0.5 points
    assert choose(CANDS, ShippedConfig(max_drop=1.0)) == 3
    assert choose(CANDS, ShippedConfig(max_drop=0.5, objective=Objective.LATENCY)) == 1
    assert choose(CANDS, ShippedConfig(max_drop=0.5, objective=Objective.MACS)) == 4
    assert choose(CANDS, ShippedConfig(max_drop=0.5, max_latency_ms=0.21)) == 1
    assert choose(CANDS, ShippedConfig(max_drop=0.5, max_bytes=25_000)) is None


def test_flags() -> None:
    assert from_flags(None, None, False) is None  # no --max-drop, no limit: no search
    assert from_flags(None, 0.5, True) is None  # chosen steps: the budget checks them instead
    cfg = from_flags(None, 0.5, False)
    assert cfg is not None and cfg.max_drop == 0.5  # the whole budget: int8 is in every candidate
    lim = from_flags(None, None, False, objective="latency", max_latency_ms=2.0)
    assert lim is not None and lim.objective is Objective.LATENCY and lim.max_drop == 1.0
    with pytest.raises(EdgeError, match="--objective 'speed': expected size, latency or macs"):
        from_flags(None, 0.5, False, objective="speed")
    with pytest.raises(EdgeError, match="steer the --max-drop search"):
        from_flags(None, None, True, max_bytes=1000)
    with pytest.raises(EdgeError, match="--max-bytes must be a positive"):
        from_flags(None, 0.5, False, max_bytes=0)


def test_candidate_lines_mark_the_front_and_the_choice() -> None:
    summary = {"candidates": [c.row() for c in CANDS], "front": [3, 4, 1, 0], "chosen_index": 4,
               "seconds": 12.5, "objective": "size"}
    lines = candidate_lines(summary)
    assert lines[0].startswith("search: 5 candidates judged as shipped in 12.5s")
    marks = {ln[1:4].strip(): ln[0] for ln in lines[2:]}
    assert marks == {"0": "*", "1": "*", "2": " ", "3": "*", "4": ">"}


def test_limits_with_chosen_steps_are_refused_before_any_work(tmp_path: object) -> None:
    from pathlib import Path

    from typer.testing import CliRunner

    from edge_sdk.cli import app

    out = Path(str(tmp_path)) / "x.edgepkg"
    res = CliRunner().invoke(app, ["optimize", "m.keras", "--data", "d.npz", "--prune", "0.3",
                                   "--max-bytes", "1000", "-o", str(out)])
    assert res.exit_code == 2 and "steer the --max-drop search" in res.output
    res = CliRunner().invoke(app, ["optimize", "m.keras", "--data", "d.npz", "--objective", "speed",
                                   "-o", str(out)])
    assert res.exit_code == 2 and "--objective 'speed': expected size, latency or macs" in res.output
    assert not out.exists()


def test_dense_rows_name_the_hidden_dense_layers_and_say_so() -> None:
    import keras

    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                          keras.layers.Flatten(), keras.layers.Dense(16, name="fc1"),
                          keras.layers.Dense(12, name="fc2"), keras.layers.Dense(3, name="out")])
    assert hidden_dense(m) == ("fc1", "fc2")  # the output layer's units are the classes: never pruned
    conv_only = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                                  keras.layers.Dense(3)])
    assert hidden_dense(conv_only) == ()
    dense = Candidate(0, 0.9, 16, Shipped(99.0, 1000, 0.1, 10, 10), 0.0, dense_only=True)
    assert dense.label == "dense 90%, 16 clusters" and dense.row()["dense_only"] is True
    assert _c(2, 99.0, 1, 0.1, 1).label == "prune 50%, no sharing"
    with pytest.raises(EdgeError, match="dense ratios must be increasing"):
        ShippedConfig(dense_ratios=(0.9, 0.8))
    sparse = Candidate(1, 0.0, 8, Shipped(99.0, 1000, 0.1, 10, 10), 0.0, sparsity=0.97)
    assert sparse.label == "sparse 97%, 8 clusters" and sparse.row()["sparsity"] == 0.97
    with pytest.raises(EdgeError, match="sparsities must be increasing"):
        ShippedConfig(sparsities=(1.0,))


def _toy_search(config: ShippedConfig) -> Any:
    """The real search on a three-channel conv model, judged by Keras accuracy and weight
    count (bytes) on the selection split: which rows it walks, skips and recovers."""
    import keras
    import numpy as np

    from edge_sdk.model.data import Dataset
    from edge_sdk.passes.base import PassContext
    from edge_sdk.recipe.shipped_search import search

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(3, 3, name="conv"), keras.layers.ReLU(),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, name="out")])
    x = np.random.default_rng(0).random((64, 6, 6, 1), dtype=np.float32)
    cal, val = Dataset(x, (x.mean(axis=(1, 2, 3)) > 0.5).astype(np.int64), "toy").split(0.5, seed=0)

    def judge(m: Any) -> Shipped:
        acc = 100 * float(np.mean(np.argmax(m.predict(val.x, verbose=0), axis=1) == val.y))
        return Shipped(acc, m.count_params(), 0.1, m.count_params(), m.count_params())

    ctx = PassContext(calibration=cal, validation=val, teacher=model)
    return search(model, ctx, config, judge, judge(model).accuracy)


def test_ratios_that_remove_nothing_new_are_skipped_before_any_recovery() -> None:
    from edge_sdk.passes.distill.keras import DistillConfig

    # Three channels: 25% removes none (floor), 62.5% the same one as 50%.
    found = _toy_search(ShippedConfig(max_drop=100.0, ratios=(0.0, 0.25, 0.5, 0.625), clusters=(4,),
                                      distill=DistillConfig(epochs=1, patience=1), time_budget_s=None))
    assert [c.label for c in found.candidates] == ["no prune, no sharing", "no prune, 4 clusters",
                                                   "prune 50%, no sharing", "prune 50%, 4 clusters"]
    assert [s.split(":")[0] for s in found.skipped] == ["prune 25%", "prune 62.5%"]
    assert "it removes no channel" in found.skipped[0]
    assert "it removes the same channels as the ratio before" in found.skipped[1]
    assert len(found.recovery) == 1 and found.recovery[0].startswith("prune 50%: 1 of 1 epochs in ")
    lines = candidate_lines(found.summary())
    assert lines[-3].startswith("recovery prune 50%: 1 of 1 epochs") and lines[-1].startswith("skipped prune 62.5%")


def test_the_time_budget_keeps_the_cheap_row_and_names_the_rows_not_tried() -> None:
    from edge_sdk.passes.distill.keras import DistillConfig

    found = _toy_search(ShippedConfig(max_drop=100.0, ratios=(0.0, 0.5), clusters=(4,),
                                      distill=DistillConfig(epochs=1, patience=1), time_budget_s=1e-6))
    assert [c.label for c in found.candidates] == ["no prune, no sharing", "no prune, 4 clusters"]
    assert found.skipped[0].startswith("prune 50%: not tried, over the search's 1e-06 s time budget")
    assert found.recovery == ()
    assert candidate_lines(found.summary())[0].startswith("search: 2 candidates judged as shipped in ")
    assert " of a 1e-06 s time budget " in candidate_lines(found.summary())[0]
    with pytest.raises(EdgeError, match="search time budget must be > 0 seconds"):
        ShippedConfig(time_budget_s=0)
