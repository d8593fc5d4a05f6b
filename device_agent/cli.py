"""The ``edge-agent`` command: serve a bundle on local data."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

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
    from device_agent.machine import unsupported_machine

    why = unsupported_machine()
    if why:  # said at start, before a command gets as far as loading a model
        typer.echo(f"warning: {why}", err=True)


@app.command("run")
def run(
    bundle: Path = typer.Argument(None, help="A .edgepkg bundle, or a .tflite/.onnx file"),
    store: Path = typer.Option(None, "--store", help="Serve what the model store's current points to"),
    source: str = typer.Option(
        ..., "--source", help="file:DATA.npz|csv, sim:imu, sim:vibration, dir:PATH, mqtt:TOPIC?broker=URL, stdin"
    ),
    rate: float = typer.Option(None, "--rate", help="Replay at this many readings per second"),
    runtime: str = typer.Option(None, "--runtime", help="Force a runtime (litert, onnxruntime, ...)"),
    threads: int = typer.Option(None, "--threads", help="Runtime threads (LiteRT: XNNPACK's too)"),
    provider: list[str] = typer.Option(
        [], "--provider", help="ONNX Runtime execution provider, in order of preference (repeat): tensorrt, "
        "cuda, openvino, cpu; those not installed are skipped with a warning, CPU is the last resort"
    ),
    delegate: str = typer.Option(
        None, "--delegate", help="LiteRT external delegate library (e.g. libedgetpu.so.1); if it does not load, "
        "a warning and the CPU"
    ),
    limit: int = typer.Option(None, "--limit", help="Stop after this many results"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the summary"),
    cache: str = typer.Option("off", "--cache", help="Input cache: off, exact or near:TOLERANCE"),
    cache_mb: float = typer.Option(32.0, "--cache-mb", help="Cache memory cap in MiB"),
    exit_threshold: list[str] = typer.Option(
        [], "--exit-threshold", help="Early-exit threshold in [0,1] for every exit, or STAGE:VALUE"
    ),
    batch: int = typer.Option(1, "--batch", help="Micro-batch up to N inputs"),
    batch_ms: float = typer.Option(5.0, "--batch-ms", help="...or until T ms passed, whichever first"),
    backlog_batch: int = typer.Option(
        32, "--backlog-batch", help="Run up to N already-queued inputs together (file replay without --rate); 0 = off"
    ),
    sink: str = typer.Option("stdout", "--sink", help="Results to stdout or mqtt://HOST:PORT"),
    results_qos: int = typer.Option(0, "--results-qos", help="QoS (0 or 1) of MQTT results"),
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
    password: str = typer.Option(None, "--password", envvar="EDGE_MQTT_PASSWORD", help="Broker password"),
    outbox: Path = typer.Option(None, "--outbox", help="Telemetry outbox (SQLite) path"),
) -> None:
    """Serve every input from SOURCE; print one JSON line per result, then a summary."""
    from device_agent.batching import BatchOptions
    from device_agent.runtimes import RuntimeOptions
    from device_agent.serve import serve
    from device_agent.sources import open_source
    from device_agent.stats import RunStats

    try:
        opts = _engine_options(cache, cache_mb, exit_threshold)
        batching = BatchOptions(max_batch=batch, max_wait_ms=batch_ms, backlog=backlog_batch)
        src = open_source(source, **({"rate": str(rate)} if rate else {}))
        sinks = _sinks(sink, quiet, fleet, device_id, results_qos)
        opened = _open_engine(bundle, store, runtime, RuntimeOptions(
            threads=threads, providers=tuple(provider) or ("cpu",), delegate=delegate), opts)
        with opened as engine:
            telemetry = None
            if broker:
                from device_agent.telemetry import agent as tm
                from device_agent.update.store import ModelStore

                if not device_id:
                    raise EdgeError("--device-id: expected an id with --broker, found nothing")
                tm.interrupt_on_sigterm()
                args = tm.AgentTelemetryArgs(
                    broker=broker,
                    device_id=device_id,
                    fleet=fleet,
                    qos=qos,
                    interval_s=telemetry_interval,
                    keepalive=keepalive,
                    ca_file=ca_file,
                    cert_file=cert_file,
                    key_file=key_file,
                    username=username,
                    password=password,
                    outbox=outbox,
                )
                served = bundle or (ModelStore(store).current_dir() if store else None)
                telemetry = tm.start_telemetry(args, served, engine)
            stats = RunStats()
            if telemetry:
                telemetry.watch(stats)
            try:
                serve(src, engine, sinks=sinks, limit=limit, batch=batching, stats=stats)
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


def _engine_options(cache: str, cache_mb: float, thresholds: list[str]) -> Any:
    from device_agent.cache import CacheConfig
    from device_agent.engine import EngineOptions
    from device_agent.exit_policy import parse_threshold_options

    return EngineOptions(
        cache=CacheConfig.parse(cache, max_bytes=int(cache_mb * 1024 * 1024)),
        thresholds=parse_threshold_options(thresholds),
    )


def _sinks(sink: str, quiet: bool, fleet: str, device_id: str | None, qos: int) -> list[Any]:
    from device_agent.sinks import open_sink

    if sink == "stdout":
        return [] if quiet else [open_sink("stdout")]
    if not device_id:
        raise EdgeError("--device-id: expected an id with --sink mqtt://..., found nothing")
    return [open_sink(sink, fleet=fleet, device_id=device_id, qos=qos)]


def _open_engine(
    bundle: Path | None, store: Path | None, runtime: str | None, options: Any, engine_options: Any
) -> Any:
    from device_agent.loader import engine_for

    if (bundle is None) == (store is None):
        raise EdgeError("run: give either a BUNDLE or --store DIR (exactly one)")
    if store is not None:
        from device_agent.update.agent import engine_for_store

        return engine_for_store(store, runtime=runtime, options=options, engine_options=engine_options)
    assert bundle is not None
    return engine_for(bundle, runtime=runtime, options=options, engine_options=engine_options)


register_update_commands(app)


def main() -> None:
    app()
