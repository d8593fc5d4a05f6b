"""Compression table on a digits LeNet-5 (conv 20, conv 50, dense 500, dense 10).

Every row is measured in this run against the float32 ``.tflite`` of the same model:
file bytes (raw and zstd), accuracy on the held-out split, MACs, and p50 latency at
batch 1 in LiteRT (medians of repeated runs). Rows: each step alone, TensorFlow's plain
int8 post-training quantization (what a user would otherwise run), and the full
pipeline prune → distill → share → int8 → zstd.

    python -m benchmarks.compression

The model is the example's LeNet-5 (:mod:`edge_sdk.demo.digits`: 28×28 digits, fixed
seed and split), trained here for 12 epochs.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def tflite(model: Any, path: Path, calib: np.ndarray | None = None) -> Path:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if calib is not None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([s[None]] for s in calib[:200])
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        # One scale per tensor keeps a shared kernel at K distinct int8 values.
        conv._experimental_disable_per_channel = True
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        path.write_bytes(conv.convert())
    return path


def measure(path: Path, x: np.ndarray, y: np.ndarray, runs: int = 300) -> tuple[float, float]:
    from device_agent.runtimes import load_model

    m = load_model(path, runtime="litert")
    acc = float(np.mean(np.argmax(np.concatenate([m.predict1(s[None]) for s in x]), 1) == y))
    one = x[:1]
    for _ in range(20):
        m.predict1(one)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        m.predict1(one)
        times.append(time.perf_counter() - t)
    return acc, float(np.median(times) * 1000)


def main() -> None:
    import keras

    from device_agent.manifest import Compression
    from edge_sdk.analysis import keras_cost
    from edge_sdk.bundle_writer import compress
    from edge_sdk.data import Dataset
    from edge_sdk.demo.digits import train
    from edge_sdk.passes.base import PassContext
    from edge_sdk.passes.distill import DistillConfig, DistillPass
    from edge_sdk.passes.prune import PruneConfig, PrunePass
    from edge_sdk.passes.share import ShareConfig, SharePass

    with tempfile.TemporaryDirectory() as tmp:
        art = train(tmp, epochs=12)
        model = keras.models.load_model(art.model, compile=False)
        with np.load(art.train) as tr, np.load(art.test) as te:
            xtr, ytr, xte, yte = tr["x"], tr["y"], te["x"], te["y"]
    cal, val = Dataset(xtr, ytr, "train").split(0.85, seed=0)
    ctx = PassContext(calibration=cal, validation=val, teacher=model)
    pruned = PrunePass(PruneConfig(ratio=0.7)).apply(model, ctx).model
    pruned = DistillPass(DistillConfig(epochs=30, patience=5)).apply(pruned, ctx).model
    shared_only = SharePass(ShareConfig(clusters=16, fine_tune_steps=200)).apply(model, ctx).model
    full = SharePass(ShareConfig(clusters=32, fine_tune_steps=300)).apply(pruned, ctx).model
    rows = [
        ("float32 (baseline)", model, None), ("prune 0.7 + distill (float)", pruned, None),
        ("int8 PTQ (TFLiteConverter)", model, xtr), ("share 16 + int8", shared_only, xtr),
        ("prune + distill + share 32 + int8", full, xtr),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        table = []
        for i, (name, m, calib) in enumerate(rows):
            path = tflite(m, Path(tmp) / f"{i}.tflite", calib)
            data = path.read_bytes()
            acc, p50 = measure(path, xte, yte)
            table.append((name, len(data), len(compress(data, Compression.ZSTD)), acc, p50, keras_cost(m).macs))
    print_table(table)


def print_table(table: list[tuple[str, int, int, float, float, int]]) -> None:
    base = table[0]
    print(f"{'step':<36}{'bytes':>9}{'zstd':>9}{'x smaller':>10}{'acc %':>8}{'drop':>7}"
          f"{'MACs':>10}{'MACs x':>8}{'p50 ms':>8}{'speedup':>8}")
    for name, raw, z, acc, p50, macs in table:
        print(f"{name:<36}{raw:>9}{z:>9}{base[1] / z:>10.1f}{acc * 100:>8.2f}{(base[3] - acc) * 100:>7.2f}"
              f"{macs:>10}{base[5] / macs:>8.2f}{p50:>8.3f}{base[4] / p50:>8.2f}")
    print("x smaller: float32 .tflite bytes / this row's zstd bytes (what ships in the bundle)")


if __name__ == "__main__":
    main()
