"""Compression table on a digits LeNet-5 (conv 20, conv 50, dense 500, dense 10).

Every row is measured in this run against the float32 ``.tflite`` of the same model:
file bytes (raw, and what ships), accuracy on the held-out test split, MACs, and p50
latency at batch 1 in LiteRT (medians of interleaved trials, so a noisy machine slows
baseline and candidate alike). Rows: each step alone, TensorFlow's plain int8
post-training quantization (what a user would otherwise run), and the full pipeline
run as a user runs it:

    edge optimize lenet5.keras --data train.npz --prune 0.7 --distill --share 16 --int8 --compress zstd

For that row "shipped" is the bundle file itself (manifest, compressed model, validation
set, tar headers), and accuracy is the bundle's model as the agent loads it: verified and
unpacked by ``device_agent.bundle``, run in LiteRT. A second table prunes the ONNX export
post-training (30% of channels, least-squares refit, no retraining) in ONNX Runtime.

    python -m benchmarks.compression

The model is the example's LeNet-5 (:mod:`edge_sdk.demo.digits`: 28×28 digits, fixed
seed and split), trained here for 12 epochs. The targets (issue 3) are checked at the end.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_FLAGS = ["--prune", "0.7", "--distill", "--share", "16", "--int8", "--compress", "zstd"]
TRIALS = 7  # interleaved latency trials per model
RUNS = 150  # timed calls per trial


@dataclass(frozen=True)
class Row:
    name: str
    raw: int  # bytes of the model file
    shipped: int  # zstd of the model file, or the bundle file for the bundle row
    accuracy: float
    macs: int
    path: Path  # the model file that is timed


def tflite(model: Any, path: Path, calib: np.ndarray | None = None, *, per_channel: bool = True) -> Path:
    """Float32, or with ``calib`` full-integer int8 as TensorFlow's converter makes it."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if calib is not None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([s[None]] for s in calib[:200])
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        # The converter's default is per-channel; one scale per tensor keeps a shared
        # kernel at K distinct int8 values (what edge optimize does for shared kernels).
        conv._experimental_disable_per_channel = not per_channel
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        path.write_bytes(conv.convert())
    return path


def accuracy(path: Path, x: np.ndarray, y: np.ndarray, runtime: str = "litert") -> float:
    from device_agent.runtimes import load_model

    m = load_model(path, runtime=runtime)
    return float(np.mean(np.argmax(np.concatenate([m.predict1(s[None]) for s in x]), 1) == y))


def p50s(paths: list[Path], sample: np.ndarray, runtime: str = "litert") -> list[float]:
    """p50 ms of each model at batch 1: the median over interleaved trials of each trial's median."""
    from device_agent.runtimes import load_model

    models = [load_model(p, runtime=runtime) for p in paths]
    for m in models:
        for _ in range(20):
            m.predict1(sample)
    trials: list[list[float]] = [[] for _ in models]
    for _ in range(TRIALS):
        for i, m in enumerate(models):
            times = []
            for _ in range(RUNS):
                t = time.perf_counter()
                m.predict1(sample)
                times.append(time.perf_counter() - t)
            trials[i].append(float(np.median(times)) * 1000)
    return [float(np.median(t)) for t in trials]


def keras_row(name: str, model: Any, path: Path, test: tuple[np.ndarray, np.ndarray],
              calib: np.ndarray | None = None, *, per_channel: bool = True) -> Row:
    from device_agent.protocol.manifest import Compression
    from edge_sdk.bundle.writer import compress
    from edge_sdk.model.analysis import keras_cost

    tflite(model, path, calib, per_channel=per_channel)
    data = path.read_bytes()
    return Row(name, len(data), len(compress(data, Compression.ZSTD)), accuracy(path, *test),
               keras_cost(model).macs, path)


def bundle_row(model_path: Path, train: Path, work: Path, test: tuple[np.ndarray, np.ndarray]) -> Row:
    """The full pipeline through the CLI; measured on the bundle as the agent opens it."""
    from device_agent.bundle import open_bundle
    from device_agent.protocol.manifest import ModelFormat
    from edge_sdk.model.inspect import describe

    bundle = work / "lenet5.edgepkg"
    cmd = [sys.executable, "-m", "edge_sdk", "optimize", str(model_path), "--data", str(train),
           *PIPELINE_FLAGS, "-o", str(bundle)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"edge optimize failed ({done.returncode}): {done.stderr[-2000:]}{done.stdout[-2000:]}")
    opened = open_bundle(bundle, work / "unpacked")
    path = opened.model_path(ModelFormat.TFLITE)
    return Row("full pipeline: shipped .edgepkg", path.stat().st_size, bundle.stat().st_size,
               accuracy(path, *test), int(describe(path)["macs"]), path)


