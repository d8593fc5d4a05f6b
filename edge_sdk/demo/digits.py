"""The digits example: a LeNet-5-shaped CNN on scikit-learn's handwritten digits.

The 8×8 digits are upsampled to 28×28 (bilinear) so the network has the shape of the
LeNet-5 in Deep Compression (Han et al., 2016): conv 20@5×5, pool, conv 50@5×5, pool,
dense 500, dense 10, 431,080 parameters. Seed and split are fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SIZE = 28
SEED = 0
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class DigitsArtifacts:
    """What :func:`train` writes: the model and the fixed train/test split."""

    model: Path
    train: Path
    test: Path
    test_accuracy: float | None  # None when reused from an earlier run


def existing(out_dir: str | Path) -> DigitsArtifacts | None:
    """The artifacts of an earlier :func:`train` into ``out_dir``, if all are there."""
    out = Path(out_dir)
    art = DigitsArtifacts(out / "lenet5.keras", out / "train.npz", out / "test.npz", None)
    return art if all(p.is_file() for p in (art.model, art.train, art.test)) else None


def load_digits_28() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as float32 NHWC 28×28×1 in [0, 1], and their labels."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    big = zoom(x, (1, SIZE / 8, SIZE / 8), order=1)
    return np.clip(big, 0.0, 1.0).astype(np.float32)[..., None], d.target.astype(np.int64)


def split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fixed train/test split (seeded permutation, 20% test)."""
    idx = np.random.default_rng(SEED).permutation(len(x))
    cut = int(len(x) * (1 - TEST_FRACTION))
    tr, te = idx[:cut], idx[cut:]
    return x[tr], y[tr], x[te], y[te]


def build_lenet5() -> Any:
    """An untrained LeNet-5 for the digits upsampled to 28×28×1 (Keras, imported here)."""
    import keras

    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1), name="image"),
            keras.layers.Conv2D(20, 5, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(2, name="pool1"),
            keras.layers.Conv2D(50, 5, activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(2, name="pool2"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(500, activation="relu", name="fc1"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="lenet5",
    )


def train(out_dir: str | Path, *, epochs: int = 6) -> DigitsArtifacts:
    """Train LeNet-5 on the digits (seconds on 2 cores) and write model + split npz."""
    import keras

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr, x_te, y_te = split(*load_digits_28())
    keras.utils.set_random_seed(SEED)
    model = build_lenet5()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_tr, y_tr, epochs=epochs, batch_size=32, verbose=0)
    _, acc = model.evaluate(x_te, y_te, verbose=0)
    paths = DigitsArtifacts(out / "lenet5.keras", out / "train.npz", out / "test.npz",
                            round(float(acc) * 100, 2))
    model.save(paths.model)
    np.savez(paths.train, x=x_tr, y=y_tr)
    np.savez(paths.test, x=x_te, y=y_te)
    return paths
