"""device_agent stays light: it must never pull in the host side or TensorFlow."""

from __future__ import annotations

import subprocess
import sys


def test_device_agent_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import device_agent, device_agent.cli, device_agent.serve, device_agent.bundle\n"
        "import device_agent.loader, device_agent.engine, device_agent.sources\n"
        "from device_agent.runtimes import load_model, backend\n"
        "backend('litert'); backend('onnxruntime')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('edge_sdk', 'tensorflow', 'keras', 'tf_keras', 'onnx', 'tf2onnx')]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"device_agent imported host modules: {out.stdout}"


def test_edge_cli_import_is_light() -> None:
    code = (
        "import sys\nimport edge_sdk.cli\n"
        "print(','.join(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing the CLI loaded TensorFlow: {out.stdout}"


def test_agent_cli_imports_no_cli_framework() -> None:
    """``edge-agent`` is argparse: importing its CLI, or building every command's parser for
    ``--help``, loads none of the frameworks ``edge`` uses (typer, click, rich)."""
    code = (
        "import sys\nimport device_agent.cli\n"
        "first = [m for m in sys.modules if m.split('.')[0] in ('typer', 'click', 'rich')]\n"
        "device_agent.cli.parser().format_help()\n"
        "after = [m for m in sys.modules if m.split('.')[0] in ('typer', 'click', 'rich')]\n"
        "print(','.join(sorted({*first, *after})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the agent's CLI imported: {out.stdout}"
