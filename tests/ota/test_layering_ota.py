"""The update modules run on the device: no edge_sdk, TensorFlow or onnx imports."""

from __future__ import annotations

import subprocess
import sys


def test_update_modules_import_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import device_agent.trust, device_agent.onnx_check, device_agent.update\n"
        "import device_agent.update.agent, device_agent.update.transport, device_agent.update.cli\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('edge_sdk', 'tensorflow', 'keras', 'onnx', 'tf2onnx')]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout
