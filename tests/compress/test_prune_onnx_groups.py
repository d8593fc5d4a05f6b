"""ONNX channel pruning across residual Adds, channel Concats and grouped Convs.

The digits nets are trained in Keras (NHWC) for a few seconds and written out by hand
as NCHW ONNX graphs, so node names and layouts are known exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge_sdk.model.data import Dataset
from edge_sdk.passes.base import PassContext
from edge_sdk.passes.prune.onnx import OnnxPruneConfig, OnnxPrunePass
from edge_sdk.passes.prune.onnx_graph import find_groups, with_node_names

SAME = {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3]}


def _nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _train(model: Any, digits: Any) -> dict[str, list[np.ndarray]]:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(digits.x_train, digits.y_train, epochs=25, batch_size=64, verbose=0)
    return {lay.name: lay.get_weights() for lay in model.layers}


def _conv(w: dict[str, list[np.ndarray]], name: str) -> dict[str, np.ndarray]:
    return {f"{name}_w": w[name][0].transpose(3, 2, 0, 1), f"{name}_b": w[name][1]}


def _model(nodes: list[Any], inits: dict[str, np.ndarray], name: str) -> Any:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def residual_onnx(digits: Any) -> Any:
    """conv0→relu = block input; conv1→relu→conv2→BN, + block input; Add→Relu→GAP→Gemm."""
    import keras
    from onnx import helper

    keras.utils.set_random_seed(3)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    r0 = L.Conv2D(32, 3, padding="same", activation="relu", name="c0")(inp)
    h = L.Conv2D(32, 3, padding="same", activation="relu", name="c1")(r0)
    h = L.BatchNormalization(name="bn")(L.Conv2D(32, 3, padding="same", name="c2")(h))
    h = L.ReLU()(L.Add()([h, r0]))
    out = L.Dense(10, name="out")(L.GlobalAveragePooling2D()(h))
    w = _train(keras.Model(inp, out), digits)
    inits = {**_conv(w, "c0"), **_conv(w, "c1"), **_conv(w, "c2"),
             "bn_s": w["bn"][0], "bn_b": w["bn"][1], "bn_m": w["bn"][2], "bn_v": w["bn"][3],
             "out_w": w["out"][0].T, "out_b": w["out"][1]}
    nodes = [
        helper.make_node("Conv", ["x", "c0_w", "c0_b"], ["a0"], name="c0", **SAME),
        helper.make_node("Relu", ["a0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "c1_w", "c1_b"], ["a1"], name="c1", **SAME),
        helper.make_node("Relu", ["a1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "c2_w", "c2_b"], ["a2"], name="c2", **SAME),
        helper.make_node("BatchNormalization", ["a2", "bn_s", "bn_b", "bn_m", "bn_v"], ["n2"],
                         name="bn", epsilon=1e-3),
        helper.make_node("Add", ["n2", "r0"], ["s"], name="skip"),
        helper.make_node("Relu", ["s"], ["rs"], name="relu_s"),
        helper.make_node("GlobalAveragePool", ["rs"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "out_w", "out_b"], ["y"], name="out", transB=1),
    ]
    return _model(nodes, inits, "residual")


@pytest.fixture(scope="module")
def concat_onnx(digits: Any) -> Any:
    """Two branches (3x3 conv, 1x1 conv→BN) concatenated on channels → conv3→relu→pool→Gemm."""
    import keras
    from onnx import helper

    keras.utils.set_random_seed(4)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    a = L.Conv2D(16, 3, padding="same", activation="relu", name="ca")(inp)
    b = L.ReLU()(L.BatchNormalization(name="bn")(L.Conv2D(12, 1, name="cb")(inp)))
    h = L.Conv2D(32, 3, padding="same", activation="relu", name="c3")(L.Concatenate(axis=-1)([a, b]))
    out = L.Dense(10, name="out")(L.Flatten()(L.MaxPooling2D(2)(h)))
    w = _train(keras.Model(inp, out), digits)
    perm = np.array([(i % 16) * 32 + i // 16 for i in range(512)])  # NCHW flatten → NHWC rows
    inits = {**_conv(w, "ca"), **_conv(w, "cb"), **_conv(w, "c3"),
             "bn_s": w["bn"][0], "bn_b": w["bn"][1], "bn_m": w["bn"][2], "bn_v": w["bn"][3],
             "out_w": w["out"][0][perm].T, "out_b": w["out"][1]}
    nodes = [
        helper.make_node("Conv", ["x", "ca_w", "ca_b"], ["aa"], name="ca", **SAME),
        helper.make_node("Relu", ["aa"], ["ra"], name="relu_a"),
        helper.make_node("Conv", ["x", "cb_w", "cb_b"], ["ab"], name="cb", kernel_shape=[1, 1]),
        helper.make_node("BatchNormalization", ["ab", "bn_s", "bn_b", "bn_m", "bn_v"], ["nb"],
                         name="bn", epsilon=1e-3),
        helper.make_node("Relu", ["nb"], ["rb"], name="relu_b"),
        helper.make_node("Concat", ["ra", "rb"], ["cat"], name="cat", axis=1),
        helper.make_node("Conv", ["cat", "c3_w", "c3_b"], ["a3"], name="c3", **SAME),
        helper.make_node("Relu", ["a3"], ["r3"], name="relu3"),
        helper.make_node("MaxPool", ["r3"], ["p3"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p3"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "out_w", "out_b"], ["y"], name="out", transB=1),
    ]
    return _model(nodes, inits, "concat")


def _ctx(digits: Any) -> PassContext:
    cal = Dataset(_nchw(digits.x_train), digits.y_train, "train")
    return PassContext(calibration=cal, validation=cal)


def _run(model: Any, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"x": x})[0])


def _accuracy(model: Any, digits: Any) -> float:
    out = _run(model, _nchw(digits.x_test))
    assert out.shape == (len(digits.x_test), 10)
    return float(np.mean(np.argmax(out, 1) == digits.y_test))


def _shapes(model: Any) -> dict[str, tuple[int, ...]]:
    return {t.name: tuple(t.dims) for t in model.graph.initializer}


def test_residual_group_found(residual_onnx: Any) -> None:
    groups, skipped = find_groups(with_node_names(residual_onnx))
    by_seed = {g.producers[0]: g for g in groups}
    assert set(by_seed) == {"c0", "c1"} and skipped == ["out (Gemm): its output is a model output"]
    res = by_seed["c0"]
    assert sorted(res.producers) == ["c0", "c2"] and res.joins == ("skip",)
    assert sorted(u.node for u in res.uses) == ["c1", "out"]
    assert {"relu0", "bn", "skip", "relu_s", "gap"} <= {m for m, _ in res.middle}
    assert by_seed["c1"].is_chain and by_seed["c1"].uses[0].node == "c2"


def test_residual_prune_keeps_accuracy(residual_onnx: Any, digits: Any) -> None:
    import onnx

    out = OnnxPrunePass(OnnxPruneConfig(ratio=0.3)).apply(residual_onnx, _ctx(digits))
    onnx.checker.check_model(out.model)
    before, after = _accuracy(residual_onnx, digits), _accuracy(out.model, digits)
    s, c = _shapes(out.model), out.changes
    print(f"residual onnx prune 0.3: accuracy {before:.4f} -> {after:.4f}; {c}")
    kept = 32 - int(0.3 * 32)  # 23
    # The residual group: both producers, the BN, and both consumers lost the same 7 channels.
    assert s["c0_w"] == (kept, 1, 3, 3) and s["c2_w"][0] == kept and s["bn_s"] == (kept,)
    assert s["c1_w"] == (kept, kept, 3, 3) and s["out_w"] == (10, kept)
    assert c["residual_groups"] == 1 and c["channels_removed"] == 2 * int(0.3 * 32)
    assert c["params_after"] < c["params_before"] * 0.6
    # 5 of 360 test digits (0.9944 -> 0.9806) with keras 3.15 / TF 2.21 as installed on
    # 2026-12-02; within 1 point with the versions before. Seven samples is still far from
    # what slicing without the refit loses (test below: ~7x the logit error).
    assert after >= before - 0.02


def test_residual_refit_beats_slicing(residual_onnx: Any, digits: Any) -> None:
    ctx = _ctx(digits)
    x = _nchw(digits.x_test)
    ref = _run(residual_onnx, x)
    errs = []
    for reconstruct in (True, False):
        m = OnnxPrunePass(OnnxPruneConfig(ratio=0.5, reconstruct=reconstruct)).apply(residual_onnx, ctx).model
        errs.append(float(np.mean(np.square(_run(m, x) - ref))))
    print(f"residual mean squared logit error at 0.5: refit {errs[0]:.4f}, sliced only {errs[1]:.4f}")
    assert errs[0] < errs[1]


def test_concat_groups_found_with_offsets(concat_onnx: Any) -> None:
    groups, _ = find_groups(with_node_names(concat_onnx))
    by_seed = {g.producers[0]: g for g in groups}
    assert [(u.node, u.offset) for u in by_seed["ca"].uses] == [("c3", 0)]
    assert [(u.node, u.offset) for u in by_seed["cb"].uses] == [("c3", 16)]
    assert by_seed["cb"].joins == ("cat",) and ("bn", 0) in by_seed["cb"].middle


def test_concat_prune_keeps_accuracy(concat_onnx: Any, digits: Any) -> None:
    import onnx

    ctx = _ctx(digits)
    out = OnnxPrunePass(OnnxPruneConfig(ratio=0.3)).apply(concat_onnx, ctx)
    onnx.checker.check_model(out.model)
    before, after = _accuracy(concat_onnx, digits), _accuracy(out.model, digits)
    s, c = _shapes(out.model), out.changes
    print(f"concat onnx prune 0.3: accuracy {before:.4f} -> {after:.4f}; {c}")
    ka, kb = 16 - int(0.3 * 16), 12 - int(0.3 * 12)  # 12, 9
    assert s["ca_w"][0] == ka and s["cb_w"][0] == kb and s["bn_v"] == (kb,)
    assert s["c3_w"] == (32 - int(0.3 * 32), ka + kb, 3, 3) and s["out_w"] == (10, 16 * (32 - int(0.3 * 32)))
    assert c["concat_groups"] == 2 and c["params_after"] < c["params_before"] * 0.75
    assert after >= before - 0.01


def test_concat_slices_match_the_kept_channels(concat_onnx: Any, digits: Any) -> None:
    """Without refit, c3's kept input slices are exactly the original ones for the kept channels."""
    from onnx import numpy_helper

    ctx = _ctx(digits)
    m = OnnxPrunePass(OnnxPruneConfig(ratio=0.3, reconstruct=False)).apply(concat_onnx, ctx).model
    arr = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    orig = {t.name: numpy_helper.to_array(t) for t in concat_onnx.graph.initializer}
    keep_a = [next(i for i in range(16) if np.array_equal(orig["ca_w"][i], f)) for f in arr["ca_w"]]
    keep_b = [next(i for i in range(12) if np.array_equal(orig["cb_w"][i], f)) for f in arr["cb_w"]]
    keep_c3 = [next(i for i in range(32) if np.array_equal(orig["c3_b"][i], b)) for b in arr["c3_b"]]
    expect = orig["c3_w"][keep_c3][:, keep_a + [16 + i for i in keep_b]]
    assert np.array_equal(arr["c3_w"], expect)


