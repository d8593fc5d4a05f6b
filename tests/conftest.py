"""Fixtures shared by the suite: real data (scikit-learn digits) and tiny real models.

Models are trained once per session and cached under pytest's tmp dir, so each test
uses real TensorFlow/LiteRT/ONNX Runtime without paying for training again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@dataclass(frozen=True)
class DigitsSplit:
    train: Path
    test: Path
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> DigitsSplit:
    """scikit-learn's 8×8 digits in [0, 1], NHWC, a fixed 80/20 split saved as .npz."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(x))
    cut = int(len(x) * 0.8)
    tr, te = idx[:cut], idx[cut:]
    root = tmp_path_factory.mktemp("digits")
    np.savez(root / "train.npz", x=x[tr], y=y[tr])
    np.savez(root / "test.npz", x=x[te], y=y[te])
    return DigitsSplit(root / "train.npz", root / "test.npz", x[tr], y[tr], x[te], y[te])


@pytest.fixture(scope="session")
def keras_cnn(digits: DigitsSplit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small conv net trained on digits for a few epochs (≈95% test accuracy)."""
    import keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(32, 3, activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu", name="fc1"),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    m.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    m.fit(digits.x_train, digits.y_train, epochs=8, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("models") / "cnn.keras"
    m.save(path)
    return path


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A uniquely named schema in the test PostgreSQL (``EDGE_TEST_PG_DSN`` overrides the
    server), dropped afterwards."""
    import uuid

    import psycopg

    base = os.environ.get("EDGE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"edge_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as con:
            con.execute(f"DROP SCHEMA {schema} CASCADE")
