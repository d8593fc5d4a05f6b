"""Shared CLI plumbing: one-line errors, JSON output, the rich console."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from device_agent.cli_support import one_line_errors

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
