"""What both CLIs (``edge`` and ``edge-agent``) share: one ``error: ...`` line for every
failure a person can fix, and output locations checked before long work begins."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import typer
from typer.core import TyperGroup

from device_agent.cli_help import polish
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



@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """:class:`EdgeError` and ``OSError`` become ``error: <message>`` and exit code 2; a
    closed pipe (`edge ... | head`: the reader left) ends quietly."""
    try:
        yield
    except EdgeError as e:
        raise fail(str(e)) from None
    except BrokenPipeError:
        raise typer.Exit(0) from None
    except OSError as e:
        raise fail(describe_os_error(e)) from None

class ErrorsGroup(TyperGroup):
    """The top-level command group: an :class:`EdgeError` or an ``OSError`` (a file that
    cannot be read or written, a refused connection) from any command becomes one
    ``error: ...`` line on stderr and exit code 2, never a traceback.

    ``examples`` (command path → example lines) end each command's ``--help``.
    """

    examples: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        polish(self, self.examples)

    def invoke(self, ctx: Any) -> Any:
        """Run the command under :func:`one_line_errors`, so no command can end in a traceback."""
        with one_line_errors():
            return super().invoke(ctx)


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
