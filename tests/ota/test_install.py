"""The board install script and the systemd unit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "tools" / "edge-agent.service"
SCRIPT = ROOT / "tools" / "install_agent.sh"


def test_unit_is_hardened_and_restarts() -> None:
    text = UNIT.read_text()
    for line in ("Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/edge-agent", "User=edge-agent",
                 "daemon --config /etc/edge-agent/agent.toml"):
        assert line in text, line


def test_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        raise AssertionError("systemd-analyze is needed to check the unit (apt-get install systemd)")
    # Point ExecStart at an existing binary: the venv does not exist on the test machine.
    unit = tmp_path / "edge-agent.service"
    unit.write_text(UNIT.read_text().replace("/opt/edge-agent/venv/bin/edge-agent", "/bin/true"))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_install_script_dry_run(tmp_path: Path) -> None:
    key = tmp_path / "fleet-key.pub"
    key.write_text("-----BEGIN PUBLIC KEY-----\n")
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--key", str(key), "--device-type", "rpi4"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "useradd --system --home-dir /var/lib/edge-agent" in text
    # from the checkout this script is in, with the LiteRT extra only, never a name from the index
    assert f"/opt/edge-agent/venv/bin/pip install {ROOT}[agent-tflite]" in text
    assert "/var/lib/edge-agent/keys/fleet-key.pub" in text
    assert "device_type=rpi4" in text and "systemctl enable edge-agent.service" in text
    assert "/etc/edge-agent/agent.toml store=/var/lib/edge-agent" in text and "EDGE_AGENT_ARGS" not in text


def test_install_script_refuses_missing_key(tmp_path: Path) -> None:
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--key", str(tmp_path / "nope.pub")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "not found" in out.stderr


def test_install_script_installs_a_wheel_with_the_chosen_runtime(tmp_path: Path) -> None:
    wheel = tmp_path / "edgekit_sdk-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--wheel", str(wheel), "--runtime", "onnx"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"/opt/edge-agent/venv/bin/pip install {wheel}[agent-onnx]" in out.stdout


def test_install_script_refuses_to_install_by_name_or_from_nothing(tmp_path: Path) -> None:
    for args, said in ((["--package", "edge-sdk[agent]"], "--package is gone"),
                       (["--wheel", str(tmp_path / "missing.whl")], "not found"),
                       (["--wheel", "edgekit-sdk"], "expected a .whl file"),
                       (["--checkout", str(tmp_path)], "not a checkout of edgekit-sdk"),
                       (["--runtime", "tensorrt"], "expected tflite, onnx or both")):
        out = subprocess.run(["bash", str(SCRIPT), "--dry-run", *args], capture_output=True, text=True)
        assert out.returncode == 2 and said in out.stderr, (args, out.stderr)
        assert "pip install" not in out.stdout


def test_install_script_refuses_a_32_bit_machine_before_doing_anything() -> None:
    if shutil.which("setarch") is None:
        raise AssertionError("setarch (util-linux) is needed to present a 32-bit machine")
    out = subprocess.run(["setarch", "i686", "bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True)
    assert out.returncode == 2 and "unsupported machine i686" in out.stderr
    assert out.stdout == ""
