"""``edge inspect`` on every artifact kind, with counts that agree across formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.converter.conftest import Optimized, run_cli


def _inspect(path: Path) -> dict[str, Any]:
    res = run_cli("inspect", path, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def keras_info(keras_cnn: Path) -> dict[str, Any]:
    return _inspect(keras_cnn)


def test_keras(keras_info: dict[str, Any], keras_cnn: Path) -> None:
    assert keras_info["kind"] == "keras"
    # conv1 16·(9+1), conv2 32·(144+1), fc1 64·(288+1), logits 10·65
    assert keras_info["params"] == 160 + 4640 + 18496 + 650
    # conv1 8·8·16·9, conv2 6·6·32·144, fc1 288·64, logits 64·10
    assert keras_info["macs"] == 9216 + 165888 + 18432 + 640
    assert keras_info["inputs"][0]["shape"] == [-1, 8, 8, 1]
    assert keras_info["file_size"] == keras_cnn.stat().st_size


def test_h5_and_saved_model(keras_cnn: Path, tmp_path: Path, keras_info: dict[str, Any]) -> None:
    import keras

    m = keras.models.load_model(keras_cnn)
    m.save(tmp_path / "m.h5")
    m.export(str(tmp_path / "sm"), verbose=False)
    for p in (tmp_path / "m.h5", tmp_path / "sm"):
        info = _inspect(p)
        assert info["kind"] in ("keras", "saved_model")
        assert info["macs"] == keras_info["macs"], p
        assert info["inputs"][0]["shape"] == [-1, 8, 8, 1]


def test_onnx(onnx_cnn: Path, keras_info: dict[str, Any]) -> None:
    info = _inspect(onnx_cnn)
    assert info["kind"] == "onnx" and info["opset"] > 0
    assert info["macs"] == keras_info["macs"]
    assert info["inputs"][0]["shape"] == [-1, 8, 8, 1]


def test_bundle_and_its_tflite(optimized: Optimized, tmp_path: Path,
                               keras_info: dict[str, Any]) -> None:
    from device_agent.bundle import open_bundle
    from device_agent.protocol.manifest import ModelFormat

    info = _inspect(optimized.bundle)
    assert info["kind"] == "edgepkg" and info["targets"] == ["tflite", "onnx"]
    assert info["manifest"]["optimization"]["recipe"]["int8"] is True
    assert info["optimization"][0]["optimized"]["size_bytes"] == info["files"][0]["size"]
    b = open_bundle(optimized.bundle, tmp_path / "b")
    tfl = _inspect(b.model_path(ModelFormat.TFLITE))
    assert tfl["kind"] == "tflite" and tfl["inputs"][0]["dtype"] == "int8"
    assert tfl["macs"] == keras_info["macs"]
    q_onnx = _inspect(b.model_path(ModelFormat.ONNX))
    assert q_onnx["ops"]["DequantizeLinear"] > 0
    assert q_onnx["macs"] == keras_info["macs"]
    # The bundle itself shows what its model costs: the first target's stages summed.
    assert (info["params"], info["macs"]) == (tfl["params"], tfl["macs"])
    assert [st["path"] for st in info["stages"]] == ["models/stage0.tflite"]


def test_text_output(keras_cnn: Path) -> None:
    res = run_cli("inspect", keras_cnn)
    assert res.exit_code == 0
    assert "params: 23946" in res.stdout and "macs: 194176" in res.stdout


@pytest.mark.parametrize("name,content,expect", [
    ("missing.onnx", None, "no such file"),
    ("model.bin", b"abc", "unknown artifact"),
    ("bad.tflite", b"not a flatbuffer at all", "cannot load"),
    ("bad.edgepkg", b"not a tar", "not a readable bundle"),
])
def test_bad_artifacts(tmp_path: Path, name: str, content: bytes | None, expect: str) -> None:
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    res = run_cli("inspect", p)
    assert res.exit_code == 2
    assert expect in res.stderr and len(res.stderr.strip().splitlines()) == 1
