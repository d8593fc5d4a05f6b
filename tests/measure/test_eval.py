"""``edge eval`` through the CLI on real TFLite, ONNX, bundle and Keras artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_sdk.cli import app
from tests.conftest import DigitsSplit
from tests.measure.conftest import Artifacts

runner = CliRunner()


def _eval_json(*args: str) -> dict:
    res = runner.invoke(app, ["eval", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _raw_tflite_top1(path: Path, x: np.ndarray) -> np.ndarray:
    """One sample at a time through a bare LiteRT interpreter, quantizing by hand."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zp = inp["quantization"]
    preds = []
    for row in x:
        t = row[None]
        if inp["dtype"] == np.int8:
            t = np.clip(np.round(t / scale) + zp, -128, 127).astype(np.int8)
        it.set_tensor(inp["index"], t)
        it.invoke()
        preds.append(int(np.argmax(it.get_tensor(out["index"])[0])))
    return np.array(preds)


def _raw_onnx_top1(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0].argmax(1) for i in range(len(x))])


@pytest.mark.parametrize("kind", ["tflite", "tflite_int8", "bundle"])
def test_tflite_accuracy_equals_raw_interpreter(kind: str, artifacts: Artifacts, digits: DigitsSplit) -> None:
    path = getattr(artifacts, kind)
    model_file = artifacts.tflite_int8 if kind == "bundle" else path
    want = float(np.mean(_raw_tflite_top1(model_file, digits.x_test) == digits.y_test))
    one = _eval_json(str(path), "--data", str(digits.test), "--batch-size", "1")
    assert one["samples"] == len(digits.y_test)
    assert one["accuracy"] == pytest.approx(want, abs=1e-12)
    assert one["error_rate"] == pytest.approx(1 - want, abs=1e-12)
    assert one["runtime"] == "litert"
    batched = _eval_json(str(path), "--data", str(digits.test))
    assert batched["batch_size"] == 64  # LiteRT resized the batch dimension
    # Batched float kernels may sum in another order; at most one sample may flip.
    assert abs(batched["correct"] - one["correct"]) <= 1


def test_onnx_accuracy_equals_raw_session(artifacts: Artifacts, digits: DigitsSplit) -> None:
    want = float(np.mean(_raw_onnx_top1(artifacts.onnx, digits.x_test) == digits.y_test))
    got = _eval_json(str(artifacts.onnx), "--data", str(digits.test), "--batch-size", "1")
    assert got["accuracy"] == pytest.approx(want, abs=1e-12)
    assert got["runtime"] == "onnxruntime"
    assert got["accuracy"] > 0.8  # the fixture model learned digits; a broken export would not


def test_keras_accuracy_equals_keras_predict(artifacts: Artifacts, digits: DigitsSplit) -> None:
    import keras

    m = keras.models.load_model(artifacts.keras, compile=False)
    want = float(np.mean(m.predict(digits.x_test, verbose=0).argmax(1) == digits.y_test))
    got = _eval_json(str(artifacts.keras), "--data", str(digits.test))
    assert got["accuracy"] == pytest.approx(want, abs=1e-12)
    assert got["runtime"] == "keras"


def test_reference_agreement(artifacts: Artifacts, digits: DigitsSplit) -> None:
    same = _eval_json(str(artifacts.tflite_int8), "--data", str(digits.test),
                      "--reference", str(artifacts.tflite_int8))
    assert same["agreement"] == 1.0
    # int8 against its float source: computed from both models' real predictions.
    raw_int8 = _raw_tflite_top1(artifacts.tflite_int8, digits.x_test)
    raw_float = _raw_tflite_top1(artifacts.tflite, digits.x_test)
    cross = _eval_json(str(artifacts.tflite_int8), "--data", str(digits.test),
                       "--reference", str(artifacts.tflite), "--batch-size", "1")
    assert cross["agreement"] == pytest.approx(float(np.mean(raw_int8 == raw_float)), abs=1e-12)


def test_bundle_with_both_targets_follows_runtime(artifacts: Artifacts, digits: DigitsSplit) -> None:
    default = _eval_json(str(artifacts.bundle_both), "--data", str(digits.test))
    onnx = _eval_json(str(artifacts.bundle_both), "--data", str(digits.test), "--runtime", "onnxruntime")
    assert default["runtime"] == "litert" and onnx["runtime"] == "onnxruntime"
    assert onnx["accuracy"] == _eval_json(str(artifacts.onnx), "--data", str(digits.test))["accuracy"]
    assert default["accuracy"] == _eval_json(str(artifacts.tflite_int8), "--data", str(digits.test))["accuracy"]


def test_bundle_validation_set_is_the_default_data(artifacts: Artifacts, digits: DigitsSplit) -> None:
    own = _eval_json(str(artifacts.bundle_both))
    explicit = _eval_json(str(artifacts.bundle_both), "--data", str(digits.test))
    assert own["samples"] == len(digits.y_test) and own["accuracy"] == explicit["accuracy"]
    assert own["data"].endswith(":validation.npz")
    _fails([str(artifacts.bundle)], "no validation set")
    _fails([str(artifacts.tflite)], "--data is required")


def test_reference_without_labels_reports_agreement_only(artifacts: Artifacts, digits: DigitsSplit,
                                                        tmp_path: Path) -> None:
    unlabelled = tmp_path / "x.npz"
    np.savez(unlabelled, x=digits.x_test[:50])
    got = _eval_json(str(artifacts.onnx), "--data", str(unlabelled), "--reference", str(artifacts.tflite))
    assert got["accuracy"] is None and got["samples"] == 50
    assert 0.8 <= got["agreement"] <= 1.0


