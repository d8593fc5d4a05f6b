"""``edge demo`` and the digits examples run end to end (LeNet-5, real runtimes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from device_agent.bundle import open_bundle
from tests.converter.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


@pytest.mark.slow
def test_edge_demo(tmp_path: Path) -> None:
    """One run in a fresh process (as tools/demo.sh does); its report and bundle checked."""
    proc = subprocess.run([sys.executable, "-m", "edge_sdk", "demo", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for word in ("agent served 360 inputs", "errors 0", "size [bytes]", "latency p50", "remedy"):
        assert word in proc.stdout
    rep = json.loads((tmp_path / "digits.report.json").read_text())
    c = rep["comparisons"][0]
    assert c["format"] == "tflite"
    # LeNet-5 (431k weights): the int8 file is at most 0.3 of the float file
    assert c["optimized"]["size_bytes"] <= 0.3 * c["baseline"]["size_bytes"]
    assert c["baseline"]["accuracy"] - c["optimized"]["accuracy"] <= 1.0
    assert rep["steps"][0]["params"] == 431_080
    b = open_bundle(tmp_path / "digits.edgepkg", tmp_path / "unpacked")
    assert b.manifest.name == "digits-lenet5"
    assert (tmp_path / "digits.report.png").read_bytes()[:4] == b"\x89PNG"
    # The fleet part: 3 agents served the bundle through the embedded broker and collector.
    assert f"edge fleet status --db {tmp_path / 'fleet.db'}" in proc.stdout
    status = subprocess.run([sys.executable, "-m", "edge_sdk", "fleet", "status", "--db",
                             str(tmp_path / "fleet.db"), "--json"],
                            capture_output=True, text=True, env=_env(), timeout=120)
    assert status.returncode == 0, status.stderr[-2000:]
    devices = {d["device"]: d for d in json.loads(status.stdout)}
    # Three agents from the fleet step, and the daemon the OTA step updated over the air.
    assert sorted(devices) == ["demo-01", "demo-02", "demo-03", "demo-ota"]
    for d in devices.values():
        assert d["model"] == "digits-lenet5" and d["status"] == "offline"
        assert d["errors"] == 0
    for name in ("demo-01", "demo-02", "demo-03"):
        assert devices[name]["inferences"] > 0 and name in proc.stdout
    # its last birth names the version it was updated to
    assert devices["demo-ota"]["model_version"] == "0.2.0", devices["demo-ota"]


def test_demo_json_flag_parses(tmp_path: Path) -> None:
    res = run_cli("demo", "--help")
    assert res.exit_code == 0 and "--json" in res.stdout and "--out" in res.stdout


@pytest.mark.slow
def test_examples_train_then_run(tmp_path: Path) -> None:
    train = subprocess.run([sys.executable, str(ROOT / "examples/digits/train.py"),
                            str(tmp_path / "t")], capture_output=True, text=True, env=_env(),
                           timeout=600)
    assert train.returncode == 0, train.stderr[-2000:]
    assert (tmp_path / "t" / "lenet5.keras").is_file() and (tmp_path / "t" / "test.npz").is_file()
    model_bytes = (tmp_path / "t" / "lenet5.keras").read_bytes()
    run = subprocess.run([sys.executable, str(ROOT / "examples/digits/run.py"),
                          str(tmp_path / "t")], capture_output=True, text=True, env=_env(),
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "agent: 360 inputs" in run.stdout
    assert (tmp_path / "t" / "digits.edgepkg").is_file()
    # run.py reused train.py's model instead of training again
    assert (tmp_path / "t" / "lenet5.keras").read_bytes() == model_bytes
