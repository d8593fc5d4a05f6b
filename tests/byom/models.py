"""Third-party-shaped models, built here (no downloads): the shapes published models have.

- :func:`detector_tflite`: a TFLite detector, one image in, boxes ``[1, 10, 4]`` and
  scores ``[1, 10]`` out.
- :func:`segmenter_tflite`: a TFLite segmenter, a spatial output ``[1, 16, 16, 3]``.
- :func:`stateful_onnx`: a voice-activity-detector-shaped ONNX graph: audio chunk
  ``[N, 16]``, state ``[2, N, 8]``, sample rate as an int64 scalar, an ``If`` on the rate,
  outputs a probability and the next state.
- :func:`constant_cnn_onnx`: a small CNN whose weights are ``Constant`` nodes (as many
  exporters write them) with dynamic H and W.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def detector_tflite(path: Path) -> Path:
    import keras

    from edge_sdk.passes.quantize.tflite import to_tflite

    keras.utils.set_random_seed(1)
    inp = keras.Input((16, 16, 3), batch_size=1)
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    h = keras.layers.Flatten()(h)
    boxes = keras.layers.Reshape((10, 4))(keras.layers.Dense(40, activation="sigmoid")(h))
    scores = keras.layers.Dense(10, activation="sigmoid")(h)
    path.write_bytes(to_tflite(keras.Model(inp, [boxes, scores])))
    return path


def segmenter_tflite(path: Path) -> Path:
    import keras

    from edge_sdk.passes.quantize.tflite import to_tflite

    keras.utils.set_random_seed(2)
    inp = keras.Input((16, 16, 3), batch_size=1)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    out = keras.layers.Conv2D(3, 1, activation="softmax")(h)
    path.write_bytes(to_tflite(keras.Model(inp, out)))
    return path


def _const(name: str, value: np.ndarray):  # type: ignore[no-untyped-def]
    from onnx import helper, numpy_helper

    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name + "_v"))


def stateful_onnx(path: Path) -> Path:
    """h = xW + s0; prob = sigmoid(mean(If(sr == 16000, relu(h W2), -relu(h)))); stateN = 0.5 * state + h.
    ``W`` and ``W2`` are ``Constant`` nodes, ``W2`` inside the ``If``'s then-branch."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.5, (16, 8)).astype(np.float32)
    w2 = rng.normal(0, 0.5, (8, 8)).astype(np.float32)
    then = helper.make_graph([_const("W2", w2), helper.make_node("MatMul", ["h", "W2"], ["hw"], name="then_mm"),
                              helper.make_node("Relu", ["hw"], ["y_then"])], "then", [],
                             [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, None)])
    neg = [helper.make_node("Relu", ["h"], ["r"]), helper.make_node("Neg", ["r"], ["y_else"])]
    other = helper.make_graph(neg, "else", [], [helper.make_tensor_value_info("y_else", TensorProto.FLOAT, None)])
    nodes = [
        _const("W", w),
        _const("rate16k", np.array(16000, dtype=np.int64)),
        _const("half", np.array(0.5, dtype=np.float32)),
        _const("zero", np.array([0], dtype=np.int64)),
        helper.make_node("MatMul", ["input", "W"], ["xw"], name="mm"),
        helper.make_node("Gather", ["state", "zero"], ["s0_"], axis=0),
        helper.make_node("Squeeze", ["s0_", "zero"], ["s0"]),
        helper.make_node("Add", ["xw", "s0"], ["h"]),
        helper.make_node("Equal", ["sr", "rate16k"], ["is16k"]),
        helper.make_node("If", ["is16k"], ["y"], name="rate_if", then_branch=then, else_branch=other),
        helper.make_node("ReduceMean", ["y"], ["m"], axes=[1], keepdims=1),
        helper.make_node("Sigmoid", ["m"], ["output"]),
        helper.make_node("Mul", ["state", "half"], ["hs"]),
        helper.make_node("Unsqueeze", ["h", "zero"], ["h3"]),
        helper.make_node("Add", ["hs", "h3"], ["stateN"]),
    ]
    graph = helper.make_graph(
        nodes, "vad",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 16]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "N", 8]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "N", 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def constant_cnn_onnx(path: Path, *, channels: tuple[int, ...] = (16, 32), classes: int = 4,
                      seed: int = 4, opset: int = 11) -> Path:
    """Conv-ReLU blocks (3x3, stride 2) → global average pool → Gemm; every weight a
    ``Constant`` node; input ``[N, 3, H, W]`` with H and W dynamic."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    nodes, prev, c_in = [], "input", 3
    for i, c in enumerate(channels):
        w = rng.normal(0, np.sqrt(2.0 / (9 * c_in)), (c, c_in, 3, 3)).astype(np.float32)
        b = rng.normal(0, 0.05, (c,)).astype(np.float32)
        nodes += [_const(f"w{i}", w), _const(f"b{i}", b),
                  helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}",
                                   kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        prev, c_in = f"r{i}", c
    wf = rng.normal(0, np.sqrt(1.0 / c_in), (classes, c_in)).astype(np.float32)
    nodes += [helper.make_node("GlobalAveragePool", [prev], ["gap"], name="gap"),
              helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
              _const("wf", wf), _const("bf", np.zeros(classes, np.float32)),
              helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def dynamic_tflite(path: Path) -> Path:
    """A TFLite image model whose H and W are free: 3x3 conv (8 filters), global average."""
    import keras

    from edge_sdk.passes.quantize.tflite import to_tflite

    keras.utils.set_random_seed(3)
    inp = keras.Input((None, None, 3), batch_size=1)
    out = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, padding="same")(inp))
    path.write_bytes(to_tflite(keras.Model(inp, out)))
    return path
