"""``edge`` is quiet by default: TensorFlow's start-up lines only with ``-v``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_inspect_keras_prints_no_tensorflow_logs(keras_cnn: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("EDGE_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([sys.executable, "-m", "edge_sdk", "inspect", str(keras_cnn)],
                         capture_output=True, text=True, env=env, timeout=180)
    assert run.returncode == 0 and "params" in run.stdout, run.stderr
    assert run.stderr == "", run.stderr
    loud = subprocess.run([sys.executable, "-m", "edge_sdk", "-v", "inspect", str(keras_cnn)],
                          capture_output=True, text=True, env=env, timeout=180)
    assert loud.returncode == 0 and "absl" in loud.stderr, loud.stderr
