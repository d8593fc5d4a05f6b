"""Fleet fixtures: real Mosquitto brokers on free ports, a tiny real .tflite model,
agent and collector subprocesses, and a throwaway PostgreSQL schema."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.mosquitto import Mosquitto

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


def wait_for(cond: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real (untrained) 8×8 → 10 .tflite model and 64 inputs in an .npz."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("fleet-model")
    m = tf.keras.Sequential(
        [tf.keras.Input((8, 8, 1)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(10)]
    )
    (root / "m.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype(np.float32)
    np.savez(root / "x.npz", x=x)
    return root / "m.tflite", root / "x.npz"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Factory: ``broker(extra_config="")`` starts a Mosquitto; all are stopped at teardown."""
    started: list[Mosquitto] = []

    def make(extra_config: str = "", name: str = "mq") -> Mosquitto:
        m = Mosquitto(tmp_path / f"{name}{len(started)}", extra_config=extra_config).start()
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()


class Procs:
    """Subprocesses started by a test, killed at teardown if still running."""

    def __init__(self, root: Path):
        self.root, self.all = root, []  # type: ignore[var-annotated]

    def spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        p = subprocess.Popen([sys.executable, *args], env=ENV, stdout=log, stderr=log)
        self.all.append(p)
        return p

    def agent(
        self,
        model: tuple[Path, Path],
        url: str,
        device: str,
        *,
        outbox: Path,
        fleet: str = "lab",
        interval: float = 0.3,
        keepalive: int = 5,
        rate: int = 100,
        extra: tuple[str, ...] = (),
    ) -> subprocess.Popen[bytes]:
        tflite, data = model
        return self.spawn(
            [
                "-m",
                "device_agent",
                "-v",
                "run",
                str(tflite),
                "--source",
                f"file:{data}?rate={rate}&loop=1",
                "-q",
                "--broker",
                url,
                "--device-id",
                device,
                "--fleet",
                fleet,
                "--telemetry-interval",
                str(interval),
                "--keepalive",
                str(keepalive),
                "--outbox",
                str(outbox),
                *extra,
            ],
            f"agent-{device}",
        )

    def collector(
        self,
        url: str,
        db: str,
        *,
        client_id: str = "c1",
        group: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> subprocess.Popen[bytes]:
        args = [
            "-m",
            "edge_sdk",
            "collector",
            "--broker",
            url,
            "--db",
            db,
            "--client-id",
            client_id,
            "--alert-interval",
            "3600",
            *extra,
        ]
        if group:
            args += ["--share-group", group]
        return self.spawn(args, f"collector-{client_id}")

    def stop(
        self, p: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20
    ) -> int:
        p.send_signal(sig)
        return p.wait(timeout=timeout)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    ps = Procs(tmp_path)
    yield ps
    for p in ps.all:
        if p.poll() is None:
            p.kill()
            p.wait()


def sqlite_rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        con.close()


def outbox_seqs(path: Path) -> list[tuple[str, int]]:
    """(boot_id, seq) of the windows waiting in an agent's outbox."""
    import json

    rows = sqlite_rows(path, "SELECT payload FROM outbox ORDER BY id")
    return [(json.loads(p)["boot_id"], json.loads(p)["seq"]) for (p,) in rows]

