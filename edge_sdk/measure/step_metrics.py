"""Bytes and latency of the model after one step of a recipe.

Each graph step's model is exported (float TFLite for Keras, the ONNX graph as is) so the
report can say what the step shipped: raw bytes, bytes after the bundle's compression
(xz, the default codec, when the bundle stores files uncompressed, to show what it would save),
and the p50 single-sample latency in the device runtime.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device_agent.protocol.manifest import Compression, ModelFormat
from edge_sdk.bundle.writer import compress
from edge_sdk.measure.timing import measure_artifact
from edge_sdk.model.kind import Model, ModelKind

STEP_RUNS = 20  # timed calls per step: enough for a p50 on tiny models, cheap


@dataclass(frozen=True)
class StepSize:
    """What one recipe step shipped: raw and compressed bytes, and p50 latency when timed."""

    raw_bytes: int
    compressed_bytes: int
    latency_p50_ms: float | None


def codec(compression: Compression) -> Compression:
    """The codec a step's compressed size is measured with."""
    return Compression.XZ if compression == Compression.NONE else compression


def file_size(data: bytes, path: Path, x: np.ndarray, compression: Compression,
              runs: int = STEP_RUNS) -> StepSize:
    """Sizes of ``data`` and the latency of ``path`` (which holds ``data``)."""
    latency = measure_artifact(path, x, runs=runs, isolated=False).latency_p50_ms if runs else None
    return StepSize(len(data), len(compress(data, codec(compression))), latency)


def model_size(model: Model, x: np.ndarray, compression: Compression, runs: int = STEP_RUNS) -> StepSize:
    """Export ``model`` (Keras → float TFLite; ONNX as is) and measure it."""
    with tempfile.TemporaryDirectory(prefix="edge-step-") as tmp:
        work = Path(tmp)
        if ModelKind.of(model) is ModelKind.ONNX:
            data, fmt = model.SerializeToString(), ModelFormat.ONNX
        else:
            from edge_sdk.passes.quantize.tflite import TFLiteExporter

            data, fmt = TFLiteExporter().export_float(model, work), ModelFormat.TFLITE
        path = work / f"step.{fmt.value}"
        path.write_bytes(data)
        return file_size(data, path, x.astype(np.float32), compression, runs)
