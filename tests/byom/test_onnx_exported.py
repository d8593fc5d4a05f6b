"""ONNX graphs as exporters write them (weights in ``Constant`` nodes, dynamic H/W, an
``If`` subgraph): ``edge inspect`` counts them truly and ``edge optimize --int8`` stores
real int8 weights, per channel, and says so from the file."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_sdk.cli import app
from edge_sdk.model import analysis
from tests.byom.conftest import Byom

runner = CliRunner()


def inspect(*args: str) -> dict:  # type: ignore[type-arg]
    res = runner.invoke(app, ["inspect", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)  # type: ignore[no-any-return]


def test_inspect_counts_constant_weights_and_asks_for_dynamic_dims(byom: Byom) -> None:
    info = inspect(str(byom.cnn))
    # conv0 16x3x3x3 + 16, conv1 32x16x3x3 + 32, fc 4x32 + 4: all Constant nodes.
    assert info["params"] == 432 + 16 + 4608 + 32 + 128 + 4
    assert info["macs"].startswith("unknown: give --shape input=Nx3xHxW")
    fixed = inspect(str(byom.cnn), "--shape", "input=1x3x48x192")
    want = (analysis.conv_macs((24, 96), 16, (3, 3), 3) + analysis.conv_macs((12, 48), 32, (3, 3), 16)
            + analysis.dense_macs(1, 32, 4))
    assert fixed["macs"] == want
    res = runner.invoke(app, ["inspect", str(byom.cnn), "--shape", "image=1x3x48x192"])
    assert res.exit_code == 2 and "the model's inputs are ['input']" in res.output


def test_inspect_walks_if_branches_and_says_which(byom: Byom) -> None:
    info = inspect(str(byom.vad))
    assert info["params"] == 16 * 8 + 8 * 8  # W outside, W2 inside the then-branch
    assert info["macs"] == 16 * 8 + 8 * 8
    assert info["macs_notes"] == ["If rate_if: counted then branch (64 MACs; else 0, then 64)"]


@pytest.fixture(scope="module")
def cnn_data(byom: Byom) -> Path:
    import onnxruntime as ort

    x = np.random.default_rng(5).normal(size=(96, 3, 24, 48)).astype(np.float32)
    y = ort.InferenceSession(str(byom.cnn)).run(None, {"input": x})[0].argmax(axis=1)
    np.savez(byom.root / "cnn_data.npz", x=x, y=y)
    return byom.root / "cnn_data.npz"


def _onnx_member(bundle: Path):  # type: ignore[no-untyped-def]
    import onnx

    with tarfile.open(bundle) as t:
        name = next(n for n in t.getnames() if n.endswith(".onnx"))
        return onnx.load_from_string(t.extractfile(name).read())  # type: ignore[union-attr]


def test_int8_of_constant_weights_is_real_int8_per_channel(byom: Byom, cnn_data: Path, tmp_path: Path) -> None:
    from edge_sdk.passes.quantize.onnx_prep import check_int8

    out = tmp_path / "cnn.edgepkg"
    # No --target: an .onnx input goes to ONNX. --max-drop bounds int8, no Keras search.
    res = runner.invoke(app, ["optimize", str(byom.cnn), "--data", str(cnn_data), "--int8", "--max-drop", "5",
                              "--runs", "2", "--samples", "32", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    check = check_int8(_onnx_member(out))
    assert check.int8_weights == 3 and check.float_weights == 0
    assert check.per_channel >= 2 and check.opset >= 13  # upgraded from opset 11 for the axis
    report = json.loads(res.output)
    note = next(s["note"] for s in report["steps"] if s["step"] == "int8 onnx")
    assert "int8 weights: 3 tensors" in note and "float weights left: 0 tensors" in note
    assert f"{check.per_channel} per-channel" in note


def test_onnx_runtime_default_on_constant_weights_keeps_them_float(byom: Byom, cnn_data: Path,
                                                                   tmp_path: Path) -> None:
    """The baseline the fix is measured against: quantize_static straight on the export."""
    import onnx
    from onnxruntime.quantization import QuantFormat, quantize_static

    from edge_sdk.passes.quantize.onnx_prep import check_int8

    class Reader:
        def __init__(self) -> None:
            self.it = iter([{"input": np.load(cnn_data)["x"][:16]}])

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self.it, None)

    out = tmp_path / "ort.onnx"
    quantize_static(str(byom.cnn), str(out), Reader(), quant_format=QuantFormat.QDQ)
    check = check_int8(onnx.load(str(out)))
    assert check.int8_weights == 0 and check.float_weights == 6


def test_sensitivity_ranks_every_node_in_one_pass(byom: Byom, cnn_data: Path, tmp_path: Path) -> None:
    import onnx

    from edge_sdk.model.data import load_dataset
    from edge_sdk.passes.quantize.base import QuantizeConfig
    from edge_sdk.passes.quantize.onnx import OnnxExporter

    calls: list[bytes] = []
    ranked = OnnxExporter().sensitive_layers(onnx.load(str(byom.cnn)), QuantizeConfig(samples=32),
                                             load_dataset(cnn_data), tmp_path, calls.append)  # type: ignore[arg-type]
    assert sorted(ranked) == ["conv0", "conv1", "fc"] and calls == []  # no model re-quantized per node


def test_bench_feeds_rank0_int64_as_declared_and_asks_for_free_dims(byom: Byom) -> None:
    res = runner.invoke(app, ["bench", str(byom.vad), "--runs", "3"])
    assert res.exit_code == 2 and "give --shape state=2x?x8 with numbers" in res.output
    res = runner.invoke(app, ["bench", str(byom.vad), "--runs", "3", "--shape", "input=1x16",
                              "--shape", "state=2x1x8", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["input_source"] == "random"
    res = runner.invoke(app, ["bench", str(byom.vad), "--runs", "3", "--shape", "state=3x1x8"])
    assert res.exit_code == 2 and "does not fit the declared (2, -1, 8)" in res.output


def test_inspect_tflite_with_free_height_and_width(tmp_path: Path) -> None:
    from tests.byom.models import dynamic_tflite

    path = dynamic_tflite(tmp_path / "dyn.tflite")
    info = inspect(str(path))
    name = info["inputs"][0]["name"]
    assert info["macs"].startswith(f"unknown: give --shape {name}=1x?x?x3")
    fixed = inspect(str(path), "--shape", f"{name}=1x32x32x3")
    assert fixed["macs"] == analysis.conv_macs((32, 32), 8, (3, 3), 3)
