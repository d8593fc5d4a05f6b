"""Accuracy of a model on labelled data: a Keras model in memory, or a model file run
through the device runtimes (the same code the agent uses)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from device_agent.manifest import ModelFormat
from device_agent.runtimes import load_model

BATCH = 64


def top1(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    pred = outputs.reshape(len(outputs), -1).argmax(axis=1)
    return round(float((pred == labels).mean() * 100.0), 4)


def predict_file(path: Path, x: np.ndarray) -> np.ndarray:
    """Float outputs of a ``.tflite``/``.onnx`` file, through ``device_agent.runtimes``."""
    model = load_model(path)
    parts = [model.predict1(x[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    return np.concatenate(parts, axis=0)


def artifact_accuracy(data: bytes, fmt: ModelFormat, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of a model given as bytes (written to a temporary file to be loaded)."""
    with tempfile.TemporaryDirectory(prefix="edge-eval-") as tmp:
        path = Path(tmp) / f"model.{fmt.value}"
        path.write_bytes(data)
        return top1(predict_file(path, x), y)


def keras_accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    out = model.predict(x, batch_size=256, verbose=0)
    if isinstance(out, (list, tuple)):
        out = out[-1]
    return top1(np.asarray(out), y)