def test_grouped_conv_is_named_and_left_alone(digits: Any) -> None:
    import onnx
    from onnx import helper

    rng = np.random.default_rng(0)
    inits = {"w1": rng.normal(size=(8, 1, 3, 3)), "wg": rng.normal(size=(8, 4, 3, 3)),
             "w3": rng.normal(size=(12, 8, 1, 1)), "fc": rng.normal(size=(12, 10))}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "wg"], ["b"], name="grouped", group=2, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["b", "w3"], ["c"], name="c3"),
        helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "fc"], ["y"], name="fc"),
    ]
    model = _model(nodes, inits, "grouped")
    out = OnnxPrunePass(OnnxPruneConfig(ratio=0.3)).apply(model, _ctx(digits))
    onnx.checker.check_model(out.model)
    notes = " | ".join(out.notes)
    assert "grouped (Conv): grouped Conv (group=2) is left unpruned" in notes
    assert "c1 (Conv): grouped (Conv) is grouped" in notes
    s = _shapes(out.model)
    assert s["w1"] == (8, 1, 3, 3) and s["wg"] == (8, 4, 3, 3) and s["w3"] == (9, 8, 1, 1)
    assert _run(out.model, _nchw(digits.x_test[:5])).shape == (5, 10)


def test_stacked_residual_blocks_form_one_group(digits: Any) -> None:
    """Two residual blocks on one stream: every producer writing the stream loses the same channels."""
    import onnx
    from onnx import helper

    rng = np.random.default_rng(1)
    c = 16
    inits = {"w0": rng.normal(size=(c, 1, 3, 3)) * 0.5}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a0"], name="c0", **SAME),
             helper.make_node("Relu", ["a0"], ["s0"], name="relu0")]
    for b in (1, 2):
        inits[f"wa{b}"] = rng.normal(size=(c, c, 3, 3)) * 0.1
        inits[f"wb{b}"] = rng.normal(size=(c, c, 3, 3)) * 0.1
        nodes += [
            helper.make_node("Conv", [f"s{b - 1}", f"wa{b}"], [f"h{b}"], name=f"ca{b}", **SAME),
            helper.make_node("Relu", [f"h{b}"], [f"rh{b}"], name=f"rh{b}"),
            helper.make_node("Conv", [f"rh{b}", f"wb{b}"], [f"o{b}"], name=f"cb{b}", **SAME),
            helper.make_node("Add", [f"s{b - 1}", f"o{b}"], [f"sum{b}"], name=f"add{b}"),
            helper.make_node("Relu", [f"sum{b}"], [f"s{b}"], name=f"rs{b}"),
        ]
    inits["fc"] = rng.normal(size=(c, 10))
    nodes += [helper.make_node("GlobalAveragePool", ["s2"], ["g"], name="gap"),
              helper.make_node("Flatten", ["g"], ["f"], name="flat"),
              helper.make_node("MatMul", ["f", "fc"], ["y"], name="fc")]
    model = _model(nodes, inits, "stacked")
    groups, _ = find_groups(with_node_names(model))
    stream = next(g for g in groups if "c0" in g.producers)
    assert sorted(stream.producers) == ["c0", "cb1", "cb2"] and sorted(stream.joins) == ["add1", "add2"]
    assert sorted(u.node for u in stream.uses) == ["ca1", "ca2", "fc"]
    ctx, x = _ctx(digits), _nchw(digits.x_test)
    ref = _run(model, x)
    errs = []
    for reconstruct in (True, False):
        out = OnnxPrunePass(OnnxPruneConfig(ratio=0.25, reconstruct=reconstruct)).apply(model, ctx)
        onnx.checker.check_model(out.model)
        s = _shapes(out.model)
        assert s["w0"][0] == s["wb1"][0] == s["wb2"][0] == 12 and s["wa2"][1] == 12 and s["fc"] == (12, 10)
        errs.append(float(np.mean(np.square(_run(out.model, x) - ref))))
    print(f"stacked residual mean squared output error at 0.25: refit {errs[0]:.4f}, sliced {errs[1]:.4f}")
    assert errs[0] < errs[1]


