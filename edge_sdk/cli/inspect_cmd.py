"""``edge inspect``: what a model or bundle holds."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edge_sdk.cli._common import cli_errors, print_json


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_artifact)


@cli_errors
def inspect_artifact(
    artifact: Path = typer.Argument(..., help="A .keras/.h5/SavedModel, .onnx, .tflite, .edgepkg"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show inputs, outputs, parameters, MACs, file size and, for a bundle, its manifest."""
    from edge_sdk.inspect import describe

    info = describe(artifact)
    if as_json:
        print_json(info)
        return
    for k, v in info.items():
        if k in ("manifest", "layers"):
            continue  # long: shown with --json
        typer.echo(f"{k}: {v if isinstance(v, (str, int, float)) else json.dumps(v)}")