def onnx_rows(model: Any, ctx: Any, work: Path, test: tuple[np.ndarray, np.ndarray]) -> list[Row]:
    """Float ONNX export, and the same pruned post-training (30%, least-squares refit)."""
    import onnx

    from device_agent.protocol.manifest import Compression
    from edge_sdk.bundle.writer import compress
    from edge_sdk.model.analysis import onnx_cost
    from edge_sdk.passes.prune.onnx import OnnxPruneConfig, OnnxPrunePass

    base = work / "float.onnx"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        model.export(str(base), format="onnx")
    original = onnx.load(str(base))
    pruned = OnnxPrunePass(OnnxPruneConfig(ratio=0.3)).apply(original, ctx).model
    onnx.save(pruned, str(work / "pruned.onnx"))
    rows = []
    for name, m, path in (("float32 .onnx (ONNX baseline)", original, base),
                          ("ONNX prune 0.3 + refit, no retraining", pruned, work / "pruned.onnx")):
        data = path.read_bytes()
        rows.append(Row(name, len(data), len(compress(data, Compression.ZSTD)),
                        accuracy(path, *test, runtime="onnxruntime"), onnx_cost(m).macs, path))
    return rows


def main(argv: list[str] | None = None) -> None:
    import argparse

    # No options yet, but --help must describe the run, not start it (it takes minutes).
    argparse.ArgumentParser(prog="python -m benchmarks.compression", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    import keras

    from edge_sdk.demo.digits import train
    from edge_sdk.model.data import Dataset
    from edge_sdk.passes.base import PassContext
    from edge_sdk.passes.distill.keras import DistillConfig, DistillPass
    from edge_sdk.passes.prune.keras import PruneConfig, PrunePass
    from edge_sdk.passes.share.keras import ShareConfig, SharePass

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        art = train(work / "digits", epochs=12)
        model = keras.models.load_model(art.model, compile=False)
        with np.load(art.train) as tr, np.load(art.test) as te:
            xtr, ytr, test = tr["x"], tr["y"], (te["x"], te["y"])
        cal, val = Dataset(xtr, ytr, "train").split(0.85, seed=0)
        ctx = PassContext(calibration=cal, validation=val, teacher=model)
        pruned = PrunePass(PruneConfig(ratio=0.7)).apply(model, ctx).model
        pruned = DistillPass(DistillConfig()).apply(pruned, ctx).model
        shared = SharePass(ShareConfig(clusters=16)).apply(model, ctx).model
        rows = [
            keras_row("float32 .tflite (baseline)", model, work / "0.tflite", test),
            keras_row("channel prune 0.7 + distill (float)", pruned, work / "1.tflite", test),
            keras_row("int8 PTQ (TFLiteConverter)", model, work / "2.tflite", test, xtr),
            keras_row("share 16 + int8 (per-tensor)", shared, work / "3.tflite", test, xtr, per_channel=False),
            bundle_row(art.model, art.train, work, test),
        ]
        latency = p50s([r.path for r in rows], test[0][:1])
        onnx = onnx_rows(model, ctx, work, test)
        onnx_latency = p50s([r.path for r in onnx], test[0][:1], runtime="onnxruntime")
    print_table(rows, latency)
    print(f"x smaller: {rows[0].name} bytes / this row's shipped bytes (zstd of the model file; the "
          "whole bundle file for the .edgepkg row); drop, MACs x and speedup against the first row")
    print()
    print_table(onnx, onnx_latency)
    print("ONNX Runtime; drop, MACs x and speedup against the float32 .onnx export of the same model")
    print()
    print_targets(rows, latency, onnx)


def print_table(rows: list[Row], latency: list[float]) -> None:
    base, base_ms = rows[0], latency[0]
    print(f"{'step':<40}{'bytes':>9}{'shipped':>9}{'x smaller':>10}{'acc %':>8}{'drop':>7}"
          f"{'MACs':>10}{'MACs x':>8}{'p50 ms':>8}{'speedup':>8}")
    for r, ms in zip(rows, latency, strict=True):
        print(f"{r.name:<40}{r.raw:>9}{r.shipped:>9}{base.raw / r.shipped:>10.1f}{r.accuracy * 100:>8.2f}"
              f"{(base.accuracy - r.accuracy) * 100:>7.2f}{r.macs:>10}{base.macs / r.macs:>8.2f}"
              f"{ms:>8.3f}{base_ms / ms:>8.2f}")


def print_targets(rows: list[Row], latency: list[float], onnx: list[Row]) -> None:
    base, prune, full = rows[0], rows[1], rows[4]
    checks = [
        (f"full pipeline: bundle {base.raw / full.shipped:.1f}x smaller (>= 40), "
         f"drop {_drop(base, full):.2f} points (<= 0.5)",
         base.raw / full.shipped >= 40 and _drop(base, full) <= 0.5),
        (f"channel pruning: {base.macs / prune.macs:.2f}x fewer MACs (>= 2), p50 "
         f"{latency[0] / latency[1]:.2f}x lower (>= 1.4), drop {_drop(base, prune):.2f} points (<= 0.5)",
         base.macs / prune.macs >= 2 and latency[0] / latency[1] >= 1.4 and _drop(base, prune) <= 0.5),
        (f"ONNX post-training prune 30% + refit: drop {_drop(onnx[0], onnx[1]):.2f} points (<= 1)",
         _drop(onnx[0], onnx[1]) <= 1.0),
    ]
    for text, ok in checks:
        print(f"target {'met' if ok else 'NOT MET'}: {text}")


def _drop(base: Row, row: Row) -> float:
    return round((base.accuracy - row.accuracy) * 100, 2)


if __name__ == "__main__":
    main()
