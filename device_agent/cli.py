"""The ``edge-agent`` command: serve a bundle on local data."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer

from device_agent.errors import EdgeError

app = typer.Typer(
    name="edge-agent",
    help="Serve model bundles on a device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log to stderr.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr)


@app.command("run")
def run(
    bundle: Path = typer.Argument(..., help="A .edgepkg bundle, or a .tflite/.onnx file"),
    source: str = typer.Option(..., "--source", help="Input: file:DATA.npz[?rate=HZ]"),
    rate: float = typer.Option(None, "--rate", help="Replay at this many readings per second"),
    runtime: str = typer.Option(None, "--runtime", help="Force a runtime (litert, onnxruntime, ...)"),
    threads: int = typer.Option(None, "--threads", help="Runtime threads"),
    limit: int = typer.Option(None, "--limit", help="Stop after this many results"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the summary"),
) -> None:
    """Serve every input from SOURCE; print one JSON line per result, then a summary."""
    from device_agent.loader import engine_for
    from device_agent.runtimes import RuntimeOptions
    from device_agent.serve import serve
    from device_agent.sinks import StdoutSink
    from device_agent.sources import open_source

    try:
        src = open_source(source, **({"rate": str(rate)} if rate else {}))
        with engine_for(bundle, runtime=runtime, options=RuntimeOptions(threads=threads)) as engine:
            sinks = [] if quiet else [StdoutSink()]
            stats = serve(src, engine, sinks=sinks, limit=limit)
    except EdgeError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps({"summary": stats.summary()}))


def main() -> None:
    app()
