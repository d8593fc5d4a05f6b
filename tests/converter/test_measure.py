"""``measure_artifact``: numbers from a real runtime, in an isolated process."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import pytest

from device_agent.errors import EdgeError
from edge_sdk.measure.timing import measure_artifact
from tests.converter.conftest import Optimized


def test_measure_tflite_isolated(optimized: Optimized, digits: Any, tmp_path: Path) -> None:
    from device_agent.bundle import open_bundle
    from device_agent.protocol.manifest import ModelFormat

    b = open_bundle(optimized.bundle, tmp_path / "b")
    m = measure_artifact(b.model_path(ModelFormat.TFLITE), digits.x_test, runs=20, batch=8)
    assert m.backend == "litert" and m.runs == 20 and m.batch == 8
    assert 0 < m.latency_p50_ms <= m.latency_p95_ms <= m.latency_p99_ms
    assert m.throughput_per_s > 0 and m.load_ms > 0
    # The child imports no TensorFlow: its peak is far below this (TF-laden) process's.
    mine = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    assert 0 < m.peak_rss_mb < mine


def test_measure_onnx_in_process(onnx_cnn: Path, digits: Any) -> None:
    m = measure_artifact(onnx_cnn, digits.x_test, runs=5, batch=4, isolated=False)
    assert m.backend == "onnxruntime" and m.latency_p50_ms > 0


def test_measure_errors(onnx_cnn: Path, digits: Any, tmp_path: Path) -> None:
    with pytest.raises(EdgeError):
        measure_artifact(onnx_cnn, digits.x_test[:0])
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    with pytest.raises(EdgeError, match="measurement failed"):
        measure_artifact(bad, digits.x_test, runs=2)
