"""The ``edge-agent`` command: ``run``, ``daemon`` and ``listen`` are thin front ends over
:class:`device_agent.agent.Agent` and :func:`device_agent.assembly.run_agent`; ``install``,
``status``, ``healthcheck`` manage the store.

Commands are built lazily: ``edge-agent run`` turns only ``run`` into a click command and
imports only what serving uses (the cold start is a measured target, see
``benchmarks/footprint.py``); ``--help`` and the tests that walk the tree build them all.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import typer

from device_agent import __version__
from device_agent.cli_examples import EXAMPLES
from device_agent.cli_help import keep_argument_help, polish
from device_agent.cli_options import (
    AGENT_COMMON,
    AGENT_SERVE,
    AGENT_UPDATE,
    AgentFlags,
    agent_options,
    broker_options,
)
from device_agent.cli_support import ErrorsGroup, set_verbose, show_version
from device_agent.errors import EdgeError

keep_argument_help()

# command name → (module, function); each becomes a click command when first looked up.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": (__name__, "run"),
    "daemon": (__name__, "daemon"),
    "listen": (__name__, "listen"),
    "install": ("device_agent.update.cli", "install"),
    "status": ("device_agent.update.cli", "status"),
    "healthcheck": ("device_agent.update.cli", "healthcheck"),
}


def build_command(name: str) -> click.Command:
    """One command of :data:`COMMANDS` as click sees it, with its examples and metavars."""
    module, attr = COMMANDS[name]
    one = typer.Typer(rich_markup_mode=None, add_completion=False)
    one.command(name)(getattr(importlib.import_module(module), attr))
    cmd = typer.main.get_command(one)
    cmd.name = name
    polish(SimpleNamespace(commands={name: cmd}), EXAMPLES)
    return cmd


class LazyCommands(MutableMapping[str, click.Command]):
    """The group's commands: every name of :data:`COMMANDS`, each built on first access."""

    def __init__(self, build: Callable[[str], click.Command]) -> None:
        self._build = build
        self._built: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = self._build(name)
        return self._built[name]

    def __setitem__(self, name: str, cmd: click.Command) -> None:
        self._built[name] = cmd

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*COMMANDS, *self._built]))

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self._built))


class AgentGroup(ErrorsGroup):
    """``edge-agent``: the shared error handling, over lazily built commands."""

    examples = EXAMPLES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands(build_command)


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
    start("run", flags, broker, bundle=bundle)


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
    start("daemon", flags, broker)


@broker_options(as_values=True)
@agent_options(AGENT_COMMON, AGENT_UPDATE)
def listen(
    flags: AgentFlags | None = None,
    broker: dict[str, Any] | None = None,
) -> None:
    """Receive deployments on the device's deploy topic and apply them (until stopped); serve nothing."""
    start("listen", flags, broker)


def start(mode: str, flags: AgentFlags | None, broker: dict[str, Any] | None, *,
          bundle: Path | None = None) -> None:
    """The front ends' common body: merge the configuration, run the agent, exit with its code."""
    from device_agent.assembly import Mode, run_agent
    from device_agent.config import load_config

    assert flags is not None and broker is not None  # filled by the option decorators
    try:
        values = {**flags.values, **{f"broker.{k}": v for k, v in broker.items()}}
        config = load_config(flags.config, os.environ, values)
        code = run_agent(config, Mode(mode), bundle=bundle)
    except EdgeError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if code:
        raise typer.Exit(code)



def main() -> None:
    """The ``edge-agent`` console script."""
    app()
