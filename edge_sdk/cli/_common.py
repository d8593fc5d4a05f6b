"""Shared CLI plumbing: one-line errors, JSON output, the rich console."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from device_agent.errors import EdgeError

F = TypeVar("F", bound=Callable[..., Any])


def cli_errors(fn: F) -> F:
    """Turn an :class:`EdgeError` into ``error: <message>`` on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgeError as e:
            # Library messages (tarfile, parsers) can span lines; the CLI promises one.
            one_line = "; ".join(part.strip() for part in str(e).splitlines() if part.strip())
            typer.echo(f"error: {one_line}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
