"""The ``edge-agent`` command: ``run``, ``daemon`` and ``listen`` are thin front ends over
:class:`device_agent.agent.Agent` and :func:`device_agent.assembly.run_agent`; ``install``,
``status``, ``healthcheck`` manage the store.

The parser is argparse (:mod:`device_agent.cli_parser`), built from the option specs of
:mod:`device_agent.cli_options`, and only for the command being run: ``edge-agent run``
builds ``run`` and imports only what serving uses (the cold start is a measured target,
see ``benchmarks/footprint.py``); ``--help`` and ``--print-completion`` build them all.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from device_agent import __version__
from device_agent.cli_examples import EXAMPLES
from device_agent.cli_options import AGENT_COMMON, AGENT_SERVE, AGENT_UPDATE, BROKER, Argument, Option, config_values
from device_agent.cli_parser import Command, Parser, ParserExit, UsageError, build_parser, command_parser, suggest
from device_agent.cli_support import EXIT_USAGE, error_exit, set_verbose
from device_agent.errors import EdgeError

PROG = "edge-agent"
# command name → (module, the Command there); a command's module is imported when it is run
# or when every command is listed.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": (__name__, "RUN"),
    "daemon": (__name__, "DAEMON"),
    "listen": (__name__, "LISTEN"),
    "install": ("device_agent.update.cli", "INSTALL"),
    "status": ("device_agent.update.cli", "STATUS"),
    "healthcheck": ("device_agent.update.cli", "HEALTHCHECK"),
}
VERBOSE = Option(name="verbose", flags=("--verbose", "-v"), type=bool,
                 help="Log every step to stderr, the runtimes' own logs included.")

RUN_OPTIONS = (*AGENT_COMMON, *AGENT_SERVE, *BROKER)
DAEMON_OPTIONS = (*AGENT_COMMON, *AGENT_SERVE, *AGENT_UPDATE, *BROKER)
LISTEN_OPTIONS = (*AGENT_COMMON, *AGENT_UPDATE, *BROKER)


def run(bundle: Path | None = None, **options: Any) -> int:
    """Serve every input from SOURCE; print one JSON line per result, then a summary.

    With --broker it also publishes telemetry. Options come from flags, EDGE_AGENT_*
    variables and --config FILE, in that order of precedence.
    """
    return start("run", RUN_OPTIONS, options, bundle=bundle)


def daemon(**options: Any) -> int:
    """Serve the store's current model, take updates as they land, and roll back on regression.

    With --broker it also receives deployments over the air and publishes telemetry and
    births (re-published after a swap), on one connection. This is what the systemd unit
    runs (with --config /etc/edge-agent/agent.toml).
    """
    return start("daemon", DAEMON_OPTIONS, options)


def listen(**options: Any) -> int:
    """Receive deployments on the device's deploy topic and apply them (until stopped); serve nothing."""
    return start("listen", LISTEN_OPTIONS, options)


RUN = Command("run", run, (
    Argument(name="bundle", metavar="BUNDLE", type=Path, required=False,
             help="A .edgepkg bundle, or a .tflite/.onnx file (or --store DIR)"),
    *RUN_OPTIONS))
DAEMON = Command("daemon", daemon, DAEMON_OPTIONS)
LISTEN = Command("listen", listen, LISTEN_OPTIONS)


def start(mode: str, spec: tuple[Option, ...], options: dict[str, Any], *, bundle: Path | None = None) -> int:
    """The front ends' common body: merge the configuration, run the agent, return its exit code."""
    from device_agent.assembly import Mode, run_agent
    from device_agent.config import load_config

    config = load_config(options.get("config"), os.environ, config_values(spec, options))
    return run_agent(config, Mode(mode), bundle=bundle)


def command(name: str) -> Command:
    """The :class:`Command` called ``name`` (its module imported now)."""
    module, attr = COMMANDS[name]
    found: Command = getattr(importlib.import_module(module), attr)
    return found


def parser(names: Sequence[str] = tuple(COMMANDS)) -> Parser:
    """``edge-agent``'s parser with the commands ``names`` (all by default)."""
    return build_parser(PROG, "Serve model bundles on a device.", [command(n) for n in names],
                        version=__version__, root=(VERBOSE,), examples=EXAMPLES)


class _PlainLines(logging.Formatter):
    """``warning: MESSAGE``, one line a record, like the command's own ``error:`` lines."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _setup(verbose: bool) -> None:
    """What every command starts with: logging to stderr, ``-v``, a word about the machine."""
    handler = logging.StreamHandler(sys.stderr)
    if not verbose:  # a warning reads like the CLI's own lines; -v keeps the logger's name
        handler.setFormatter(_PlainLines())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
    set_verbose(verbose)
    from device_agent.machine import unsupported_machine

    why = unsupported_machine()
    if why:  # said at start, before a command gets as far as loading a model
        print(f"warning: {why}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``edge-agent`` console script: run the command ``argv`` (default: the process's
    arguments) names; the exit code. A usage error or an :class:`EdgeError` is one
    ``error: ...`` line and code 2; no arguments print the help (code 2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    # Global options take no value, so the first other word is the command; it alone is
    # built unless the top-level help lists them all (edge-agent --help run).
    name = next((a for a in args if not a.startswith("-")), None)
    alone = name if name in COMMANDS and not {"-h", "--help"} & set(args[: args.index(name)]) else None
    p = parser([alone] if alone else tuple(COMMANDS))
    if not args:
        p.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        ns = vars(p.parse_args(args))
    except ParserExit as e:
        return e.code
    except UsageError as e:
        hint = f"{PROG} {name} --help" if name in COMMANDS else f"{PROG} --help"
        print(f"error: {suggest(command_parser(p, name), str(e))}\nTry '{hint}' for help.", file=sys.stderr)
        return EXIT_USAGE
    cmd: Command = ns.pop("_command")
    _setup(bool(ns.pop("verbose")))
    values = {k: v for k, v in ns.items() if not k.startswith("_")}
    try:
        return cmd.call(**values)
    except (EdgeError, OSError) as e:
        return error_exit(e)
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 1
