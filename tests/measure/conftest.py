"""Real artifacts for eval/bench tests: float and int8 .tflite, .onnx, and a bundle.

All are converted once per session from the shared ``keras_cnn`` fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DigitsSplit


@dataclass(frozen=True)
class Artifacts:
    keras: Path
    tflite: Path
    tflite_int8: Path
    onnx: Path
    bundle: Path
    bundle_both: Path  # int8 .tflite and float .onnx in one bundle


def _tflite(model_path: Path, out: Path, calib: np.ndarray | None) -> Path:
    import keras
    import tensorflow as tf

    model = keras.models.load_model(model_path, compile=False)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if calib is not None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    out.write_bytes(conv.convert())
    return out


def _bundle(out: Path, *models: Path, validation: bytes | None = None) -> Path:
    from device_agent.protocol.manifest import ModelFormat
    from device_agent.runtimes import load_model
    from edge_sdk.bundle.writer import ModelPayload, build_bundle

    payloads = []
    for model in models:
        m = load_model(model)
        payloads.append(ModelPayload(
            data=model.read_bytes(), format=ModelFormat(model.suffix[1:]), inputs=m.inputs, outputs=m.outputs
        ))
    build_bundle(out, name="digits", version="1.0.0", models=payloads,
                 labels=tuple(str(i) for i in range(10)), validation=validation)
    return out


@pytest.fixture(scope="session")
def artifacts(keras_cnn: Path, digits: DigitsSplit, tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    import keras

    root = tmp_path_factory.mktemp("measure")
    float_tfl = _tflite(keras_cnn, root / "cnn.tflite", None)
    int8_tfl = _tflite(keras_cnn, root / "cnn_int8.tflite", digits.x_train[:100])
    onnx_path = root / "cnn.onnx"
    km = keras.models.load_model(keras_cnn, compile=False)
    km(digits.x_test[:1])  # Keras exports only a model that has been called once
    km.export(str(onnx_path), format="onnx", verbose=False)
    bundle = _bundle(root / "cnn_int8.edgepkg", int8_tfl)
    # The mixed-fleet bundle also carries the test split as its validation set.
    both = _bundle(root / "cnn_both.edgepkg", int8_tfl, onnx_path, validation=digits.test.read_bytes())
    return Artifacts(keras_cnn, float_tfl, int8_tfl, onnx_path, bundle, both)
