"""Fixtures of the converter tests: the CLI runner, an ONNX export of the shared CNN and
one optimized bundle (both targets, int8) reused by several tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edge_sdk.cli import app


@dataclass(frozen=True)
class Optimized:
    bundle: Path
    report: dict[str, Any]
    stdout: str


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def onnx_cnn(keras_cnn: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared Keras CNN exported to ONNX the way the converter does it."""
    import keras

    from edge_sdk.passes.quantize.onnx import OnnxExporter

    work = tmp_path_factory.mktemp("onnx")
    data = OnnxExporter().export_float(keras.models.load_model(keras_cnn), work)
    out = work / "cnn.onnx"
    out.write_bytes(data)
    return out


@pytest.fixture(scope="session")
def optimized(keras_cnn: Path, digits: Any, tmp_path_factory: pytest.TempPathFactory) -> Optimized:
    """``edge optimize keras_cnn --int8 --target both --json`` once per session."""
    out = tmp_path_factory.mktemp("opt") / "cnn.edgepkg"
    res = run_cli("optimize", keras_cnn, "--data", digits.train, "--eval-data", digits.test,
                  "--int8", "--target", "both", "--runs", "5", "--json", "-o", out)
    assert res.exit_code == 0, res.output
    return Optimized(out, json.loads(res.stdout), res.stdout)
