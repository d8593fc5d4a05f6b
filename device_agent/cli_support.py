"""What both CLIs (``edge`` and ``edge-agent``) share: one ``error: ...`` line for every
failure a person can fix, and output locations checked before long work begins."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import typer
from typer.core import TyperGroup

from device_agent.errors import EdgeError

EXIT_USAGE = 2


def one_line(message: str) -> str:
    """Library messages (tarfile, parsers) can span lines; the CLIs promise one."""
    return "; ".join(part.strip() for part in message.splitlines() if part.strip())


def describe_os_error(e: OSError) -> str:
    """``PATH: reason`` for a failed file operation, the reason alone for a socket."""
    reason = e.strerror or str(e) or type(e).__name__
    if e.filename is None:
        return reason
    if getattr(e, "filename2", None) is not None:
        return f"{e.filename} -> {e.filename2}: {reason}"
    return f"{e.filename}: {reason}"


def show_version(name: str, version: str) -> Any:
    """A ``--version`` option callback: print ``NAME VERSION`` and stop."""

    def callback(value: bool) -> None:
        if value:
            typer.echo(f"{name} {version}")
            raise typer.Exit(0)

    return callback


def set_verbose(value: bool) -> None:
    """``-v``: every log line, including the runtimes' and TensorFlow's (``EDGE_VERBOSE``)."""
    if value:
        from device_agent.quiet import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"


def fail(message: str) -> typer.Exit:
    """Print ``error: MESSAGE`` on stderr; returns the exit to raise (code 2)."""
    typer.echo(f"error: {one_line(message)}", err=True)
    return typer.Exit(EXIT_USAGE)


def keep_argument_help() -> None:
    """Show arguments' help in ``--help``. typer's ``TyperArgument`` stores ``help`` and then
    calls click's ``Argument.__init__``, which (click >= 8.2) sets it again from its own
    ``help`` parameter, ``None``. Patched only where that happens, and only once."""
    from typer.core import TyperArgument

    if getattr(TyperArgument, "_edge_keeps_help", False):
        return
    probe = TyperArgument(param_decls=["probe"], help="probe")
    if probe.help == "probe":
        return
    init = TyperArgument.__init__

    def __init__(self: Any, *args: Any, help: str | None = None, **kwargs: Any) -> None:
        init(self, *args, help=help, **kwargs)
        self.help = help

    TyperArgument.__init__ = __init__  # type: ignore[method-assign]
    TyperArgument._edge_keeps_help = True  # type: ignore[attr-defined]
    # That click also lists documented arguments itself ("Positional arguments"), which
    # typer's own "Arguments" section already does.
    from typer.core import TyperCommand

    if hasattr(TyperCommand, "format_arguments"):
        TyperCommand.format_arguments = lambda self, ctx, formatter: None  # type: ignore[method-assign]


class ErrorsGroup(TyperGroup):
    """The top-level command group: an :class:`EdgeError` or an ``OSError`` (a file that
    cannot be read or written, a refused connection) from any command becomes one
    ``error: ...`` line on stderr and exit code 2, never a traceback.

    ``examples`` (command path → example lines) end each command's ``--help``.
    """

    examples: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _polish(self, "", self.examples, None)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeError as e:
            raise fail(str(e)) from None
        except BrokenPipeError:
            # `edge ... | head`: the reader left; nothing to report.
            raise typer.Exit(0) from None
        except OSError as e:
            raise fail(describe_os_error(e)) from None


    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Each command with its first sentence whole (click would cut it to the width)."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


# What to type for an option, where its type alone says TEXT, INTEGER or FLOAT.
METAVARS = {
    "--broker": "URL", "--sink": "stdout|URL", "--db": "FILE|URL", "--source": "SOURCE",
    "--target": "tflite|onnx|both", "--calibration": "minmax|percentile|entropy",
    "--compress": "none|zstd|deflate", "--exit-criterion": "max_prob|entropy",
    "--cache": "off|exact|near:TOL", "--exit-threshold": "[STAGE:]VALUE", "--fleet": "ID",
    "--device-id": "ID", "--device": "ID", "--devices": "ID,ID,...", "--group": "FLEET",
    "--runtime": "NAME", "--tls-ca": "PEM", "--tls-cert": "PEM", "--tls-key": "PEM",
    "--username": "USER", "--password": "SECRET", "--client-id": "ID", "--share-group": "GROUP",
    "--name": "NAME", "--exit-at": "LAYER,...", "--exit-fractions": "F,...",
    "--device-type": "TYPE", "--metrics-host": "ADDR", "--host": "ADDR", "--port": "PORT",
    "--metrics-port": "PORT", "--rate": "HZ", "--timeout": "SECONDS", "--interval": "SECONDS",
    "--telemetry-interval": "SECONDS", "--offline-after": "SECONDS", "--alert-interval": "SECONDS",
    "--probation-timeout": "SECONDS", "--keepalive": "SECONDS", "--retention-days": "DAYS",
    "--max-drop": "POINTS", "--prune": "FRACTION", "--lowrank": "ENERGY", "--share": "K",
    "--canary": "PERCENT", "--cache-mb": "MIB", "--batch-ms": "MS", "--latency-budget-ms": "MS",
    "--device-cost": "PER_HOUR", "--chunk-size": "BYTES", "--qos": "0|1", "--results-qos": "0|1",
}
GENERIC_METAVARS = {"TEXT": "VALUE", "INTEGER": "N", "FLOAT": "X", "INTEGER RANGE": "N",
                    "FLOAT RANGE": "X"}
# Help for options defined without any (the same option means the same on every command).
FALLBACK_HELP = {
    "--fleet": "Fleet id ([A-Za-z0-9_-])", "--device-id": "This device's id ([A-Za-z0-9_-])",
    "--tls-ca": "CA certificate (PEM) for TLS", "--tls-cert": "Client certificate (PEM)",
    "--tls-key": "Client key (PEM)", "--username": "Broker user name",
    "--password": "Broker password", "--rtol": "Relative tolerance against the recorded outputs",
    "--atol": "Absolute tolerance against the recorded outputs",
    "--latency-budget-ms": "Refuse a model slower than this per call (ms)",
    "--allow-downgrade": "Accept an older version than the store's floor",
}


def _polish(group: Any, prefix: str, examples: Mapping[str, tuple[str, ...]], ctx: Any) -> None:
    """Examples, metavars and missing option help, for every command below ``group``."""
    for name, cmd in getattr(group, "commands", {}).items():
        path = f"{prefix}{name}"
        lines = examples.get(path)
        if lines and not cmd.epilog:
            # "\b" keeps click from re-wrapping the lines into one paragraph.
            cmd.epilog = "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)
        for param in getattr(cmd, "params", []):
            _polish_option(param)
        _polish(cmd, f"{path} ", examples, ctx)


def _polish_option(param: Any) -> None:
    longs = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    if not longs or getattr(param, "is_flag", False) or param.param_type_name != "option":
        if longs and not getattr(param, "help", None) and longs[0] in FALLBACK_HELP:
            param.help = FALLBACK_HELP[longs[0]]
        return
    if not param.help and longs[0] in FALLBACK_HELP:
        param.help = FALLBACK_HELP[longs[0]]
    if param.metavar is None:
        kind = getattr(param.type, "name", "").upper()
        if longs[0] in METAVARS and kind in GENERIC_METAVARS:
            param.metavar = METAVARS[longs[0]]
        elif kind in GENERIC_METAVARS:
            param.metavar = GENERIC_METAVARS[kind]


def check_output_file(path: str | os.PathLike[str], what: str = "output") -> Path:
    """Refuse, before any work, an output file that could not be written later.

    The folders above it may be missing (they are created at write time); the nearest
    existing one must accept a new file. Nothing is left behind by the check.
    """
    p = Path(path)
    if p.is_dir():
        raise EdgeError(f"{p}: is a directory; expected a file name for the {what}")
    _check_dir(p.parent, p, what)
    return p


def check_output_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Refuse, before any work, a folder that could not be created or written into."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise EdgeError(f"{p}: exists and is not a directory; expected a folder for the {what}")
    _check_dir(p, p, what)
    return p


def _check_dir(folder: Path, target: Path, what: str) -> None:
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise EdgeError(f"{target}: cannot write the {what} here: {existing} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".edge-write-check-")
    except OSError as e:
        raise EdgeError(f"{target}: cannot write the {what} there: {existing} does not accept "
                        f"new files ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
