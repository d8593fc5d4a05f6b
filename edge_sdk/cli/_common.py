"""Shared CLI plumbing: one-line errors, the top-level group, ``--version``, JSON output."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

import typer
from typer.core import TyperGroup

from device_agent.cli_support import error_exit
from device_agent.errors import EdgeError
from edge_sdk.cli._help import polish

F = TypeVar("F", bound=Callable[..., Any])

# Image preprocessing, shared by `edge optimize` and `edge pack`: stored as the manifest's
# steps (edge_sdk.model.preprocess) so host and device compute the same thing.
RESIZE = typer.Option(None, "--resize", help="Images: resize to HEIGHTxWIDTH (bilinear)")
SCALE = typer.Option(None, "--scale", help="Multiply values by this (1/255 for 8-bit pixels)")
MEAN = typer.Option(None, "--mean", help="Normalize: subtract this (per channel: a,b,c)")
STD = typer.Option(None, "--std", help="Normalize: divide by this (per channel: a,b,c)")
GRAYSCALE = typer.Option(False, "--grayscale", help="Images: RGB to one luminance channel")
BGR = typer.Option(False, "--bgr", help="Images: reverse the channel order (RGB to BGR)")
LAYOUT = typer.Option(None, "--layout", help="Images: nchw (channels first) or nhwc")


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """:class:`EdgeError` and ``OSError`` become ``error: <message>`` and exit code 2; a
    closed pipe (`edge ... | head`: the reader left) ends quietly."""
    try:
        yield
    except (EdgeError, OSError) as e:
        raise typer.Exit(error_exit(e)) from None


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


def show_version(name: str, version: str) -> Any:
    """A ``--version`` option callback: print ``NAME VERSION`` and stop."""

    def callback(value: bool) -> None:
        if value:
            typer.echo(f"{name} {version}")
            raise typer.Exit(0)

    return callback


def cli_errors(fn: F) -> F:
    """Turn an :class:`EdgeError` or ``OSError`` into ``error: <message>`` on stderr and
    exit code 2 (the top-level group does the same for every command; this keeps a
    command function called on its own just as clean)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with one_line_errors():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Write ``obj`` to stdout as one indented, key-sorted JSON object (``--json`` output)."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
