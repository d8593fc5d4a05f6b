"""``edge optimize`` through the CLI with real TensorFlow, LiteRT and ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device_agent.bundle import open_bundle
from device_agent.engine import Engine
from device_agent.protocol.manifest import ModelFormat
from tests.converter.conftest import Optimized, run_cli


def test_bundle_verifies_and_runs_on_both_runtimes(optimized: Optimized, digits: Any,
                                                   tmp_path: Path) -> None:
    b = open_bundle(optimized.bundle, tmp_path / "b")
    assert set(b.manifest.targets) == {ModelFormat.TFLITE, ModelFormat.ONNX}
    for fmt in (ModelFormat.TFLITE, ModelFormat.ONNX):
        engine = Engine.from_bundle_dir(b.root, b.manifest, prefer=fmt)
        preds = engine.infer(digits.x_test)
        acc = float(np.mean([p.index for p in preds] == digits.y_test)) * 100
        assert acc > 85.0, (fmt, acc)
    tfl = b.manifest.stage_files(ModelFormat.TFLITE)[0]
    assert tfl.inputs[0].dtype == "int8" and tfl.inputs[0].scale and tfl.inputs[0].scale > 0
    assert tfl.outputs[0].dtype == "int8"
    # The top-level specs are the first target's alone, not TFLite inputs beside ONNX outputs.
    assert b.manifest.inputs == tfl.inputs and b.manifest.outputs == tfl.outputs
    assert b.manifest.labels == tuple(str(i) for i in range(10))


def test_int8_within_budget_and_smaller(optimized: Optimized) -> None:
    rep = optimized.report
    for t in rep["targets"]:
        q = t["quantization"]
        assert q["chosen"]["drop_points"] <= 1.0
        assert t["float_accuracy"] - t["final_accuracy"] <= 1.0
    for c in rep["comparisons"]:
        # The shared CNN is small (24k weights): QDQ node names and per-channel scales weigh
        # ~14 kB here (ONNX 0.39, TFLite 0.29); LeNet-5 is checked at ≤ 0.3 in test_demo.
        assert c["optimized"]["size_bytes"] <= 0.4 * c["baseline"]["size_bytes"], c
        assert c["change_pct"]["size_bytes"] < -60


def test_manifest_carries_the_optimization_summary(optimized: Optimized) -> None:
    from device_agent.bundle import read_manifest

    m = read_manifest(optimized.bundle)
    opt = m.optimization
    assert opt["recipe"]["int8"] is True and opt["recipe"]["target"] == "both"
    steps = [s["step"] for s in opt["steps"]]
    assert steps == ["baseline", "export tflite float32", "int8 tflite", "export onnx float32",
                     "int8 onnx"]
    comp = opt["comparisons"][0]
    assert comp["baseline"]["size_bytes"] > comp["optimized"]["size_bytes"]


def test_report_files_written_beside_the_bundle(optimized: Optimized) -> None:
    stem = optimized.bundle.with_name("cnn.report")
    data = json.loads(Path(f"{stem}.json").read_text())
    assert data == optimized.report
    md = Path(f"{stem}.md").read_text()
    assert "| size [bytes] |" in md and "remedy" in md
    assert Path(f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_printed_without_json(keras_cnn: Path, digits: Any, tmp_path: Path) -> None:
    out = tmp_path / "t.edgepkg"
    res = run_cli("optimize", keras_cnn, "--data", digits.train, "--runs", "3", "-o", out)
    assert res.exit_code == 0, res.output
    for word in ("size [bytes]", "accuracy", "error rate", "latency p50", "throughput",
                 "peak memory", "change"):
        assert word in res.stdout
    # without --int8 the bundle holds the float model
    b = open_bundle(out, tmp_path / "b")
    assert b.manifest.files[0].inputs[0].dtype == "float32"


def test_saved_model_input(keras_cnn: Path, digits: Any, tmp_path: Path) -> None:
    import keras

    keras.models.load_model(keras_cnn).export(str(tmp_path / "sm"), verbose=False)
    out = tmp_path / "s.edgepkg"
    res = run_cli("optimize", tmp_path / "sm", "--data", digits.train, "--int8", "--runs", "3",
                  "--json", "-o", out)
    assert res.exit_code == 0, res.output
    steps = json.loads(res.stdout)["steps"]
    assert steps[0]["note"] == "saved_model"
    assert steps[0]["macs"] == steps[1]["macs"] == 194176  # counted, not an opaque layer
    assert open_bundle(out, tmp_path / "b").manifest.files[0].inputs[0].dtype == "int8"


def test_onnx_input_takes_the_onnx_path(onnx_cnn: Path, digits: Any, tmp_path: Path) -> None:
    out = tmp_path / "o.edgepkg"
    res = run_cli("optimize", onnx_cnn, "--data", digits.train, "--int8", "--target", "onnx",
                  "--calibration", "percentile", "--runs", "3", "--json", "-o", out)
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    chosen = rep["targets"][0]["quantization"]["chosen"]
    assert chosen["config"].startswith("calibration=percentile")
    b = open_bundle(out, tmp_path / "b")
    assert b.manifest.targets == (ModelFormat.ONNX,)


def test_tflite_target_notes_minmax_only(keras_cnn: Path, digits: Any, tmp_path: Path) -> None:
    res = run_cli("optimize", keras_cnn, "--data", digits.train, "--int8", "--calibration",
                  "entropy", "--runs", "3", "--json", "-o", tmp_path / "e.edgepkg")
    assert res.exit_code == 0, res.output
    t = json.loads(res.stdout)["targets"][0]
    assert "minmax" in t["notes"][0]
    assert t["quantization"]["chosen"]["config"].startswith("calibration=minmax")


def _bad(tmp_path: Path, *args: Any) -> str:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    res = run_cli("optimize", *args, "--int8", "--runs", "3", "-o", out / "x.edgepkg")
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert list(out.iterdir()) == [], "output left behind"
    return lines[0]


def test_missing_model(tmp_path: Path, digits: Any) -> None:
    assert "no such model file" in _bad(tmp_path, tmp_path / "nope.keras", "--data", digits.train)


def test_unknown_model_format(tmp_path: Path, digits: Any) -> None:
    p = tmp_path / "m.pt"
    p.write_bytes(b"x")
    assert "unknown model format" in _bad(tmp_path, p, "--data", digits.train)


@pytest.mark.parametrize("suffix", [".keras", ".onnx"])
def test_corrupt_model(tmp_path: Path, digits: Any, suffix: str) -> None:
    p = tmp_path / f"broken{suffix}"
    p.write_bytes(b"\x00garbage" * 50)
    target = ["--target", "onnx"] if suffix == ".onnx" else []
    msg = _bad(tmp_path, p, "--data", digits.train, *target)
    assert str(p) in msg and "cannot read" in msg


def test_truncated_keras_model(tmp_path: Path, digits: Any, keras_cnn: Path) -> None:
    p = tmp_path / "cut.keras"
    p.write_bytes(keras_cnn.read_bytes()[:2000])
    assert "cannot read" in _bad(tmp_path, p, "--data", digits.train)


def test_data_shape_mismatch(tmp_path: Path, keras_cnn: Path) -> None:
    d = tmp_path / "d.npz"
    np.savez(d, x=np.zeros((20, 5), np.float32), y=np.zeros(20, np.int64))
    msg = _bad(tmp_path, keras_cnn, "--data", d)
    assert "expects (8, 8, 1)" in msg


def test_empty_data(tmp_path: Path, keras_cnn: Path) -> None:
    d = tmp_path / "d.npz"
    np.savez(d, x=np.zeros((0, 8, 8, 1), np.float32), y=np.zeros(0, np.int64))
    assert "empty" in _bad(tmp_path, keras_cnn, "--data", d)


def test_labels_missing(tmp_path: Path, keras_cnn: Path, digits: Any) -> None:
    d = tmp_path / "d.npz"
    np.savez(d, x=digits.x_test)
    assert "no labels" in _bad(tmp_path, keras_cnn, "--data", d)


def test_labels_out_of_range(tmp_path: Path, keras_cnn: Path, digits: Any) -> None:
    d = tmp_path / "d.npz"
    np.savez(d, x=digits.x_test, y=digits.y_test + 10)
    assert "10 outputs" in _bad(tmp_path, keras_cnn, "--data", d)


def test_missing_data(tmp_path: Path, keras_cnn: Path) -> None:
    assert "no such data" in _bad(tmp_path, keras_cnn, "--data", tmp_path / "none.npz")


def test_tflite_target_from_onnx_is_refused(tmp_path: Path, onnx_cnn: Path, digits: Any) -> None:
    # Without --target an .onnx input goes to ONNX (tests/byom); asked for TFLite, it is refused.
    assert "--target onnx" in _bad(tmp_path, onnx_cnn, "--data", digits.train, "--target", "tflite")


def test_bad_version_refused_before_any_work(tmp_path: Path, keras_cnn: Path,
                                             digits: Any) -> None:
    assert "--bundle-version '1.0'" in _bad(tmp_path, keras_cnn, "--data", digits.train,
                                             "--bundle-version", "1.0")


def test_unknown_target(tmp_path: Path, keras_cnn: Path, digits: Any) -> None:
    assert "expected tflite, onnx or both" in _bad(tmp_path, keras_cnn, "--data", digits.train,
                                                  "--target", "coreml")


def test_json_stdout_is_clean_in_a_real_process(keras_cnn: Path, digits: Any,
                                                tmp_path: Path) -> None:
    """TensorFlow writes to file descriptors 1 and 2 from C++; --json must still parse."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    out = tmp_path / "p.edgepkg"
    proc = subprocess.run(
        [sys.executable, "-m", "edge_sdk", "optimize", str(keras_cnn), "--data", str(digits.train),
         "--int8", "--target", "onnx", "--runs", "3", "--json", "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["bundle"] == str(out)
