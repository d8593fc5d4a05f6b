"""Top-level ``--version`` of both commands."""

from __future__ import annotations

from typer.testing import CliRunner

from device_agent import __version__ as agent_version
from device_agent.cli import app as agent_app
from edge_sdk import __version__
from edge_sdk.cli import app

runner = CliRunner()


def test_versions() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout == f"edge {__version__}\n"
    res = runner.invoke(agent_app, ["--version"])
    assert res.exit_code == 0 and res.stdout == f"edge-agent {agent_version}\n"
