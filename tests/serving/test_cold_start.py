"""``edge-agent run`` imports what serving a file uses and nothing else: no CLI framework
(typer, click, rich), no update machinery, no MQTT client, TLS or TOML parser. Each costs
start time on every boot of a device (``benchmarks/footprint.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import DigitsSplit

RUN = (
    "import json, sys\n"
    "from device_agent.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
)
NOT_FOR_RUN = ("typer", "click", "rich", "ssl", "paho", "tomllib", "tomli", "device_agent.update",
               "device_agent.mqtt", "device_agent.protocol.messages", "device_agent.ed25519")


def test_run_imports_only_what_serving_uses(int8_tflite: Path, digits: DigitsSplit) -> None:
    import json

    out = subprocess.run([sys.executable, "-c", RUN, "run", str(int8_tflite), "--source", f"file:{digits.test}",
                          "--limit", "3", "-q"], capture_output=True, text=True, timeout=120)
    last = json.loads(out.stdout.splitlines()[-1])
    assert last["code"] == 0, out.stderr
    assert '"count": 3' in out.stdout  # it served
    loaded = [m for m in last["modules"] if any(m == n or m.startswith(f"{n}.") for n in NOT_FOR_RUN)]
    assert loaded == [], loaded
