"""The benchmark's model: LeNet-5 (Deep Compression's shape) on scikit-learn digits at 28×28.

conv 20@5×5 → pool → conv 50@5×5 → pool → dense 500 → dense 10, trained with a fixed
seed on a fixed 80/20 split. ``examples/digits/train.py`` was not in main when this was
written; once it is, the benchmark can import its builder instead of this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SIDE = 28


@dataclass(frozen=True)
class DigitsData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def save_test(self, path: Path) -> Path:
        np.savez(path, x=self.x_test, y=self.y_test)
        return path


def upsample(images: np.ndarray, side: int = SIDE) -> np.ndarray:
    """Bilinear resize of (n, h, w) images in [0, 1] to (n, side, side, 1) float32."""
    _, h, w = images.shape
    ys = np.linspace(0, h - 1, side)
    xs = np.linspace(0, w - 1, side)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[None, :, None], (xs - x0)[None, None, :]
    top = images[:, y0][:, :, x0] * (1 - wx) + images[:, y0][:, :, x1] * wx
    bot = images[:, y1][:, :, x0] * (1 - wx) + images[:, y1][:, :, x1] * wx
    return ((top * (1 - wy) + bot * wy)[..., None]).astype(np.float32)


def load_digits_28(seed: int = 0, test_fraction: float = 0.2) -> DigitsData:
    """sklearn digits scaled to [0, 1], upsampled to 28×28, split with a fixed seed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = upsample(d.images / 16.0)
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(seed).permutation(len(x))
    cut = round(len(x) * (1 - test_fraction))
    tr, te = idx[:cut], idx[cut:]
    return DigitsData(x[tr], y[tr], x[te], y[te])


def build_lenet5() -> Any:
    import keras

    return keras.Sequential(
        [
            keras.Input((SIDE, SIDE, 1)),
            keras.layers.Conv2D(20, 5, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(50, 5, activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(500, activation="relu", name="fc1"),
            keras.layers.Dense(10, name="fc2"),
        ],
        name="lenet5",
    )


def train_lenet5(data: DigitsData, *, epochs: int, seed: int = 0) -> Any:
    """A trained LeNet-5 (logits out); a few seconds per epoch on two cores."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_lenet5()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    return model
