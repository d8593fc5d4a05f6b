"""Float and int8 exports of a Keras model for both targets.

int8 goes through the backends' own quantizers (TFLite full-integer with int8 inputs
and outputs; ONNX Runtime static QDQ with per-channel weights), one function per
target in ``INT8``. When ``edge_sdk.passes`` ships its quantize passes, swap the entries
of ``INT8`` for them and the rest of the benchmark stays as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def tflite_float(model: Any, out: Path) -> Path:
    import tensorflow as tf

    out.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return out


def onnx_float(model: Any, out: Path, sample: np.ndarray) -> Path:
    model(sample[:1])  # Keras exports only a model that has been called
    model.export(str(out), format="onnx", verbose=False)
    return out


def tflite_int8(model: Any, float_path: Path, calib: np.ndarray, out: Path) -> Path:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    out.write_bytes(conv.convert())
    return out


class _Reader:
    """ONNX Runtime's calibration reader protocol over an array, one sample per call."""

    def __init__(self, name: str, x: np.ndarray):
        self._it = iter([{name: x[i : i + 1]} for i in range(len(x))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def onnx_int8(model: Any, float_path: Path, calib: np.ndarray, out: Path) -> Path:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    name = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    # U8 activations, S8 per-channel weights: ONNX Runtime's fast path on x86 (VPMADDUBSW).
    quantize_static(
        str(float_path), str(out), _Reader(name, calib),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )
    return out


# target → int8 export (keras model, float file of that target, calibration inputs, out)
INT8: dict[str, Callable[[Any, Path, np.ndarray, Path], Path]] = {
    "tflite": tflite_int8,
    "onnx": onnx_int8,
}
