"""The ``edge-agent`` command: serve a bundle on local data."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer

from device_agent.errors import EdgeError
from device_agent.update.cli import register as register_update_commands

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
    bundle: Path = typer.Argument(None, help="A .edgepkg bundle, or a .tflite/.onnx file"),
    store: Path = typer.Option(None, "--store", help="Serve what the model store's current points to"),
    source: str = typer.Option(..., "--source", help="Input: file:DATA.npz[?rate=HZ]"),
    rate: float = typer.Option(None, "--rate", help="Replay at this many readings per second"),
    runtime: str = typer.Option(None, "--runtime", help="Force a runtime (litert, onnxruntime, ...)"),
    threads: int = typer.Option(None, "--threads", help="Runtime threads"),
    limit: int = typer.Option(None, "--limit", help="Stop after this many results"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the summary"),
    broker: str = typer.Option(None, "--broker", help="Publish telemetry to mqtt[s]://HOST:PORT"),
    device_id: str = typer.Option(None, "--device-id", help="This device's id ([A-Za-z0-9_-])"),
    fleet: str = typer.Option("default", "--fleet", help="Fleet id ([A-Za-z0-9_-])"),
    telemetry_interval: float = typer.Option(10.0, "--telemetry-interval", help="Window seconds"),
    qos: int = typer.Option(1, "--qos", help="Telemetry QoS (0 or 1)"),
    keepalive: int = typer.Option(30, "--keepalive", help="MQTT keepalive seconds"),
    ca_file: str = typer.Option(None, "--tls-ca", help="CA certificate (PEM) for TLS"),
    cert_file: str = typer.Option(None, "--tls-cert", help="Client certificate (PEM)"),
    key_file: str = typer.Option(None, "--tls-key", help="Client key (PEM)"),
    username: str = typer.Option(None, "--username", help="Broker user name"),
    password: str = typer.Option(
        None, "--password", envvar="EDGE_MQTT_PASSWORD", help="Broker password"
    ),
    outbox: Path = typer.Option(None, "--outbox", help="Telemetry outbox (SQLite) path"),
) -> None:
    """Serve every input from SOURCE; print one JSON line per result, then a summary."""
    from device_agent.runtimes import RuntimeOptions
    from device_agent.serve import serve
    from device_agent.sinks import StdoutSink
    from device_agent.sources import open_source

    try:
        src = open_source(source, **({"rate": str(rate)} if rate else {}))
        opened = _open_engine(bundle, store, runtime, RuntimeOptions(threads=threads))
        with opened as engine:
            sinks = [] if quiet else [StdoutSink()]
            telemetry = None
            if broker:
                from device_agent.telemetry import agent as tm

                if not device_id:
                    raise EdgeError("--device-id: expected an id with --broker, found nothing")
                tm.interrupt_on_sigterm()
                args = tm.AgentTelemetryArgs(
                    broker=broker, device_id=device_id, fleet=fleet, qos=qos,
                    interval_s=telemetry_interval, keepalive=keepalive, ca_file=ca_file,
                    cert_file=cert_file, key_file=key_file, username=username,
                    password=password, outbox=outbox,
                )
                telemetry = tm.start_telemetry(args, bundle, engine)
            observers = [telemetry] if telemetry else []
            try:
                stats = serve(src, engine, sinks=sinks, limit=limit, observers=observers)
            except KeyboardInterrupt:
                typer.echo("stopped", err=True)
                raise typer.Exit(0) from None
            finally:
                if telemetry:
                    telemetry.close()
    except EdgeError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps({"summary": stats.summary()}))


def _open_engine(bundle: Path | None, store: Path | None, runtime: str | None, options: object):  # type: ignore[no-untyped-def]
    from device_agent.loader import engine_for
    from device_agent.update.agent import engine_for_store

    if (bundle is None) == (store is None):
        raise EdgeError("run: give either a BUNDLE or --store DIR (exactly one)")
    if store is not None:
        return engine_for_store(store, runtime=runtime, options=options)  # type: ignore[arg-type]
    return engine_for(bundle, runtime=runtime, options=options)  # type: ignore[arg-type]


register_update_commands(app)


def main() -> None:
    app()
