"""The ``edge`` command. Each command group lives in its own module with ``register``."""

from __future__ import annotations

import importlib

import typer

from device_agent.cli_support import set_verbose
from edge_sdk import __version__
from edge_sdk.cli._common import ErrorsGroup, show_version
from edge_sdk.cli._help import keep_argument_help
from edge_sdk.cli.examples import EXAMPLES


class EdgeGroup(ErrorsGroup):
    """The shared error-handling group, given the ``edge`` commands' examples for their ``--help``."""

    examples = EXAMPLES


app = typer.Typer(
    cls=EdgeGroup,
    name="edge",
    help="Optimize models for small devices, ship them, and watch the fleet.",
    no_args_is_help=True,
    rich_markup_mode=None,
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

@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Show the converters' and runtimes' own logs (EDGE_VERBOSE=1)."),
    version: bool = typer.Option(False, "--version", is_eager=True,
                                 callback=show_version("edge", __version__),
                                 help="Print the version and exit."),
) -> None:
    set_verbose(verbose)
    from edge_sdk._quiet import quiet_tensorflow_import

    quiet_tensorflow_import()


keep_argument_help()

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """The ``edge`` console script's entry point."""
    app()
