"""examples/imu_activity runs end to end: train, early exit + int8, served by the agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_imu_example(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples/imu_activity/run.py"),
            "--out",
            str(tmp_path),
            "--epochs",
            "60",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    report = json.loads((tmp_path / "report.json").read_text())
    agent = report["agent"]
    assert agent["count"] == 40 and agent["errors"] == 0
    assert sum(agent["exits"].values()) == 40
    # 4 balanced classes: chance is 0.25; the served int8 cascade must be a real classifier
    assert agent["accuracy"] >= 0.8, out.stdout[-2000:]
    assert report["keras_float_test_accuracy"] - agent["accuracy"] <= 0.1
