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
    _readme_simulator_line(tmp_path / "imu.edgepkg")


def _readme_simulator_line(bundle: Path) -> None:
    """README: ``edge-agent run imu.edgepkg --source "sim:imu?seed=1&n=500"``, with the
    example's own bundle: every simulated reading is served, none fails."""
    readme = (ROOT / "README.md").read_text()
    line = 'edge-agent run imu.edgepkg --source "sim:imu?seed=1&n=500"'
    assert line in readme
    out = subprocess.run(
        [sys.executable, "-m", "device_agent", "run", str(bundle), "--source", "sim:imu?seed=1&n=500",
         "--cache", "near:0.01", "--quiet"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])["summary"]
    assert (summary["count"], summary["errors"]) == (500, 0), summary
    assert "broadcast" not in out.stderr
