"""The ``edge-agent`` command: ``run``, ``daemon`` and ``listen`` are thin front ends over
:func:`device_agent.assembly.run_agent`; ``install``, ``status``, ``healthcheck`` manage the store."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import typer

from device_agent import __version__
from device_agent.assembly import Mode, run_agent
from device_agent.cli_examples import EXAMPLES
from device_agent.cli_help import keep_argument_help
from device_agent.cli_options import (
    AGENT_COMMON,
    AGENT_SERVE,
    AGENT_UPDATE,
    AgentFlags,
    agent_options,
    broker_options,
)
from device_agent.cli_support import ErrorsGroup, set_verbose, show_version
from device_agent.config import load_config
from device_agent.errors import EdgeError
from device_agent.update.cli import register as register_update_commands

keep_argument_help()


class AgentGroup(ErrorsGroup):
    examples = EXAMPLES


app = typer.Typer(
    cls=AgentGroup,
    name="edge-agent",
    help="Serve model bundles on a device.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


class _PlainLines(logging.Formatter):
    """``warning: MESSAGE``, one line a record, like the command's own ``error:`` lines."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Log every step to stderr, the runtimes' own logs included."),
    version: bool = typer.Option(False, "--version", is_eager=True,
                                 callback=show_version("edge-agent", __version__),
                                 help="Print the agent's version and exit."),
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if not verbose:  # a warning reads like the CLI's own lines; -v keeps the logger's name
        handler.setFormatter(_PlainLines())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
    set_verbose(verbose)
    from device_agent.machine import unsupported_machine

    why = unsupported_machine()
    if why:  # said at start, before a command gets as far as loading a model
        typer.echo(f"warning: {why}", err=True)


@app.command("run")
@broker_options(as_values=True)
@agent_options(AGENT_COMMON, AGENT_SERVE)
def run(
    bundle: Path = typer.Argument(None, help="A .edgepkg bundle, or a .tflite/.onnx file (or --store DIR)"),
    flags: AgentFlags | None = None,
    broker: dict[str, Any] | None = None,
) -> None:
    """Serve every input from SOURCE; print one JSON line per result, then a summary.

    With --broker it also publishes telemetry. Options come from flags, EDGE_AGENT_*
    variables and --config FILE, in that order of precedence.
    """
    start(Mode.RUN, flags, broker, bundle=bundle)


@app.command("daemon")
@broker_options(as_values=True)
@agent_options(AGENT_COMMON, AGENT_SERVE, AGENT_UPDATE)
def daemon(
    flags: AgentFlags | None = None,
    broker: dict[str, Any] | None = None,
) -> None:
    """Serve the store's current model, take updates as they land, and roll back on regression.

    With --broker it also receives deployments over the air and publishes telemetry and
    births (re-published after a swap), on one connection. This is what the systemd unit
    runs (with --config /etc/edge-agent/agent.toml).
    """
    start(Mode.DAEMON, flags, broker)


@app.command("listen")
@broker_options(as_values=True)
@agent_options(AGENT_COMMON, AGENT_UPDATE)
def listen(
    flags: AgentFlags | None = None,
    broker: dict[str, Any] | None = None,
) -> None:
    """Receive deployments on the device's deploy topic and apply them (until stopped); serve nothing."""
    start(Mode.LISTEN, flags, broker)


def start(mode: Mode, flags: AgentFlags | None, broker: dict[str, Any] | None, *,
          bundle: Path | None = None) -> None:
    """The front ends' common body: merge the configuration, run the agent, exit with its code."""
    assert flags is not None and broker is not None  # filled by the option decorators
    try:
        values = {**flags.values, **{f"broker.{k}": v for k, v in broker.items()}}
        config = load_config(flags.config, os.environ, values)
        code = run_agent(config, mode, bundle=bundle)
    except EdgeError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if code:
        raise typer.Exit(code)


register_update_commands(app)


def main() -> None:
    app()
