"""IMU activity recognition: a 1-D CNN on BasicMotions, early exit + int8, served by the agent.

BasicMotions (shipped inside ``aeon``; no download): 6-axis smartwatch IMU, 100 steps,
4 activities (standing, walking, running, badminton), 40 train / 40 test series.

    PYTHONPATH=. python examples/imu_activity/run.py --out /tmp/imu

1. trains a small 1-D CNN on the training series;
2. builds an early-exit cascade (exit after the first conv block), int8, with the
   preprocessing (aeon's channels-first layout → time-major, per-channel standardization)
   stored in the bundle as data, so the agent computes exactly what training saw;
3. serves the raw test series with ``edge-agent run`` and prints its summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from device_agent.preprocess import Pipeline  # noqa: E402


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    from aeon.datasets import load_basic_motions

    xtr, ytr = load_basic_motions(split="train")
    xte, yte = load_basic_motions(split="test")
    classes = tuple(sorted(set(ytr)))
    to_idx = {c: i for i, c in enumerate(classes)}
    return (
        xtr.astype(np.float32),
        np.array([to_idx[c] for c in ytr]),
        xte.astype(np.float32),
        np.array([to_idx[c] for c in yte]),
        classes,
    )


def preprocessing(x_train: np.ndarray) -> list[dict[str, object]]:
    """(6, 100) readings → (100, 6), standardized per channel with training statistics."""
    mean = x_train.mean(axis=(0, 2)).round(5).tolist()
    std = (x_train.std(axis=(0, 2)) + 1e-6).round(5).tolist()
    return [{"op": "transpose", "axes": [1, 0]}, {"op": "normalize", "mean": mean, "std": std}]


def cnn(n_classes: int, epochs: int, x: np.ndarray, y: np.ndarray) -> object:
    import keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential(
        [
            keras.Input((100, 6)),
            keras.layers.Conv1D(16, 5, activation="relu", name="conv1"),
            keras.layers.MaxPooling1D(2, name="pool1"),
            keras.layers.Conv1D(32, 5, activation="relu", name="conv2"),
            keras.layers.MaxPooling1D(2, name="pool2"),
            keras.layers.Conv1D(64, 3, activation="relu", name="conv3"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(n_classes, name="logits"),
        ]
    )
    m.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    m.fit(x, y, epochs=epochs, batch_size=8, verbose=0)
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("imu_out"))
    ap.add_argument("--epochs", type=int, default=80)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from edge_sdk.model.data import Dataset
    from edge_sdk.passes.early_exit.keras import EarlyExitConfig, HeadKind
    from edge_sdk.recipe.cascade_export import write_cascade_bundle

    xtr, ytr, xte, yte, classes = load()
    steps = preprocessing(xtr)
    pipe = Pipeline.parse(steps)  # the agent's own implementation, used for training too
    ptr, pte = pipe.batch(xtr), pipe.batch(xte)
    # A quarter of the training series is held out to calibrate the exit thresholds;
    # the test split stays unseen until the agent serves it.
    idx = np.random.default_rng(0).permutation(len(ptr))
    val, fit = idx[: len(idx) // 4], idx[len(idx) // 4 :]
    model = cnn(len(classes), args.epochs, ptr[fit], ytr[fit])
    full_acc = float((np.asarray(model.predict(pte, verbose=0)).argmax(1) == yte).mean())
    bundle, cal = write_cascade_bundle(
        args.out / "imu.edgepkg",
        model,
        Dataset(ptr[fit], ytr[fit], "train"),
        Dataset(ptr[val], ytr[val], "val"),
        EarlyExitConfig(at_layers=("pool1",), head=HeadKind.FLATTEN, max_drop=1.0, epochs=100),
        name="imu-activity",
        int8=True,
        labels=classes,
        preprocessing=tuple(steps),
    )
    np.savez(args.out / "test.npz", x=xte, y=yte)  # raw (6, 100) series, as a sensor gives them
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_agent",
            "run",
            str(bundle),
            "--source",
            f"file:{args.out / 'test.npz'}",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])["summary"]
    report = {
        "keras_float_test_accuracy": full_acc,
        "exit_thresholds": [e.threshold for e in cal.exits],
        "validation_exit_rates": cal.exit_rates,
        "agent": summary,
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
