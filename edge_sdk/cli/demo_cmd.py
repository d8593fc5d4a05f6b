"""``edge demo``: train, optimize, serve and report on shipped data, no setup."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import typer

from edge_sdk.cli._common import cli_errors, print_json


def register(app: typer.Typer) -> None:
    """Add ``edge demo`` to ``app``."""
    app.command("demo")(demo)


@cli_errors
def demo(
    out: Path | None = typer.Option(None, "--out", help="Folder for model, bundle and report "
                                    "(default: a new temporary folder)"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Train LeNet-5 on digits, optimize it to an int8 bundle, serve it, print the report;
    then run a small fleet (embedded broker, collector, 3 agents) and show its status."""
    from device_agent.cli_support import check_output_dir
    from edge_sdk._quiet import quiet
    from edge_sdk.cli._progress import rich_progress
    from edge_sdk.cli.fleet_cmd import status_table
    from edge_sdk.demo.state import DemoState
    from edge_sdk.demo.steps import run_demo
    from edge_sdk.report.render import print_table
    from edge_sdk.report.tables import print_table as print_fleet

    if out is not None:
        check_output_dir(out, "demo folder")
    folder = out or Path(tempfile.mkdtemp(prefix="edge-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    with rich_progress(enabled=not as_json) as progress, quiet():
        state = run_demo(DemoState(out=folder, progress=progress, say=lines.append))
    report = state.results["report"]
    if as_json:
        print_json({**report.to_dict(), "serve": state.results["serve"],
                    "fleet": state.results["fleet"]})
        return
    for line in lines:
        typer.echo(line)
    print_table(report)
    typer.echo(f"$ edge fleet status --db {state.results['fleet_db']}")
    print_fleet(status_table(state.results["fleet"], time.time()))
    typer.echo(f"files in {folder}")
