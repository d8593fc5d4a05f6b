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
from device_agent.manifest import ExitStage

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
    assert ExitRule(0, 0.6).exits(P).tolist() == [True, False, False]


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
