"""Quiet by default: LiteRT's native ``INFO: Created TensorFlow Lite XNNPACK delegate``
line only with ``EDGE_VERBOSE=1`` or ``-v``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _run(model: Path, data: Path, *flags: str, verbose: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("EDGE_VERBOSE", None)
    if verbose is not None:
        env["EDGE_VERBOSE"] = verbose
    return subprocess.run([sys.executable, "-m", "device_agent", *flags, "run", str(model), "--source",
                           f"file:{data}", "-q"], capture_output=True, text=True, env=env, timeout=120)


def test_runtime_logs_only_when_asked(int8_tflite: Path, tmp_path: Path) -> None:
    data = tmp_path / "x.npz"
    np.savez(data, x=np.zeros((3, 8, 8, 1), np.float32))
    quiet = _run(int8_tflite, data)
    said = [ln for ln in quiet.stderr.splitlines() if not ln.startswith("warning: no trusted public keys")]
    assert quiet.returncode == 0 and said == [], quiet.stderr  # only the one unsigned-bundles notice
    for loud in (_run(int8_tflite, data, verbose="1"), _run(int8_tflite, data, "-v")):
        assert loud.returncode == 0 and "XNNPACK" in loud.stderr, loud.stderr
