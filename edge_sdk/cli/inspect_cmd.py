"""``edge inspect``: what a model or bundle holds."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edge_sdk.cli._common import cli_errors, print_json


def register(app: typer.Typer) -> None:
    """Add ``edge inspect`` to ``app``."""
    app.command("inspect")(inspect_artifact)


@cli_errors
def inspect_artifact(
    artifact: Path = typer.Argument(..., help="A .keras/.h5/SavedModel, .onnx, .tflite, .edgepkg"),
    shape: list[str] = typer.Option(
        [], "--shape", help="Fix an input's dynamic dimensions for the MAC count: NAME=1x3x48x192"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show inputs, outputs, parameters, MACs, file size and, for a bundle, its manifest."""
    from device_agent.feeds import parse_shape_options
    from edge_sdk.model.inspect import describe

    info = describe(artifact, parse_shape_options(shape))
    if as_json:
        print_json(info)
        return
    for k, v in info.items():
        if k in ("manifest", "layers"):
            continue  # long: shown with --json
        typer.echo(f"{k}: {v if isinstance(v, (str, int, float)) else json.dumps(v)}")