def test_flattened_data_is_reshaped_to_the_model(artifacts: Artifacts, digits: DigitsSplit,
                                                 tmp_path: Path) -> None:
    flat = tmp_path / "flat.npz"
    np.savez(flat, x=digits.x_test.reshape(len(digits.x_test), -1), y=digits.y_test)
    a = _eval_json(str(artifacts.tflite), "--data", str(flat))
    b = _eval_json(str(artifacts.tflite), "--data", str(digits.test))
    assert a["accuracy"] == b["accuracy"]


def test_human_output(artifacts: Artifacts, digits: DigitsSplit) -> None:
    res = runner.invoke(app, ["eval", str(artifacts.bundle), "--data", str(digits.test)])
    assert res.exit_code == 0, res.output
    assert "accuracy:" in res.stdout and "error rate:" in res.stdout


def _fails(args: list[str], *needles: str) -> str:
    res = runner.invoke(app, ["eval", *args])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_missing_labels(artifacts: Artifacts, digits: DigitsSplit, tmp_path: Path) -> None:
    p = tmp_path / "nolabels.npz"
    np.savez(p, x=digits.x_test)
    _fails([str(artifacts.tflite), "--data", str(p)], "nolabels.npz", "no labels")


def test_shape_mismatch(artifacts: Artifacts, tmp_path: Path) -> None:
    p = tmp_path / "wrong.npz"
    np.savez(p, x=np.zeros((4, 5, 5, 1), np.float32), y=np.zeros(4, np.int64))
    _fails([str(artifacts.onnx), "--data", str(p)], "wrong.npz", "(5, 5, 1)", "(8, 8, 1)")


def test_empty_data(artifacts: Artifacts, tmp_path: Path) -> None:
    p = tmp_path / "empty.npz"
    np.savez(p, x=np.zeros((0, 8, 8, 1), np.float32), y=np.zeros(0, np.int64))
    _fails([str(artifacts.tflite), "--data", str(p)], "empty.npz", "empty")


def test_corrupt_models(artifacts: Artifacts, digits: DigitsSplit, tmp_path: Path) -> None:
    for src in (artifacts.tflite, artifacts.onnx, artifacts.keras):
        bad = tmp_path / f"bad{src.suffix}"
        data = bytearray(src.read_bytes())
        bad.write_bytes(bytes(data[: len(data) // 3]))
        _fails([str(bad), "--data", str(digits.test)], bad.name)


def test_corrupt_bundle_byte(artifacts: Artifacts, digits: DigitsSplit, tmp_path: Path) -> None:
    data = bytearray(artifacts.bundle.read_bytes())
    model = artifacts.tflite_int8.read_bytes()
    at = data.find(model) + len(model) // 2
    assert at > len(model) // 2
    data[at] ^= 0xFF  # inside the model member: the sha256 check must refuse it
    bad = tmp_path / "bad.edgepkg"
    bad.write_bytes(bytes(data))
    _fails([str(bad), "--data", str(digits.test)])


def test_missing_model(digits: DigitsSplit, tmp_path: Path) -> None:
    _fails([str(tmp_path / "nope.tflite"), "--data", str(digits.test)], "nope.tflite")


def test_pure_top1_accuracy_agreement() -> None:
    from device_agent.errors import EdgeError
    from edge_sdk.measure.evaluate import accuracy, agreement, predicted_classes, top1

    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0], [1.0, 0.5, 0.2]])
    pred = predicted_classes(logits)
    assert pred.tolist() == [1, 0, 2, 0]
    assert accuracy(pred, np.array([1, 0, 1, 1])) == 0.5
    assert agreement(pred, pred) == 1.0
    assert predicted_classes(logits[:, :, None]).tolist() == [1, 0, 2, 0]  # trailing dims flattened
    assert top1(logits, np.array([1, 0, 1, 1])) == 50.0  # the pipeline's percent form
    with pytest.raises(EdgeError, match="3 predictions for 4 labels"):
        accuracy(pred[:3], np.zeros(4))


def test_a_bundle_without_labels_reports_agreement_with_its_recorded_outputs(tmp_path: Path) -> None:
    """An ``edge optimize`` bundle's validation set holds the outputs the model gave at
    build time, not labels: eval replays it and says it measured agreement, not accuracy."""
    from device_agent.protocol.manifest import ModelFormat, TensorSpec
    from edge_sdk.bundle.writer import ModelPayload, build_bundle
    from tests.ota.conftest import onnx_model, reference_outputs, validation_npz

    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(64, 10)).astype(np.float32), rng.normal(size=10).astype(np.float32)
    x = rng.uniform(0, 1, (8, 64)).astype(np.float32)
    out = tmp_path / "m.edgepkg"
    build_bundle(out, name="m", version="1.0.0",
                 models=[ModelPayload(onnx_model(w, b), ModelFormat.ONNX,
                                      inputs=(TensorSpec("x", (-1, 64), "float32"),),
                                      outputs=(TensorSpec("y", (-1, 10), "float32"),))],
                 validation=validation_npz(x, reference_outputs(x, w, b)))
    got = _eval_json(str(out))
    assert (got["measured"], got["accuracy"], got["agreement"], got["samples"]) == ("agreement", None, 1.0, 8)
    res = runner.invoke(app, ["eval", str(out)])
    assert res.exit_code == 0, res.output
    assert "not accuracy" in res.stdout and "agreement:  100.00%" in res.stdout


def test_json_rates_are_rounded(artifacts: Artifacts, digits: DigitsSplit) -> None:
    got = _eval_json(str(artifacts.tflite), "--data", str(digits.test))
    for k in ("accuracy", "error_rate"):
        assert got[k] == round(got[k], 6)
    assert got["accuracy"] + got["error_rate"] == pytest.approx(1.0)
