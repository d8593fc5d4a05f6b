"""Fixtures for the compression tests: tiny real models and a TFLite/LiteRT round trip."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_sdk.model.data import Dataset
from edge_sdk.passes.base import PassContext


def to_tflite(model: Any, path: Path, *, int8_data: np.ndarray | None = None,
              per_channel: bool = True) -> Path:
    """Convert with TensorFlow's own converter (float, or full-integer int8 from data)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8_data is not None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None]] for x in int8_data[:64])
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        conv._experimental_disable_per_channel = not per_channel
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its captures
        path.write_bytes(conv.convert())
    return path


def run_litert(path: Path, x: np.ndarray) -> np.ndarray:
    from device_agent.runtimes import load_model

    m = load_model(path, runtime="litert")
    return np.concatenate([m.predict1(x[i : i + 1]) for i in range(len(x))])


def keras_accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))


def context(digits: Any, **kw: Any) -> PassContext:
    train = Dataset(digits.x_train, digits.y_train, str(digits.train))
    cal, val = train.split(0.8, seed=0)
    return PassContext(calibration=cal, validation=val, **kw)


@pytest.fixture(scope="session")
def cnn(keras_cnn: Path) -> Any:
    import keras

    return keras.models.load_model(keras_cnn, compile=False)


@pytest.fixture(scope="session")
def lenet(digits: Any) -> Any:
    """A LeNet-5-shaped net with BatchNorm on 8×8 digits, trained for a few seconds."""
    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(20, 3, padding="same", name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(50, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu", name="fc1")(x)
    out = keras.layers.Dense(10, name="logits")(x)
    m = keras.Model(inp, out, name="lenet")
    m.compile(optimizer=keras.optimizers.Adam(3e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(digits.x_train, digits.y_train, epochs=10, batch_size=64, verbose=0)
    return m


@pytest.fixture(scope="session")
def cnn_onnx(keras_cnn: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared Keras CNN exported to ONNX by the converter's own exporter."""
    import keras

    from edge_sdk.passes.quantize.onnx import OnnxExporter

    work = tmp_path_factory.mktemp("onnx")
    out = work / "cnn.onnx"
    out.write_bytes(OnnxExporter().export_float(keras.models.load_model(keras_cnn), work))
    return out
