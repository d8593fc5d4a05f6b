"""Channel pruning on real Keras models: the analysis, the rebuild, LiteRT, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device_agent.errors import EdgeError
from edge_sdk.core.channel_graph import analyze, kept_positions
from edge_sdk.core.criteria import CriterionKind
from edge_sdk.core.select import choose, unit_scores
from edge_sdk.passes.prune.keras import PruneConfig, PrunePass, PruneScope
from edge_sdk.passes.prune.keras_graph import nodes_from_keras
from edge_sdk.passes.prune.keras_rebuild import gather_evidence, rebuild
from tests.compress.conftest import context, keras_accuracy, run_litert, to_tflite


def _zoo() -> Any:
    """Residual Add, depthwise, separable, Concatenate, Flatten, all in one small graph."""
    import keras

    keras.utils.set_random_seed(3)
    L = keras.layers
    inp = keras.Input((6, 6, 2))
    a = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    b = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False, name="dw")(a)
    b = L.Conv2D(8, 1, name="c2")(b)
    s = L.Add(name="add")([a, b])
    p = L.SeparableConv2D(6, 3, padding="same", name="sep")(s)
    q = L.Conv2D(4, 1, name="c3")(s)
    c = L.Concatenate(name="cat")([p, q])
    f = L.Flatten()(L.MaxPooling2D(2)(c))
    d = L.Dense(16, activation="relu", name="fc")(f)
    return keras.Model(inp, L.Dense(5, name="out")(d))


def _cost_ctx() -> Any:
    from edge_sdk.model.data import Dataset
    from edge_sdk.passes.base import PassContext

    ds = Dataset(np.zeros((2, 32, 32, 3), np.float32), None, "none")
    return PassContext(calibration=ds, validation=ds)


def test_residual_concat_and_flatten_groups() -> None:
    m = _zoo()
    nodes, outputs = nodes_from_keras(m)
    a = analyze(nodes, outputs)
    # both sides of the Add are one group, and nothing is unknown; the depthwise layer
    # (multiplier 2) repeats each of c1's slots twice for c2's input
    assert a.in_maps["c2"][0] == [s for s in a.producers["c1"] for _ in range(2)]
    assert a.unknown == {}
    units = a.units()
    assert {tuple(sorted(p)) for p in units.values()} == {("c1", "c2"), ("sep",), ("c3",), ("fc",)}
    # the concat is sep's 6 slots then c3's 4; Flatten tiles those 10 over 3*3 positions
    assert a.out_maps["cat"] == a.producers["sep"] + a.producers["c3"]
    assert a.in_maps["fc"][0] == a.out_maps["cat"] * 9
    # the output layer's units are never prunable
    assert all(a.unit(s) not in units for s in a.producers["out"])


def test_rebuilt_model_equals_original_with_removed_channels_zeroed() -> None:
    m = _zoo()
    nodes, outputs = nodes_from_keras(m)
    a = analyze(nodes, outputs)
    scores = unit_scores(a, gather_evidence(m, a, nodes), _l1())
    sel = choose(a, scores, ratio=0.5, layer_ratios={}, global_rank=False)
    small = rebuild(m, a, nodes, set(sel.removed))
    # Zero the removed output channels in the original: with ReLU and bias-free depthwise,
    # a zero channel contributes nothing downstream, so outputs must match the small model.
    for name, slots in a.producers.items():
        layer = m.get_layer(name)
        w = layer.get_weights()
        gone = [i for i in range(len(slots)) if i not in kept_positions(slots, set(sel.removed), a)]
        kernel_index = 1 if name == "sep" else 0
        w[kernel_index][..., gone] = 0
        w[-1][gone] = 0
        layer.set_weights(w)
    x = np.random.default_rng(0).random((4, 6, 6, 2), dtype=np.float32)
    np.testing.assert_allclose(small(x).numpy(), m(x).numpy(), rtol=1e-4, atol=1e-5)
    assert small.get_layer("c1").filters == 4 and small.get_layer("c2").filters == 4
    assert small.get_layer("sep").filters == 3 and small.get_layer("fc").units == 8
    assert small.get_layer("out").units == 5
    assert small.get_layer("dw").get_weights()[0].shape == (3, 3, 4, 2)


def test_pruned_model_saves_and_loads(tmp_path: Path) -> None:
    import keras

    small = PrunePass(PruneConfig(ratio=0.5)).apply(_zoo(), _cost_ctx()).model
    small.save(tmp_path / "small.keras")
    again = keras.models.load_model(tmp_path / "small.keras")
    x = np.random.default_rng(0).random((2, 6, 6, 2), dtype=np.float32)
    np.testing.assert_allclose(again(x).numpy(), small(x).numpy(), rtol=1e-5, atol=1e-6)


def _l1() -> Any:
    from edge_sdk.core.criteria import CRITERIA

    return CRITERIA[CriterionKind.L1]


def test_ratio_zero_keeps_the_model_exactly(cnn: Any) -> None:
    out = PrunePass(PruneConfig(ratio=0.0)).apply(cnn, _cost_ctx())
    x = np.random.default_rng(1).random((3, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(out.model(x).numpy(), cnn(x).numpy(), rtol=1e-5, atol=1e-5)
    assert out.changes["params_after"] == out.changes["params_before"]


def test_sequential_prune_halves_channels_and_runs_in_litert(cnn: Any, tmp_path: Path) -> None:
    out = PrunePass(PruneConfig(ratio=0.5)).apply(cnn, _cost_ctx())
    small = out.model
    assert small.get_layer("conv1").filters == 8 and small.get_layer("conv2").filters == 16
    assert small.get_layer("fc1").units == 32 and small.get_layer("logits").units == 10
    assert out.changes["params_after"] < 0.3 * out.changes["params_before"]
    assert out.changes["macs_after"] < 0.3 * out.changes["macs_before"]
    x = np.random.default_rng(2).random((3, 8, 8, 1), dtype=np.float32)
    got = run_litert(to_tflite(small, tmp_path / "s.tflite"), x)
    np.testing.assert_allclose(got, small(x).numpy(), rtol=1e-3, atol=1e-4)


def test_bn_scale_removes_the_smallest_gammas(lenet: Any) -> None:
    import keras

    m = keras.models.clone_model(lenet)
    m.set_weights(lenet.get_weights())
    bn = m.get_layer("bn1")
    w = bn.get_weights()
    w[0] = np.linspace(1.0, 2.0, 20).astype(np.float32)
    w[0][[3, 7, 11]] = 1e-3
    bn.set_weights(w)
    out = PrunePass(PruneConfig(ratio=0.15, criterion=CriterionKind.BN_SCALE)).apply(m, _cost_ctx())
    gamma = out.model.get_layer("bn1").get_weights()[0]
    assert len(gamma) == 17 and gamma.min() > 0.5


def test_per_layer_and_global_ratios(lenet: Any) -> None:
    per = PrunePass(PruneConfig(ratio=0.0, layer_ratios=(("c2", 0.6),))).apply(lenet, _cost_ctx())
    assert per.model.get_layer("c2").filters == 20 and per.model.get_layer("c1").filters == 20
    glob = PrunePass(PruneConfig(ratio=0.5, scope=PruneScope.GLOBAL)).apply(lenet, _cost_ctx())
    kept = sum(glob.model.get_layer(n).filters for n in ("c1", "c2")) + glob.model.get_layer("fc1").units
    assert kept == 198 - int(0.5 * 198)


def test_pruned_lenet_accuracy_recorded(lenet: Any, digits: Any) -> None:
    out = PrunePass(PruneConfig(ratio=0.3)).apply(lenet, context(digits))
    before = keras_accuracy(lenet, digits.x_test, digits.y_test)
    after = keras_accuracy(out.model, digits.x_test, digits.y_test)
    print(f"lenet prune 0.3 without fine-tuning: accuracy {before:.4f} -> {after:.4f}, {out.changes}")
    assert before > 0.9 and after > 0.3


def test_unknown_layer_is_named_and_left_unpruned() -> None:
    import keras

    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(8, 3, name="c1")(inp)
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = keras.layers.Conv2D(8, 3, name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, keras.layers.Dense(3, name="out")(x))
    out = PrunePass(PruneConfig(ratio=0.5)).apply(m, _cost_ctx())
    assert any("'ln'" in n and "LayerNormalization" in n for n in out.notes)
    assert out.model.get_layer("c1").filters == 8  # feeds the unknown layer: untouched
    assert out.model.get_layer("c2").filters == 4  # GAP then Dense: understood


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
def test_bad_ratio(ratio: float) -> None:
    with pytest.raises(EdgeError, match=r"prune ratio must be in \[0, 1\)"):
        PruneConfig(ratio=ratio)


def test_no_prunable_layer() -> None:
    import keras

    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="only")])
    with pytest.raises(EdgeError, match="no prunable layer"):
        PrunePass().apply(m, _cost_ctx())


def test_unknown_layer_ratio_name(cnn: Any) -> None:
    with pytest.raises(EdgeError, match="no layer named 'nope'"):
        PrunePass(PruneConfig(layer_ratios=(("nope", 0.5),))).apply(cnn, _cost_ctx())


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["MobileNetV2", "ResNet50"])
def test_applications_prune_and_run_in_litert(arch: str, tmp_path: Path) -> None:
    import keras

    m = getattr(keras.applications, arch)(input_shape=(32, 32, 3), weights=None, classes=10)
    out = PrunePass(PruneConfig(ratio=0.5)).apply(m, _cost_ctx())
    small = out.model
    c = out.changes
    print(arch, c)
    assert out.notes == ()
    assert c["channel_units_removed"] == sum(
        int(0.5 * n) for n in _group_sizes(m)
    )
    # halving the channels on both sides of most kernels leaves about a quarter
    assert c["params_after"] < 0.3 * c["params_before"]
    assert c["macs_after"] < 0.3 * c["macs_before"]
    assert small.output_shape == m.output_shape
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    got = run_litert(to_tflite(small, tmp_path / f"{arch}.tflite"), x)
    assert got.shape == (2, 10)
    np.testing.assert_allclose(got, small(x, training=False).numpy(), rtol=1e-3, atol=1e-4)


def _group_sizes(m: Any) -> list[int]:
    from edge_sdk.core.select import groups_of

    nodes, outputs = nodes_from_keras(m)
    return [len(u) for u in groups_of(analyze(nodes, outputs)).values()]


def test_conv1d_and_two_outputs() -> None:
    import keras

    L = keras.layers
    inp = keras.Input((20, 3))
    x = L.Conv1D(12, 3, activation="relu", name="k1")(inp)
    x = L.SeparableConv1D(10, 3, name="k2")(x)
    h = L.GlobalMaxPooling1D()(x)
    a = L.Dense(4, name="head_a")(h)
    b = L.Dense(2, name="head_b")(L.Dense(8, activation="relu", name="mid")(h))
    m = keras.Model(inp, [a, b])
    out = PrunePass(PruneConfig(ratio=0.5)).apply(m, _cost_ctx())
    small = out.model
    assert [small.get_layer(n).filters for n in ("k1", "k2")] == [6, 5]
    assert small.get_layer("mid").units == 4
    assert small.get_layer("head_a").units == 4 and small.get_layer("head_b").units == 2
    ys = small(np.random.default_rng(0).random((2, 20, 3), dtype=np.float32))
    assert [tuple(y.shape) for y in ys] == [(2, 4), (2, 2)]


def _se_block() -> Any:
    """An MBConv-style block with squeeze-and-excitation: expand, depthwise, global pool,
    Reshape (N, C) -> (N, 1, 1, C), squeeze and excite 1x1 convs, Multiply, project."""
    import keras

    keras.utils.set_random_seed(5)
    L = keras.layers
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 1, activation="relu", name="expand")(inp)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    s = L.GlobalAveragePooling2D(name="squeeze_pool")(x)
    s = L.Reshape((1, 1, 16), name="se_reshape")(s)
    s = L.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = L.Conv2D(16, 1, activation="sigmoid", name="se_expand")(s)
    x = L.Multiply(name="se_excite")([x, s])
    x = L.Conv2D(8, 1, name="project")(x)
    x = L.Reshape((64, 8), name="flat_positions")(x)  # (N, H, W, C) -> (N, H*W, C)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(5, name="out")(x))


def test_squeeze_and_excitation_channels_prune_together(tmp_path: Path) -> None:
    m = _se_block()
    nodes, outputs = nodes_from_keras(m)
    a = analyze(nodes, outputs)
    assert a.unknown == {}  # the reshapes keep the channel axis: understood
    groups = {tuple(sorted(p)) for p in a.units().values()}
    # the excitation's outputs scale the expanded channels: one unit with them
    assert ("expand", "se_expand") in groups and ("se_reduce",) in groups and ("project",) in groups
    out = PrunePass(PruneConfig(ratio=0.5)).apply(m, _cost_ctx())
    small = out.model
    assert out.notes == ()
    assert small.get_layer("expand").filters == 8 and small.get_layer("se_expand").filters == 8
    assert small.get_layer("se_reduce").filters == 2 and small.get_layer("project").filters == 4
    assert small.get_layer("se_reshape").output.shape[1:] == (1, 1, 8)
    assert small.get_layer("flat_positions").output.shape[1:] == (64, 4)
    assert out.changes["macs_after"] < 0.5 * out.changes["macs_before"]
    x = np.random.default_rng(1).random((2, 8, 8, 3), dtype=np.float32)
    got = run_litert(to_tflite(small, tmp_path / "se.tflite"), x)
    np.testing.assert_allclose(got, small(x).numpy(), rtol=1e-3, atol=1e-4)
    # ratio 0 keeps the block exactly (the rebuilt reshapes included)
    same = PrunePass(PruneConfig(ratio=0.0)).apply(m, _cost_ctx()).model
    np.testing.assert_allclose(same(x).numpy(), m(x).numpy(), rtol=1e-6, atol=1e-6)


def test_a_reshape_that_moves_the_channel_axis_is_named() -> None:
    import keras

    L = keras.layers
    inp = keras.Input((4, 4, 3))
    x = L.Conv2D(6, 1, name="c1")(inp)
    x = L.Reshape((4, 24), name="mix")(x)  # channels folded into the last axis
    x = L.GlobalAveragePooling1D()(x)
    m = keras.Model(inp, L.Dense(2, name="out")(x))
    nodes, outputs = nodes_from_keras(m)
    a = analyze(nodes, outputs)
    assert "moves the channel axis" in a.unknown["mix"]
