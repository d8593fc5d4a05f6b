"""The int8 backends and their remedies with real converters and runtimes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device_agent.errors import EdgeError
from device_agent.protocol.manifest import ModelFormat
from edge_sdk.measure.evaluate import artifact_accuracy
from edge_sdk.model.data import load_dataset
from edge_sdk.passes.quantize.base import QuantizeConfig
from edge_sdk.passes.quantize.onnx import OnnxExporter
from edge_sdk.passes.quantize.tflite import TFLiteExporter
from edge_sdk.recipe.pipeline import Job, Recipe, Target, optimize


@pytest.fixture(scope="module")
def model(keras_cnn: Path) -> Any:
    import keras

    return keras.models.load_model(keras_cnn)


def test_onnx_keep_float_leaves_that_node_unquantized(model: Any, digits: Any,
                                                      tmp_path: Path) -> None:
    import onnx

    calib = load_dataset(digits.train)
    ex = OnnxExporter()
    float_graph = onnx.load_from_string(ex.export_float(model, tmp_path)).graph
    conv = next(n.name for n in float_graph.node if n.op_type == "Conv")
    data = ex.quantize(model, QuantizeConfig(samples=50, keep_float=(conv,)), calib, tmp_path)
    g = onnx.load_from_string(data).graph
    dq_outputs = {n.output[0] for n in g.node if n.op_type == "DequantizeLinear"}
    kept = next(n for n in g.node if n.name == conv)
    assert kept.input[1] not in dq_outputs  # its weight stays a float initializer
    others = [n for n in g.node if n.op_type in ("Conv", "MatMul") and n.name != conv]
    assert others and all(n.input[1] in dq_outputs for n in others)
    acc = artifact_accuracy(data, ModelFormat.ONNX, digits.x_test, digits.y_test)
    assert acc > 85.0


def test_tflite_keep_float_by_debugger_denylist(model: Any, digits: Any, tmp_path: Path) -> None:
    from device_agent.runtimes import load_model

    calib = load_dataset(digits.train)
    ex = TFLiteExporter()
    cfg = QuantizeConfig(samples=50)
    names = ex.sensitive_layers(model, cfg, calib, tmp_path, lambda d: 0.0)
    assert len(names) >= 3  # both convs and both dense layers have quantized outputs
    data = ex.quantize(model, QuantizeConfig(samples=50, keep_float=(names[0],)), calib, tmp_path)
    full = ex.quantize(model, cfg, calib, tmp_path)
    assert data != full
    path = tmp_path / "sel.tflite"
    path.write_bytes(data)
    m = load_model(path)
    assert m.inputs[0].dtype == "float32"  # selective quantization keeps float edges
    acc = artifact_accuracy(data, ModelFormat.TFLITE, digits.x_test, digits.y_test)
    assert acc > 85.0


def test_tflite_per_tensor_differs_from_per_channel(model: Any, digits: Any,
                                                    tmp_path: Path) -> None:
    calib = load_dataset(digits.train)
    ex = TFLiteExporter()
    a = ex.quantize(model, QuantizeConfig(samples=20, per_channel=True), calib, tmp_path)
    b = ex.quantize(model, QuantizeConfig(samples=20, per_channel=False), calib, tmp_path)
    assert a != b and len(b) < len(a)  # one scale per tensor instead of per filter


@pytest.mark.parametrize("target,remedies", [
    (Target.TFLITE, ["none", "float-layers=1", "float-layers=2", "float-layers=3"]),
    (Target.ONNX, ["none", "calibration=percentile", "calibration=entropy", "float-layers=1",
                   "float-layers=2", "float-layers=3"]),
])
def test_impossible_budget_tries_every_remedy_and_writes_nothing(
    keras_cnn: Path, digits: Any, tmp_path: Path, target: Target, remedies: list[str]
) -> None:
    out = tmp_path / "x.edgepkg"
    recipe = Recipe(target=target, max_drop=-50.0, measure_runs=2,
                    quantize=QuantizeConfig(samples=40))
    with pytest.raises(EdgeError) as e:
        optimize(Job(model=keras_cnn, data=digits.train, out=out, name="x"), recipe)
    msg = str(e.value)
    assert "after every remedy" in msg
    tried = [part.split(" (")[0] for part in msg.split("[")[1].split("]")[0].split(", ")]
    assert tried == remedies
    assert list(tmp_path.iterdir()) == []


def test_quantized_accuracy_is_measured_through_the_runtime(model: Any, digits: Any,
                                                            tmp_path: Path) -> None:
    ex = OnnxExporter()
    f = ex.export_float(model, tmp_path)
    acc_runtime = artifact_accuracy(f, ModelFormat.ONNX, digits.x_test, digits.y_test)
    keras_out = model.predict(digits.x_test, verbose=0)
    acc_keras = float((keras_out.argmax(1) == digits.y_test).mean() * 100)
    assert abs(acc_runtime - acc_keras) < 0.5
    assert np.isfinite(acc_runtime)
