"""The compression steps built from optimize flags, run in order on a real model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from device_agent.errors import EdgeError
from edge_sdk.recipe.compression import CompressionFlags, keras_passes, onnx_passes, recipe_passes
from tests.compress.conftest import context, keras_accuracy


def test_order_and_bad_flags() -> None:
    flags = CompressionFlags(prune=0.5, share=16, lowrank=0.9, distill=True)
    assert [p.name for p in keras_passes(flags)] == ["prune", "lowrank", "distill", "share"]
    assert [p.name for p in onnx_passes(CompressionFlags(prune=0.3, share=8))] == ["prune_onnx", "share_onnx"]
    assert keras_passes(CompressionFlags()) == []
    with pytest.raises(EdgeError, match="--lowrank and --distill need a Keras model"):
        onnx_passes(CompressionFlags(distill=True))
    with pytest.raises(EdgeError, match="prune ratio must be in"):
        keras_passes(CompressionFlags(prune=1.0))
    with pytest.raises(EdgeError, match="cluster count must be in"):
        onnx_passes(CompressionFlags(share=1))


def test_prune_distill_share_in_sequence(lenet: Any, digits: Any) -> None:
    ctx = context(digits, teacher=lenet)
    model = lenet
    for p in keras_passes(CompressionFlags(prune=0.5, share=16, distill=True)):
        model = p.apply(model, ctx).model
    before = keras_accuracy(lenet, digits.x_test, digits.y_test)
    after = keras_accuracy(model, digits.x_test, digits.y_test)
    print(f"prune 0.5 + distill + share 16: accuracy {before:.4f} -> {after:.4f}, "
          f"params {lenet.count_params()} -> {model.count_params()}")
    assert model.count_params() < 0.35 * lenet.count_params()
    assert len(np.unique(model.get_layer("fc1").get_weights()[0])) <= 16
    assert after >= before - 0.02


def test_recipe_steps_dispatch_on_model_kind(lenet: Any, digits: Any) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    steps = recipe_passes(CompressionFlags(prune=0.5, distill=True))
    assert [s.name for s in steps] == ["prune", "distill"]
    ctx = context(digits, teacher=lenet)
    assert steps[0].apply(lenet, ctx).model.get_layer("c1").filters == 10
    rng = np.random.default_rng(0)
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1"], ["h"], name="a"), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Gemm", ["r", "w2"], ["y"], name="b")], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
         for n, s in (("w1", (64, 32)), ("w2", (32, 10)))],
    )
    mlp = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    flat = context(digits)
    flat = type(flat)(calibration=type(flat.calibration)(digits.x_train.reshape(-1, 64), None, "x"),
                      validation=flat.validation)
    out = steps[0].apply(mlp, flat).model
    onnx.checker.check_model(out)
    assert next(t for t in out.graph.initializer if t.name == "w1").dims == [64, 16]
    with pytest.raises(EdgeError, match="distill: needs a Keras model"):
        steps[1].apply(mlp, flat)
