"""Low-rank factorization: exact on low-rank kernels, rank rules, LiteRT, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device_agent.errors import EdgeError
from edge_sdk.core.svd import factorize, rank_for_budget, rank_for_energy
from edge_sdk.passes.lowrank.keras import LowRankConfig, LowRankPass
from tests.compress.conftest import context, keras_accuracy, run_litert, to_tflite


def test_rank_rules() -> None:
    s = np.array([3.0, 2.0, 1.0, 0.0])  # squared: 9, 4, 1 of 14
    assert rank_for_energy(s, 9 / 14) == 1
    assert rank_for_energy(s, 0.65) == 2
    assert rank_for_energy(s, 1.0) == 3
    assert rank_for_budget(100, 100, 0.5) == 25  # 25 * 200 = half of 10000
    w = np.random.default_rng(0).normal(size=(12, 7))
    a, b = factorize(w, 7)
    np.testing.assert_allclose(a @ b, w, atol=1e-5)


def _rank2(model: Any) -> Any:
    rng = np.random.default_rng(0)
    for layer in model.layers:
        w = layer.get_weights()
        if w:
            sh = w[0].shape
            m = rng.normal(size=(sh[-2], 2)) @ rng.normal(size=(2, sh[-1])) * 0.1
            w[0] = m.reshape(sh).astype(np.float32)
            layer.set_weights(w)
    return model


def test_rank_two_kernels_are_factorized_exactly() -> None:
    import keras

    inp = keras.Input((4, 4, 8))
    x = keras.layers.Conv2D(32, 1, activation="relu", name="pw")(inp)
    x = keras.layers.Dense(64, name="fc")(keras.layers.Flatten()(x))
    func = _rank2(keras.Model(inp, keras.layers.Dense(10, name="out")(x)))
    seq = _rank2(keras.Sequential([keras.Input((20,)), keras.layers.Dense(40, name="a"),
                                   keras.layers.Dense(5, name="b")]))
    rng = np.random.default_rng(1)
    for m, shape in ((func, (3, 4, 4, 8)), (seq, (3, 20))):
        out = LowRankPass(LowRankConfig(energy=0.9999)).apply(m, None)
        assert out.changes["params_after"] < out.changes["params_before"] / 3
        assert set(out.changes["ranks"].split(",")) == {f"{lay.name}:2" for lay in m.layers if lay.get_weights()}
        x = rng.random(shape, dtype=np.float32)
        np.testing.assert_allclose(out.model(x).numpy(), m(x).numpy(), atol=1e-4)


def test_lenet_dense_by_budget_runs_in_litert(lenet: Any, digits: Any, tmp_path: Path) -> None:
    out = LowRankPass(LowRankConfig(energy=None, param_budget=0.25, layers=("fc1",))).apply(
        lenet, context(digits)
    )
    small = out.model
    assert small.get_layer("fc1_lowrank").units == rank_for_budget(800, 128, 0.25)
    before = keras_accuracy(lenet, digits.x_test, digits.y_test)
    after = keras_accuracy(small, digits.x_test, digits.y_test)
    print(f"lowrank fc1 budget 0.25: accuracy {before:.4f} -> {after:.4f}; {out.changes}")
    assert after > before - 0.1
    x = digits.x_test[:4]
    np.testing.assert_allclose(run_litert(to_tflite(small, tmp_path / "lr.tflite"), x),
                               small(x).numpy(), rtol=1e-3, atol=1e-3)


def test_full_rank_is_left_whole_with_a_note(lenet: Any) -> None:
    out = LowRankPass(LowRankConfig(energy=1.0, layers=("logits",))).apply(lenet, None)
    assert out.changes["factorized_layers"] == 0 and "logits" in out.notes[0]


@pytest.mark.parametrize(
    ("kw", "msg"),
    [({"energy": 0.0}, "must be in"), ({"energy": 1.5}, "must be in"),
     ({"energy": None}, "exactly one"), ({"energy": 0.9, "param_budget": 0.5}, "exactly one")],
)
def test_bad_config(kw: dict[str, Any], msg: str) -> None:
    with pytest.raises(EdgeError, match=msg):
        LowRankConfig(**kw)


def test_bad_layer(lenet: Any) -> None:
    with pytest.raises(EdgeError, match="'c2' is not a Dense or 1x1 Conv2D"):
        LowRankPass(LowRankConfig(layers=("c2",))).apply(lenet, None)
