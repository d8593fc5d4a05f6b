"""Fixtures for the serving tests: tiny real models, cascade bundles and a real Mosquitto."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DigitsSplit

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass(frozen=True)
class CascadeBundle:
    path: Path
    stages: int
    full_tflite: Path  # the same Keras model as one float .tflite, for comparison


@pytest.fixture(scope="session")
def float_tflite(keras_cnn: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    from edge_sdk.passes.quantize.tflite import to_tflite

    path = tmp_path_factory.mktemp("tfl") / "cnn.tflite"
    path.write_bytes(to_tflite(keras.models.load_model(keras_cnn)))
    return path


@pytest.fixture(scope="session")
def int8_tflite(
    keras_cnn: Path, digits: DigitsSplit, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    import keras

    from edge_sdk.passes.quantize.tflite import to_tflite

    path = tmp_path_factory.mktemp("tfl8") / "cnn_int8.tflite"
    path.write_bytes(to_tflite(keras.models.load_model(keras_cnn), digits.x_train[:100]))
    return path


@pytest.fixture(scope="session")
def cascade_bundle(
    keras_cnn: Path,
    digits: DigitsSplit,
    float_tflite: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> CascadeBundle:
    """Three float stages: exits after conv1 and conv2, then the rest of the model."""
    import keras

    from edge_sdk.model.data import Dataset
    from edge_sdk.passes.early_exit.keras import EarlyExitConfig
    from edge_sdk.recipe.cascade_export import write_cascade_bundle

    model = keras.models.load_model(keras_cnn)
    train = Dataset(digits.x_train, digits.y_train, "train")
    val = Dataset(digits.x_test, digits.y_test, "test")
    cfg = EarlyExitConfig(at_layers=("conv1", "conv2"), epochs=15, max_drop=0.5)
    out = tmp_path_factory.mktemp("cascade") / "cascade.edgepkg"
    path, _ = write_cascade_bundle(
        out,
        model,
        train,
        val,
        cfg,
        name="digits-exit",
        labels=tuple(str(i) for i in range(10)),
        onnx=True,
    )
    return CascadeBundle(path, 3, float_tflite)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    port: int
    conf: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto on a free loopback port, stopped after the test."""
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    b = Broker(port, conf)
    b.start()
    yield b
    b.stop()


def rows(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)
