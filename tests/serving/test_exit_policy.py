"""The exit policy is pure: scores, strict thresholds, validation, offline cascade."""

from __future__ import annotations

import numpy as np
import pytest

from device_agent.errors import BundleError, EdgeError
from device_agent.exit_policy import (
    Criterion,
    ExitRule,
    cascade_decisions,
    confidence,
    override,
    parse_threshold_options,
    rules_from_manifest,
)
from device_agent.protocol.manifest import ExitStage

P = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.3, 0.1]], dtype=np.float32)


def test_scores() -> None:
    np.testing.assert_allclose(confidence(P, Criterion.MAX_PROB), [1.0, 1 / 3, 0.6], rtol=1e-6)
    ent = confidence(P, Criterion.ENTROPY)
    assert ent[0] == pytest.approx(1.0, abs=1e-5)
    assert ent[1] == pytest.approx(0.0, abs=1e-5)
    h = -(0.6 * np.log(0.6) + 0.3 * np.log(0.3) + 0.1 * np.log(0.1))
    assert ent[2] == pytest.approx(1 - h / np.log(3), rel=1e-5)


def test_threshold_is_strict_so_one_never_exits() -> None:
    assert not ExitRule(0, 1.0).exits(P).any()
    assert ExitRule(0, 0.0).exits(P).all()
    # The float32 score 0.6 is 0.6000000238...: above the threshold 0.6, not above itself.
    assert ExitRule(0, float(np.float32(0.6))).exits(P).tolist() == [True, False, False]
    assert ExitRule(0, 0.6).exits(P).tolist() == [True, False, True]


def test_manifest_exits_must_fit_the_cascade() -> None:
    rules = rules_from_manifest([ExitStage(0, 0.9), ExitStage(1, 0.8, "entropy")], n_stages=3)
    assert rules[1].criterion is Criterion.ENTROPY
    with pytest.raises(BundleError, match="exit 2 does not fit a cascade of 3"):
        rules_from_manifest([ExitStage(2, 0.9)], n_stages=3)
    with pytest.raises(BundleError, match="criterion 'margin'"):
        rules_from_manifest([ExitStage(0, 0.9, "margin")], n_stages=2)
    with pytest.raises(EdgeError, match=r"\[0, 1\]"):
        rules_from_manifest([ExitStage(0, 1.5)], n_stages=2)


def test_overrides() -> None:
    base = rules_from_manifest([ExitStage(0, 0.9, "entropy")], n_stages=3)
    all_ = override(base, {None: 0.5}, 3)
    assert {k: r.threshold for k, r in all_.items()} == {0: 0.5, 1: 0.5}
    assert all_[0].criterion is Criterion.ENTROPY
    one = override(base, {1: 0.7}, 3)
    assert one[0].threshold == 0.9 and one[1].threshold == 0.7
    with pytest.raises(EdgeError, match=r"\[0, 1\]"):
        override(base, {None: -0.1}, 3)
    with pytest.raises(EdgeError, match="stage 2 has no exit"):
        override(base, {2: 0.5}, 3)
    with pytest.raises(EdgeError, match="single stage"):
        override({}, {0: 0.5}, 1)


def test_parse_threshold_options() -> None:
    assert parse_threshold_options(["0.9", "1:0.5"]) == {None: 0.9, 1: 0.5}
    with pytest.raises(EdgeError, match="expected a number"):
        parse_threshold_options(["high"])


def test_offline_cascade() -> None:
    s0 = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]], dtype=np.float32)
    s1 = np.array([[0.1, 0.9], [0.3, 0.7], [0.6, 0.4]], dtype=np.float32)
    stage, pred = cascade_decisions([s0, s1], {0: ExitRule(0, 0.7)})
    assert stage.tolist() == [0, 1, 0]
    assert pred.tolist() == [0, 1, 1]


def test_a_row_scores_the_same_alone_as_in_a_batch() -> None:
    from device_agent.exit_policy import scores

    rng = np.random.default_rng(7)
    z = (rng.normal(size=(997, 10)) * rng.uniform(0.1, 8, size=(997, 1))).astype(np.float32)
    for crit in Criterion:
        batch = scores(z, crit, probabilities=False)
        alone = np.array([scores(row[None], crit, probabilities=False)[0] for row in z])
        assert batch.dtype == np.float32
        np.testing.assert_array_equal(batch, alone)  # bit for bit, not approximately


def test_thresholds_lie_between_observed_scores_and_off_the_float32_grid() -> None:
    from device_agent.exit_policy import exits
    from edge_sdk.passes.early_exit.keras import threshold_grid

    rng = np.random.default_rng(3)
    s = np.concatenate([rng.uniform(0.1, 1, 300), [0.7959032654762268] * 3, [1.0]]).astype(np.float32)
    grid = threshold_grid(s)
    assert grid[0] == 1.0 and grid == sorted(grid, reverse=True)
    observed = set(np.unique(s).astype(np.float64).tolist())
    for t in grid[1:]:
        assert t not in observed
        assert float(np.float32(t)) != t  # no float32 score can ever equal it
    # Each candidate partitions the observed scores as "exit above the score below it" did.
    u = np.unique(s).astype(np.float64)
    for t in grid[1:]:
        below = u[u < t]
        old = below.max() if len(below) else -1.0
        np.testing.assert_array_equal(exits(s, t), s.astype(np.float64) > old)


def test_the_threshold_grid_is_capped_and_keeps_the_extremes() -> None:
    from edge_sdk.passes.early_exit.keras import threshold_grid

    s = np.linspace(0.05, 1.0, 5000).astype(np.float32)
    grid = threshold_grid(s, limit=50)
    assert len(grid) <= 52
    assert grid[-1] < s.min() < grid[-2]
    assert grid[1] < s.max()


def test_a_float32_tie_goes_on_in_float64_too() -> None:
    from device_agent.exit_policy import exits

    s = np.float32(0.7959032654762268)
    # numpy 2 would compare a float32 array with a Python float in float32; the policy
    # compares in float64, so a threshold just above the score keeps the row in.
    assert not exits(np.array([s]), float(s))[0]
    assert not exits(np.array([s]), float(s) + 1e-12)[0]
    assert exits(np.array([s]), float(s) - 1e-12)[0]
