"""Shared CLI plumbing: one-line errors, JSON output, the rich console."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from device_agent.cli_support import describe_os_error, fail
from device_agent.errors import EdgeError

F = TypeVar("F", bound=Callable[..., Any])


def cli_errors(fn: F) -> F:
    """Turn an :class:`EdgeError` or ``OSError`` into ``error: <message>`` on stderr and
    exit code 2 (the top-level group does the same for every command; this keeps a
    command function called on its own just as clean)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgeError as e:
            raise fail(str(e)) from None
        except BrokenPipeError:
            raise typer.Exit(0) from None
        except OSError as e:
            raise fail(describe_os_error(e)) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
