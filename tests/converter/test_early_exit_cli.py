"""``edge optimize --early-exit`` and ``edge eval`` on its cascade, through the CLI, with
real TensorFlow, LiteRT and ONNX Runtime."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device_agent.bundle import open_bundle, read_manifest
from device_agent.errors import EdgeError
from device_agent.protocol.manifest import ModelFormat
from tests.converter.conftest import run_cli


@dataclass(frozen=True)
class ExitRun:
    bundle: Path
    report: dict[str, Any]


def _optimize(out: Path, keras_cnn: Path, digits: Any, *extra: str) -> ExitRun:
    res = run_cli("optimize", keras_cnn, "--data", digits.train, "--eval-data", digits.test,
                  "--early-exit", "--target", "both", "--runs", "3", "--exit-epochs", "15",
                  "--json", "-o", out, *extra)
    assert res.exit_code == 0, res.output
    return ExitRun(out, json.loads(res.stdout))


@pytest.fixture(scope="session")
def float_exit(keras_cnn: Path, digits: Any, tmp_path_factory: pytest.TempPathFactory) -> ExitRun:
    """Float stages (TFLite and ONNX), an exit after conv1."""
    out = tmp_path_factory.mktemp("exitf") / "cnn-exit.edgepkg"
    return _optimize(out, keras_cnn, digits, "--exit-at", "conv1")


@pytest.fixture(scope="session")
def int8_exit(keras_cnn: Path, digits: Any, tmp_path_factory: pytest.TempPathFactory) -> ExitRun:
    """int8 stages (TFLite full-integer, ONNX QDQ), exits placed by MAC fraction, entropy."""
    out = tmp_path_factory.mktemp("exit8") / "cnn-exit8.edgepkg"
    return _optimize(out, keras_cnn, digits, "--int8", "--exit-fractions", "0.1",
                     "--exit-criterion", "entropy", "--max-drop", "1.0")


def _eval(bundle: Path, data: Path, *extra: str) -> dict[str, Any]:
    res = run_cli("eval", bundle, "--data", data, "--json", *extra)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_bundle_holds_stages_per_target_and_verifies(float_exit: ExitRun, tmp_path: Path) -> None:
    b = open_bundle(float_exit.bundle, tmp_path / "b")  # every sha256 checked
    m = b.manifest
    for fmt in (ModelFormat.TFLITE, ModelFormat.ONNX):
        files = m.stage_files(fmt)
        assert [f.stage for f in files] == [0, 1]
        assert all((b.root / f.path).is_file() for f in files)
        assert len(files[0].outputs) == 2 and len(files[1].outputs) == 1
    assert [e.index for e in m.exits] == [0]
    ex = m.exits[0]
    assert 0.0 <= ex.threshold <= 1.0 and ex.criterion == "max_prob"
    ee = m.optimization["early_exit"]
    assert ee["split_layers"] == ["conv1"]
    assert ex.macs == ee["stage_macs"][0] < ee["full_macs"]
    assert ex.expected_exit_rate == pytest.approx(ee["exit_rates"][0])
    # calibrated on validation within --max-drop (default 1 point) of the full model
    assert ee["cascade_accuracy"] >= ee["full_accuracy"] - 0.01 - 1e-9


def test_report_covers_the_cascade(float_exit: ExitRun) -> None:
    c = float_exit.report["cascade"]
    assert [t["format"] for t in c["targets"]] == ["tflite", "onnx"]
    for t in c["targets"]:
        # measured on the held-out split (--eval-data), which calibration never saw
        assert sum(t["exits"].values()) == float_exit.report["held_out"]["samples"]
        assert t["latency_full_ms"] > 0 and t["latency_cascade_ms"] > 0
        assert t["files"] == [f"stage0.{t['format']}", f"stage1.{t['format']}"]
    steps = [s["step"] for s in float_exit.report["steps"]]
    assert steps[-2:] == ["early exit tflite", "early exit onnx"]
    stem = float_exit.bundle.with_name("cnn-exit.report")
    md = stem.with_suffix(".report.md").read_text()
    assert "## Early exit: exits after conv1" in md
    assert json.loads(stem.with_suffix(".report.json").read_text())["cascade"] == c
    assert stem.with_suffix(".report.png").stat().st_size > 1000


def test_eval_counts_exits_and_matches_the_report(float_exit: ExitRun, digits: Any) -> None:
    r = _eval(float_exit.bundle, digits.test)
    assert r["samples"] == len(digits.y_test)
    assert sum(r["exits"].values()) == r["samples"]
    tfl = float_exit.report["cascade"]["targets"][0]
    # --eval-data was the validation split: eval runs the same cascade on the same rows.
    assert r["exits"] == {k: v for k, v in tfl["exits"].items() if v}  # eval lists stages used
    assert r["accuracy"] * 100 == pytest.approx(tfl["accuracy"])
    text = run_cli("eval", float_exit.bundle, "--data", digits.test).stdout
    assert "exits:      stage 0: " in text


def test_threshold_one_gives_the_full_models_answers(float_exit: ExitRun, digits: Any,
                                                     keras_cnn: Path) -> None:
    r = _eval(float_exit.bundle, digits.test, "--exit-threshold", "1.0", "--reference", keras_cnn)
    assert r["exits"] == {"1": len(digits.y_test)}
    assert r["agreement"] == 1.0
    low = _eval(float_exit.bundle, digits.test, "--exit-threshold", "0:0.0")
    assert low["exits"] == {"0": len(digits.y_test)}


def test_int8_cascade_on_both_runtimes(int8_exit: ExitRun, digits: Any) -> None:
    m = read_manifest(int8_exit.bundle)
    assert m.exits[0].criterion == "entropy"
    tfl = m.stage_files(ModelFormat.TFLITE)
    # stage 0's first layer stays float (EarlyExitConfig.float_first); the rest is int8
    assert tfl[0].inputs[0].dtype == "float32" and tfl[1].inputs[0].dtype == "int8"
    assert _tensor_dtypes(int8_exit, tfl[0].unpacked_path) >= {"float32", "int8"}
    assert int8_exit.report["recipe"]["early_exit"]["float_first"] is True
    assert int8_exit.report["recipe"]["early_exit"]["mac_fractions"] == [0.1]
    for runtime in ("litert", "onnxruntime"):
        r = _eval(int8_exit.bundle, digits.test, "--runtime", runtime)
        assert r["runtime"] == runtime
        assert sum(r["exits"].values()) == r["samples"]
        assert r["accuracy"] > 0.85, (runtime, r)


def _tensor_dtypes(run: ExitRun, member: str) -> set[str]:
    from ai_edge_litert.interpreter import Interpreter

    with tempfile.TemporaryDirectory() as tmp:
        b = open_bundle(run.bundle, Path(tmp) / "b")
        it = Interpreter(model_path=str(b.root / member))
        return {np.dtype(d["dtype"]).name for d in it.get_tensor_details()}


def test_exit_int8_first_needs_early_exit() -> None:
    from edge_sdk.cli.optimize_cmd import _early_exit

    cfg = _early_exit(True, "conv1", None, "max_prob", 5, int8_first=True)
    assert cfg is not None and not cfg.float_first
    with pytest.raises(EdgeError, match="--exit-int8-first need --early-exit"):
        _early_exit(False, None, None, "max_prob", 5, int8_first=True)


def test_eval_applies_the_manifest_preprocessing(keras_cnn: Path, digits: Any,
                                                 tmp_path: Path) -> None:
    """Raw readings (flat 0..16 pixel counts) become the model's (8, 8, 1) in [0, 1] only
    through the bundle's steps: eval and the agent compute the same thing."""
    import keras

    from device_agent.loader import engine_for
    from device_agent.runtimes import load_model
    from edge_sdk.bundle.writer import ModelPayload, build_bundle
    from edge_sdk.passes.quantize.tflite import to_tflite

    f = tmp_path / "m.tflite"
    f.write_bytes(to_tflite(keras.models.load_model(keras_cnn)))
    m = load_model(f)
    steps = ({"op": "scale", "factor": 1 / 16}, {"op": "reshape", "shape": [8, 8, 1]})
    bundle, _ = build_bundle(tmp_path / "pre.edgepkg", name="pre", version="1.0.0",
                             models=[ModelPayload(f.read_bytes(), ModelFormat.TFLITE,
                                                  inputs=m.inputs, outputs=m.outputs)],
                             preprocessing=steps)
    raw = tmp_path / "raw.npz"
    x_raw = np.round(digits.x_test.reshape(len(digits.x_test), -1) * 16)
    np.savez(raw, x=x_raw, y=digits.y_test)
    got = _eval(bundle, raw)
    want = float((m.predict1(x_raw.reshape(-1, 8, 8, 1) / 16).argmax(1) == digits.y_test).mean())
    assert got["accuracy"] == pytest.approx(want) and want > 0.85
    with engine_for(bundle) as e:
        agent = [e.infer_one(x).index for x in x_raw]
    assert float(np.mean(np.array(agent) == digits.y_test)) == pytest.approx(got["accuracy"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--exit-at", "conv9"), "--exit-at conv9: no such layer"),
        (("--exit-fractions", "0.2,1.5"), "strictly between 0 and 1"),
        (("--exit-criterion", "margin"), "--exit-criterion 'margin'"),
        (("--exit-at", "conv1", "--exit-fractions", "0.2"), "not both"),
    ],
)
def test_bad_exit_options_are_refused(keras_cnn: Path, digits: Any, tmp_path: Path,
                                      args: tuple[str, ...], needle: str) -> None:
    out = tmp_path / "out"
    res = run_cli("optimize", keras_cnn, "--data", digits.train, "--early-exit", *args,
                  "-o", out / "x.edgepkg")
    assert res.exit_code == 2
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_early_exit_needs_a_keras_model(onnx_cnn: Path, digits: Any, tmp_path: Path) -> None:
    res = run_cli("optimize", onnx_cnn, "--data", digits.train, "--early-exit", "--target", "onnx",
                  "-o", tmp_path / "o.edgepkg")
    assert res.exit_code == 2
    assert "needs a Keras model" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_eval_refuses_thresholds_outside_unit_interval(float_exit: ExitRun, digits: Any) -> None:
    for bad in ("1.5", "-0.1", "0:2"):
        res = run_cli("eval", float_exit.bundle, "--data", digits.test, "--exit-threshold", bad)
        assert res.exit_code == 2, bad
        assert "threshold must be in [0, 1]" in res.stderr
        assert res.stdout == ""
    res = run_cli("eval", float_exit.bundle, "--data", digits.test, "--exit-threshold", "3:0.5")
    assert res.exit_code == 2 and "stage 3 has no exit" in res.stderr


@pytest.mark.slow
def test_digits_example_with_early_exit(tmp_path: Path) -> None:
    """examples/digits/run.py --early-exit: an int8 LeNet-5 cascade, served by the agent."""
    import os
    import subprocess
    import sys

    from edge_sdk.demo.digits import train

    root = Path(__file__).resolve().parents[2]
    train(tmp_path, epochs=2)  # run.py reuses these instead of training again
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, str(root / "examples/digits/run.py"), str(tmp_path),
                          "--early-exit"], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "agent: 360 inputs" in run.stdout and "early exit after pool1" in run.stdout
    m = read_manifest(tmp_path / "digits-exit.edgepkg")
    assert [f.stage for f in m.stage_files(ModelFormat.TFLITE)] == [0, 1]
    assert m.optimization["early_exit"]["split_layers"] == ["pool1"]
    served = run.stdout.split("exits ")[-1]
    assert "'0':" in served  # some test inputs left at the first exit