def test_residual_from_the_model_input_is_named(digits: Any) -> None:
    """A skip straight from the graph input cannot lose channels: the producer is left alone."""
    from onnx import helper

    rng = np.random.default_rng(2)
    inits = {"w1": rng.normal(size=(1, 1, 3, 3)), "w2": rng.normal(size=(8, 1, 3, 3)), "fc": rng.normal(size=(8, 10))}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="c1", **SAME),
        helper.make_node("Add", ["a", "x"], ["s"], name="skip"),
        helper.make_node("Conv", ["s", "w2"], ["b"], name="c2", **SAME),
        helper.make_node("GlobalAveragePool", ["b"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "fc"], ["y"], name="fc"),
    ]
    out = OnnxPrunePass(OnnxPruneConfig(ratio=0.3)).apply(_model(nodes, inits, "inskip"), _ctx(digits))
    assert "not pruned: c1 (Conv): its channel group reaches graph input x" in out.notes
    assert _shapes(out.model)["w1"] == (1, 1, 3, 3) and _shapes(out.model)["w2"] == (6, 1, 3, 3)


def test_per_channel_ops_after_a_concat_are_cut_at_the_offset(digits: Any) -> None:
    """Concat → BN → Relu → depthwise Conv → Conv: each branch's cut lands at its own offset."""
    import onnx
    from onnx import helper

    rng = np.random.default_rng(3)
    inits = {"wa": rng.normal(size=(6, 1, 3, 3)), "wb": rng.normal(size=(4, 1, 1, 1)),
             "s": rng.random(10) + 0.5, "b": rng.normal(size=10) * 0.1, "m": rng.normal(size=10) * 0.1,
             "v": rng.random(10) + 0.5, "dw": rng.normal(size=(10, 1, 3, 3)), "w3": rng.normal(size=(8, 10, 1, 1)),
             "fc": rng.normal(size=(8, 10))}
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["a"], name="ca", **SAME),
        helper.make_node("Conv", ["x", "wb"], ["b_"], name="cb"),
        helper.make_node("Concat", ["a", "b_"], ["cat"], name="cat", axis=1),
        helper.make_node("BatchNormalization", ["cat", "s", "b", "m", "v"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "dw"], ["d"], name="dw", group=10, **SAME),
        helper.make_node("Conv", ["d", "w3"], ["c"], name="c3"),
        helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "fc"], ["y"], name="fc"),
    ]
    model = _model(nodes, inits, "catbn")
    groups, _ = find_groups(with_node_names(model))
    cb = next(g for g in groups if g.producers == ("cb",))
    assert ("bn", 6) in cb.middle and ("dw", 6) in cb.middle and cb.uses[0].offset == 6
    out = OnnxPrunePass(OnnxPruneConfig(ratio=0.5, reconstruct=False)).apply(model, _ctx(digits)).model
    onnx.checker.check_model(out)
    s = _shapes(out)
    assert s["wa"][0] == 3 and s["wb"][0] == 2 and s["s"] == (5,) and s["dw"] == (5, 1, 3, 3) and s["w3"][1] == 5
    dw = next(n for n in out.graph.node if n.name == "dw")
    assert helper.get_attribute_value(next(a for a in dw.attribute if a.name == "group")) == 5
    # Without refit the survivors are untouched: each kept BN entry pairs with its kept depthwise filter.
    from onnx import numpy_helper

    arr = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    kept = [next(i for i in range(10) if np.array_equal(inits["dw"][i].astype(np.float32), f)) for f in arr["dw"]]
    assert np.allclose(arr["s"], inits["s"][kept].astype(np.float32))
    assert kept[:3] == sorted(kept[:3]) and all(k < 6 for k in kept[:3]) and all(k >= 6 for k in kept[3:])
    assert _run(out, _nchw(digits.x_test[:4])).shape == (4, 10)


