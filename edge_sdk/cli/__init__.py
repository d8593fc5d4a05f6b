"""The ``edge`` command. Each command group lives in its own module with ``register``."""

from __future__ import annotations

import importlib

import typer

from device_agent.cli_support import ErrorsGroup

app = typer.Typer(
    cls=ErrorsGroup,
    name="edge",
    help="Optimize models for small devices, ship them, and watch the fleet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One module per command (group); each defines register(app). Imported at start-up, so
# these modules keep heavy imports (TensorFlow, onnx) inside the command functions.
COMMAND_MODULES = [
    "edge_sdk.cli.inspect_cmd",
    "edge_sdk.cli.optimize_cmd",
    "edge_sdk.cli.pack_cmd",
    "edge_sdk.cli.demo_cmd",
    "edge_sdk.cli.collector_cmd",
    "edge_sdk.cli.fleet_cmd",
    "edge_sdk.cli.fleet_users_cmd",
    "edge_sdk.cli.fleet_ui_cmd",
    "edge_sdk.cli.fleet_retire_cmd",
    "edge_sdk.cli.broker_cmd",
    "edge_sdk.cli.eval_cmd",
    "edge_sdk.cli.bench_cmd",
    "edge_sdk.cli.keys_cmd",
    "edge_sdk.cli.ota_cmd",
]

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    app()
