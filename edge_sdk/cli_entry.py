"""The ``edge`` console script. Its command line needs the ``host`` extra (typer), which a
device install (the ``agent-*`` extras) leaves out; there ``edge`` says so in one line."""

from __future__ import annotations

import importlib.util
import sys


def main() -> None:
    """Run ``edge``, or say which extra it needs."""
    if importlib.util.find_spec("typer") is None:
        print("error: the edge command needs the host extra (pip install 'edgekit-sdk[host]'); "
              "on a device, the agent's command is edge-agent", file=sys.stderr)
        raise SystemExit(2)
    from edge_sdk.cli import main as edge_main

    edge_main()