def test_a_conv_that_reads_the_stream_and_adds_to_it_is_producer_and_consumer(digits: Any) -> None:
    """s = r + conv(r): the conv loses the same channels on its input and its output side.
    Sliced without refit, the result is the original with those channels' weights zeroed."""
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(4)
    c = 12
    inits = {"w0": rng.normal(size=(c, 1, 3, 3)) * 0.5, "wr": rng.normal(size=(c, c, 3, 3)) * 0.1,
             "fc": rng.normal(size=(c, 10))}
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a0"], name="c0", **SAME),
        helper.make_node("Relu", ["a0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "wr"], ["h"], name="cr", **SAME),
        helper.make_node("Add", ["r0", "h"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["rs"], name="relu_s"),
        helper.make_node("GlobalAveragePool", ["rs"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "fc"], ["y"], name="fc"),
    ]
    model = _model(nodes, inits, "self_residual")
    groups, _ = find_groups(with_node_names(model))
    assert [(g.producers, [u.node for u in g.uses]) for g in groups] == [(("c0", "cr"), ["cr", "fc"])]
    ctx, x = _ctx(digits), _nchw(digits.x_test)
    ref = _run(model, x)
    errs = []
    for reconstruct in (True, False):
        out = OnnxPrunePass(OnnxPruneConfig(ratio=0.25, reconstruct=reconstruct)).apply(model, ctx).model
        onnx.checker.check_model(out)
        s = _shapes(out)
        assert s["w0"] == (9, 1, 3, 3) and s["wr"] == (9, 9, 3, 3) and s["fc"] == (9, 10)
        errs.append(float(np.mean(np.square(_run(out, x) - ref))))
    print(f"x + conv(x) mean squared output error at 0.25: refit {errs[0]:.4f}, sliced {errs[1]:.4f}")
    assert errs[0] < errs[1]
    arr = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    kept = [next(i for i in range(c) if np.array_equal(inits["w0"][i].astype(np.float32), f)) for f in arr["w0"]]
    gone = [i for i in range(c) if i not in kept]
    zeroed = {**inits, "wr": inits["wr"].copy(), "fc": inits["fc"].copy()}
    zeroed["wr"][:, gone] = 0
    zeroed["fc"][gone] = 0
    np.testing.assert_allclose(_run(out, x), _run(_model(nodes, zeroed, "zeroed"), x), rtol=1e-5, atol=1e-5)
