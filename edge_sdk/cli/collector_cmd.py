"""``edge collector``: gather the fleet's telemetry into SQLite or PostgreSQL."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import typer

from device_agent.mqtt import BrokerOptions
from edge_sdk.cli._common import cli_errors
from edge_sdk.cli._options import broker_options


def register(app: typer.Typer) -> None:
    """Add ``edge collector`` to ``app``."""
    app.command("collector")(collector)


@cli_errors
@broker_options(required=True)
def collector(
    broker: BrokerOptions = None,  # type: ignore[assignment]
    db: str = typer.Option("fleet.db", "--db", help="SQLite file or postgresql://..."),
    share_group: str = typer.Option(None, "--share-group", help="$share group to split the fleet"),
    fleet: str = typer.Option("+", "--fleet", show_default=False,
                              help="Only this fleet (default: every fleet)"),
    metrics_port: int = typer.Option(
        None, "--metrics-port", help="Alias of --http 127.0.0.1:PORT (Prometheus /metrics)"
    ),
    http: str = typer.Option(
        None, "--http", help="Serve the dashboard and /metrics on HOST:PORT (loopback unless a token)"
    ),
    http_token: str = typer.Option(
        None, "--http-token", envvar="EDGE_HTTP_TOKEN", help="Required to listen beyond loopback"
    ),
    retention_days: float = typer.Option(
        None, "--retention-days", help="Delete raw windows, deploy reports and alerts older than this"
    ),
    rollup_retention_days: float = typer.Option(
        None, "--rollup-retention-days", help="Delete hourly rollups older than this (default: keep)"
    ),
    alert_interval: float = typer.Option(
        30.0, "--alert-interval", help="Seconds between alert runs"
    ),
    homeassistant: bool = typer.Option(
        False, "--homeassistant", help="Publish Home Assistant MQTT discovery for every device"
    ),
    ha_prefix: str = typer.Option(
        "homeassistant", "--homeassistant-prefix", help="Home Assistant's discovery prefix"
    ),
    ha_interval: float = typer.Option(
        10.0, "--homeassistant-interval", help="Seconds between Home Assistant updates"
    ),
) -> None:
    """Subscribe to edge/v1/FLEET/+/# and store state, telemetry and deploy status.

    A stable --client-id keeps the broker session (and the messages it queues) across restarts.
    """
    from dataclasses import replace

    from device_agent.errors import EdgeError
    from edge_sdk.fleet.collector import Collector, CollectorOptions, default_client_id
    from edge_sdk.fleet.homeassistant import check_prefix as topics_prefix
    from edge_sdk.fleet.http_server import HttpOptions, parse_listen

    if http and metrics_port is not None:
        raise EdgeError("--metrics-port is an alias of --http 127.0.0.1:PORT: give one of them")
    listen = parse_listen(http, token=http_token) if http else None
    if metrics_port is not None:
        listen = HttpOptions(port=metrics_port, token=http_token)

    options = CollectorOptions(
        broker=replace(broker, client_id=broker.client_id or default_client_id(share_group),
                       clean_session=False, max_inflight=1000),
        db=db, share_group=share_group, fleet=fleet, retention_days=retention_days,
        rollup_retention_days=rollup_retention_days,
        http=listen, alert_interval_s=alert_interval,
        homeassistant=topics_prefix(ha_prefix) if homeassistant else None, homeassistant_interval_s=ha_interval,
    )  # fmt: skip
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    c = Collector(options).start()
    typer.echo(f"collector: {broker.url} → {db} (filter {c.filter})", err=True)
    if c.metrics_server:
        url = c.metrics_server.url
        typer.echo(f"collector: dashboard {url} (metrics on {url}metrics)", err=True)
    while not stop.is_set() and not c.subscribed.wait(0.5):
        pass
    if c.subscribed.is_set():
        typer.echo("collector: subscribed", err=True)
    while not stop.wait(0.5):
        pass
    c.stop()
