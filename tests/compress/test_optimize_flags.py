"""``edge optimize`` with the compression flags, through the CLI, on real runtimes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from device_agent.bundle import open_bundle
from device_agent.engine import Engine
from device_agent.protocol.manifest import ModelFormat
from edge_sdk.cli import app


def _run(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_prune_distill_share_int8_bundle(keras_cnn: Path, digits: Any, tmp_path: Path) -> None:
    out = tmp_path / "small.edgepkg"
    res = _run("optimize", keras_cnn, "--data", digits.train, "--eval-data", digits.test,
               "--prune", "0.5", "--distill", "--share", "16", "--int8", "--compress", "zstd", "--runs", "3",
               "--max-drop", "3",
               "--json", "-o", out)
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    steps = {s["step"]: s for s in rep["steps"]}
    assert [s["step"] for s in rep["steps"]][:4] == ["baseline", "prune", "distill", "share"]
    assert steps["prune"]["params"] < 0.35 * steps["baseline"]["params"]
    assert steps["prune"]["macs"] < 0.35 * steps["baseline"]["macs"]
    print({k: (v["accuracy"], v["params"], v["macs"], v["bytes"]) for k, v in steps.items()})
    assert steps["share"]["accuracy"] >= steps["baseline"]["accuracy"] - 3.0
    b = open_bundle(out, tmp_path / "b")  # verifies both the stored and the raw sha256
    (f,) = b.manifest.stage_files(ModelFormat.TFLITE)
    assert f.compression.value == "zstd" and f.raw_size == steps["int8 tflite"]["bytes"]
    print(f"int8 tflite raw {f.raw_size} B, stored zstd {f.size} B")
    assert f.size < 0.8 * f.raw_size  # K=16 shared int8 kernels compress
    kernels = _int8_kernels(b.root / f.unpacked_path)
    assert len(kernels) == 4  # conv1, conv2, fc1, logits
    # per-tensor scales: each shared kernel keeps its 16 values in int8 (not 16 per channel)
    assert all(len(np.unique(k)) <= 16 for k in kernels), [len(np.unique(k)) for k in kernels]
    assert rep["recipe"]["compression"] == "zstd" and rep["recipe"]["passes"] == ["prune", "distill", "share"]
    # The before/after table starts from the input model's float export, not the pruned one.
    (cmp,) = rep["comparisons"]
    assert cmp["baseline"]["size_bytes"] > 2 * steps["export tflite float32"]["bytes"]
    # ... and its accuracies are the held-out split's (--eval-data), not the selection split's
    assert cmp["baseline"]["accuracy"] == rep["held_out"]["drops"]["tflite"]["baseline_accuracy"]
    assert rep["held_out"]["source"].startswith("--eval-data") and rep["held_out"]["samples"] == len(digits.y_test)
    assert cmp["optimized"]["size_bytes"] == steps["int8 tflite"]["bytes"]
    preds = Engine.from_bundle_dir(b.root, b.manifest, prefer=ModelFormat.TFLITE).infer(digits.x_test)
    assert float(np.mean([p.index for p in preds] == digits.y_test)) > 0.85


def _int8_kernels(path: Path) -> list[np.ndarray]:
    """The int8 weight tensors of a .tflite: output channels first, more than one of them
    (activations have the batch of 1 first)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    return [interp.get_tensor(d["index"]) for d in interp.get_tensor_details()
            if d["dtype"] == np.int8 and len(d["shape"]) in (2, 4) and d["shape"][0] > 1]


def test_onnx_prune_through_the_cli(cnn_onnx: Path, digits: Any, tmp_path: Path) -> None:
    out = tmp_path / "o.edgepkg"
    res = _run("optimize", cnn_onnx, "--data", digits.train, "--eval-data", digits.test, "--target", "onnx",
               "--prune", "0.3", "--runs", "3", "--json", "-o", out)
    assert res.exit_code == 0, res.output
    steps = {s["step"]: s for s in json.loads(res.stdout)["steps"]}
    assert steps["prune"]["params"] < steps["baseline"]["params"]
    assert steps["prune"]["accuracy"] >= steps["baseline"]["accuracy"] - 2.0


@pytest.mark.parametrize(
    ("flags", "msg"),
    [(["--prune", "1.5"], "prune ratio must be in [0, 1)"), (["--share", "1"], "cluster count must be in 2..256"),
     (["--lowrank", "0"], "--lowrank energy must be in (0, 1]"), (["--compress", "lz4"], "--compress 'lz4'")],
)
def test_bad_flags(keras_cnn: Path, digits: Any, tmp_path: Path, flags: list[str], msg: str) -> None:
    out = tmp_path / "bad.edgepkg"
    res = _run("optimize", keras_cnn, "--data", digits.train, *flags, "-o", out)
    assert res.exit_code == 2 and msg in res.output
    assert not out.exists()


def test_distill_on_onnx_is_refused(cnn_onnx: Path, digits: Any, tmp_path: Path) -> None:
    out = tmp_path / "bad.edgepkg"
    res = _run("optimize", cnn_onnx, "--data", digits.train, "--target", "onnx", "--distill", "-o", out)
    assert res.exit_code == 2 and "distill: needs a Keras model" in res.output
    assert not out.exists()
