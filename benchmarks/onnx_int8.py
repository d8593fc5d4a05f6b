"""ONNX int8 on a graph as exporters write it (issue 13): weights in ``Constant`` nodes.

A small CNN (3 stride-2 convolutions, global pooling, a dense layer; about 230 KB of
float32 weights) is trained on scikit-learn's digits (upscaled to 32×32 RGB), exported
to ONNX with dynamic H and W, and its initializers rewritten as ``Constant`` nodes. Same
calibration data (the first 200 training images), same held-out test split, same run:

- float32 ``.onnx`` (the baseline every ratio is against);
- ONNX Runtime's ``quantize_static`` with its defaults, straight on the export (what a
  user gets first);
- ONNX Runtime's ``quant_pre_process`` then ``quantize_static`` defaults (its own fix);
- ``edge optimize model.onnx --data calib.npz --eval-data test.npz --int8 --compress
  deflate``, run as a user runs it; measured on the model the bundle ships, and the
  bundle file's bytes (manifest, compressed model, validation set) as "shipped".

Columns: file bytes (shipped), bytes / float, top-1 accuracy on the held-out split, top-1
agreement with the float model there, p50 latency at batch 1 in ONNX Runtime (1 thread;
medians of interleaved trials). Targets are checked at the end.

    python -m benchmarks.onnx_int8 [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
CALIB = 200
BUNDLE_RATIO = 0.40  # the shipped bundle against the float .onnx file's bytes
ACCURACY_BUDGET = 1.0  # points below float edge optimize may lose (its default --max-drop)


@dataclass(frozen=True)
class Row:
    name: str
    path: Path  # the model file that is timed and scored
    shipped: int  # bytes: the file, or the bundle for the edge row
    float_weights: int  # float weight tensors left (Q/DQ scales aside)


def digits32() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as 32×32 RGB in [0, 1] (each 8×8 pixel a 4×4 block), a fixed 80/20 split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.repeat(np.repeat(d.images / 16.0, 4, axis=1), 4, axis=2).astype(np.float32)
    x = np.stack([x, x, x], axis=-1)
    idx = np.random.default_rng(0).permutation(len(x))
    cut = int(len(x) * 0.8)
    return x[idx[:cut]], d.target[idx[:cut]], x[idx[cut:]], d.target[idx[cut:]]


def train(x: np.ndarray, y: np.ndarray, epochs: int):  # type: ignore[no-untyped-def]
    import keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential([
        keras.Input((None, None, 3)),
        keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    m.compile(optimizer=keras.optimizers.Adam(3e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return m


def export_with_constants(model, path: Path) -> Path:  # type: ignore[no-untyped-def]
    """The Keras export with every initializer turned into a ``Constant`` node."""
    import onnx
    from onnx import helper

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        model.export(str(path), format="onnx", verbose=False)
    m = onnx.load(str(path))
    consts = [helper.make_node("Constant", [], [i.name], value=i) for i in m.graph.initializer]
    names = {i.name for i in m.graph.initializer}
    kept_inputs = [i for i in m.graph.input if i.name not in names]
    del m.graph.initializer[:]
    del m.graph.input[:]
    m.graph.input.extend(kept_inputs)
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(consts + nodes)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


class Reader:
    """ONNX Runtime's calibration reader over one input, batches of 32."""

    def __init__(self, name: str, x: np.ndarray):
        self._it = iter([{name: x[i : i + 32]} for i in range(0, len(x), 32)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def ort_default(src: Path, out: Path, calib: np.ndarray, *, pre_process: bool) -> Path:
    import logging

    import onnx
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = onnx.load(str(src)).graph.input[0].name
    if pre_process:
        pre = out.with_suffix(".pre.onnx")
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        src = pre
    logging.getLogger().setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantize_static(str(src), str(out), Reader(name, calib))
    return out


def edge_optimize(src: Path, calib: Path, test: Path, work: Path) -> tuple[Path, int]:
    """``edge optimize`` through the CLI; the ONNX model the bundle ships, and its bytes."""
    from device_agent.bundle import open_bundle
    from device_agent.protocol.manifest import ModelFormat

    bundle = work / "edge.edgepkg"
    cmd = [sys.executable, "-m", "edge_sdk", "optimize", str(src), "--data", str(calib), "--eval-data",
           str(test), "--int8", "--compress", "deflate", "--runs", "5", "-o", str(bundle)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"edge optimize failed ({done.returncode}): {done.stderr[-2000:]}{done.stdout[-2000:]}")
    opened = open_bundle(bundle, work / "unpacked")
    return opened.model_path(ModelFormat.ONNX), bundle.stat().st_size


def top1(path: Path, x: np.ndarray) -> np.ndarray:
    from device_agent.runtimes import RuntimeOptions, load_model

    m = load_model(path, runtime="onnxruntime", options=RuntimeOptions(threads=1))
    return np.concatenate([m.predict1(x[i : i + 64]) for i in range(0, len(x), 64)]).argmax(axis=1)


def p50s(paths: list[Path], sample: np.ndarray, trials: int, runs: int) -> list[float]:
    """p50 ms of each model at batch 1: the median over interleaved trials of each trial's median."""
    from device_agent.runtimes import RuntimeOptions, load_model

    models = [load_model(p, runtime="onnxruntime", options=RuntimeOptions(threads=1)) for p in paths]
    for m in models:
        for _ in range(20):
            m.predict1(sample)
    per: list[list[float]] = [[] for _ in models]
    for _ in range(trials):
        for i, m in enumerate(models):
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                m.predict1(sample)
                times.append(time.perf_counter() - t)
            per[i].append(float(np.median(times)) * 1000)
    return [float(np.median(t)) for t in per]


def float_weights(path: Path) -> int:
    import onnx

    from edge_sdk.passes.quantize.onnx_prep import check_int8

    return check_int8(onnx.load(str(path))).float_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 epoch, few timings")
    args = ap.parse_args()
    epochs, trials, runs = (1, 2, 20) if args.quick else (15, 7, 200)
    xtr, ytr, xte, yte = digits32()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = export_with_constants(train(xtr, ytr, epochs), work / "float.onnx")
        np.savez(work / "calib.npz", x=xtr[:CALIB], y=ytr[:CALIB])
        np.savez(work / "test.npz", x=xte, y=yte)
        edge_path, edge_bytes = edge_optimize(src, work / "calib.npz", work / "test.npz", work)
        rows = [
            Row("float32 .onnx, Constant weights (baseline)", src, src.stat().st_size, float_weights(src)),
            Row("ORT quantize_static defaults", p := ort_default(src, work / "ort.onnx", xtr[:CALIB],
                                                                 pre_process=False), p.stat().st_size,
                float_weights(p)),
            Row("ORT quant_pre_process + quantize_static defaults",
                p := ort_default(src, work / "ortpre.onnx", xtr[:CALIB], pre_process=True), p.stat().st_size,
                float_weights(p)),
            Row("edge optimize --int8 (shipped .edgepkg)", edge_path, edge_bytes, float_weights(edge_path)),
        ]
        preds = [top1(r.path, xte) for r in rows]
        latency = p50s([r.path for r in rows], xte[:1], trials, runs)
    report(rows, preds, yte, latency)


def report(rows: list[Row], preds: list[np.ndarray], y: np.ndarray, latency: list[float]) -> None:
    base = rows[0].shipped
    print("| model | shipped bytes | / float | float weights left | accuracy % | agreement with float % "
          "| p50 ms | speedup |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    acc = [100.0 * float(np.mean(p == y)) for p in preds]
    agree = [100.0 * float(np.mean(p == preds[0])) for p in preds]
    for r, a, g, ms in zip(rows, acc, agree, latency, strict=True):
        print(f"| {r.name} | {r.shipped:,} | {r.shipped / base:.2f} | {r.float_weights} | {a:.2f} | {g:.2f} "
              f"| {ms:.4f} | {latency[0] / ms:.2f}x |")
    print()
    print(f"held-out: {len(y)} digits (32x32 RGB); calibration: the first {CALIB} training images for every "
          "int8 row; ONNX Runtime, 1 thread, batch 1")
    print()
    checks = [
        (f"edge bundle <= {BUNDLE_RATIO} of the float .onnx bytes", rows[3].shipped <= BUNDLE_RATIO * base,
         f"{rows[3].shipped / base:.2f}"),
        ("edge accuracy >= ORT default's", acc[3] >= acc[1], f"{acc[3]:.2f} vs {acc[1]:.2f}"),
        (f"edge accuracy within {ACCURACY_BUDGET} point of float", acc[0] - acc[3] <= ACCURACY_BUDGET,
         f"{acc[0] - acc[3]:+.2f} points"),
        ("edge keeps no float weights", rows[3].float_weights == 0, str(rows[3].float_weights)),
    ]
    print("Targets (issue 13):")
    for name, ok, got in checks:
        print(f"{'PASS' if ok else 'FAIL'} {name}: {got}")


if __name__ == "__main__":
    main()
