"""The ``--max-drop`` search as a new user runs it, judged on data the model never saw.

LeNet-5 (conv 20, conv 50, dense 500, dense 10; :mod:`edge_sdk.demo.digits`) is trained
here on 1,400 of scikit-learn's 1,797 digits (seeded split, a seed the tests do not
use); the other 397 are held out and never given to ``edge optimize``. Then, exactly
as a user would type it, with the *training* data as ``--data``:

    edge optimize lenet5.keras --data train.npz --max-drop 0.5 -o lenet5.edgepkg

The row compares, in this run: the bundle file's bytes against the float32 ``.tflite``
of the same model (TensorFlow's converter), and the bundle's accuracy (verified and
unpacked by ``device_agent.bundle``, run by the agent's engine) against that float
``.tflite`` on the 397 held-out digits, as a paired drop in points and in net samples.
Search wall time is the whole ``edge optimize`` command. Targets (issue 15): bytes
ratio >= 40x, held-out drop <= 0.5 points.

    python -m benchmarks.search
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
SEED = 15  # split and training; the tests use 0
TRAIN = 1400
EPOCHS = 12
BUDGET = 0.5


def lenet(work: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Train LeNet-5 on 1,400 digits; returns the model, train.npz and the held-out set."""
    import keras

    from edge_sdk.demo.digits import build_lenet5, load_digits_28

    x, y = load_digits_28()
    idx = np.random.default_rng(SEED).permutation(len(x))
    tr, te = idx[:TRAIN], idx[TRAIN:]
    keras.utils.set_random_seed(SEED)
    model = build_lenet5()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[tr], y[tr], epochs=EPOCHS, batch_size=32, verbose=0)
    path, train = work / "lenet5.keras", work / "train.npz"
    model.save(path)
    np.savez(train, x=x[tr], y=y[tr])
    return path, train, x[te], y[te]


def float_tflite(model_path: Path, out: Path) -> Path:
    import keras
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(model_path))
    with contextlib.redirect_stdout(io.StringIO()):
        out.write_bytes(conv.convert())
    return out


def predictions_file(path: Path, x: np.ndarray) -> np.ndarray:
    from edge_sdk.measure.evaluate import predict_file

    return predict_file(path, x).reshape(len(x), -1).argmax(axis=1)


def predictions_bundle(bundle: Path, work: Path, x: np.ndarray) -> np.ndarray:
    from device_agent.bundle import open_bundle
    from device_agent.engine import Engine

    b = open_bundle(bundle, work / "unpacked")
    engine = Engine.from_bundle_dir(b.root, b.manifest)
    return np.array([p.index for p in engine.infer(x)])


def optimize(model: Path, train: Path, out: Path) -> tuple[float, dict[str, Any]]:
    """The user's command, timed; returns (seconds, the report)."""
    cmd = [sys.executable, "-m", "edge_sdk", "optimize", str(model), "--data", str(train),
           "--max-drop", str(BUDGET), "-o", str(out), "--json", "--runs", "20"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"edge optimize failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    return seconds, json.loads(res.stdout)


def main() -> None:
    from edge_sdk.measure.holdout import paired_drop
    from edge_sdk.recipe.shipped_search import candidate_lines

    with tempfile.TemporaryDirectory(prefix="edge-bench-search-") as tmp:
        work = Path(tmp)
        model, train, x_te, y_te = lenet(work)
        ref = float_tflite(model, work / "lenet5.tflite")
        out = work / "lenet5.edgepkg"
        seconds, report = optimize(model, train, out)
        d = paired_drop(y_te, predictions_file(ref, x_te), predictions_bundle(out, work, x_te))
        ratio = ref.stat().st_size / out.stat().st_size
        found = report["recipe"].get("search_result", {})
        print(f"edge optimize lenet5.keras --data train.npz ({TRAIN} training digits) --max-drop {BUDGET}")
        print(f"chosen: {found.get('chosen_label')} + int8 + zstd "
              f"({len(found.get('candidates', []))} candidates, {len(found.get('front', []))} on the front)")
        print("\n".join(candidate_lines(found)))
        print()
        print(f"{'model':<10}{'float .tflite B':>16}{'bundle B':>10}{'ratio':>8}{'float %':>9}"
              f"{'bundle %':>10}{'held-out drop':>15}{'net':>6}{'95% interval':>18}{'search s':>10}")
        print(f"{'LeNet-5':<10}{ref.stat().st_size:>16,}{out.stat().st_size:>10,}{ratio:>7.1f}x"
              f"{d.baseline_accuracy:>9.2f}{d.accuracy:>10.2f}{d.drop_points:>+15.2f}{d.net:>6}"
              f"{f'{d.low_points:+.2f}..{d.high_points:+.2f}':>18}{seconds:>10.0f}")
        print()
        print(f"held-out: {d.samples} digits never given to edge optimize (one sample = "
              f"{d.points_per_sample:.2f} points); selection-split drop the tool saw: "
              f"{report['held_out']['selection_drop_points']}")
        print(f"target bytes ratio >= 40x: {'met' if ratio >= 40 else 'MISSED'} ({ratio:.1f}x); "
              f"target held-out drop <= {BUDGET}: {'met' if d.drop_points <= BUDGET else 'MISSED'} "
              f"({d.drop_points:+.2f})")


if __name__ == "__main__":
    main()
