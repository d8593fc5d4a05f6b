"""``edge collector``: gather the fleet's telemetry into SQLite or PostgreSQL."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import typer

from device_agent.cli_options import broker_options
from device_agent.mqtt import BrokerOptions
from edge_sdk.cli._common import cli_errors


def register(app: typer.Typer) -> None:
    app.command("collector")(collector)


@cli_errors
@broker_options(required=True)
def collector(
    broker: BrokerOptions = None,  # type: ignore[assignment]
    db: str = typer.Option("fleet.db", "--db", help="SQLite file or postgresql://..."),
    share_group: str = typer.Option(None, "--share-group", help="$share group to split the fleet"),
    fleet: str = typer.Option("+", "--fleet", help="Only this fleet (default: all)"),
    metrics_port: int = typer.Option(None, "--metrics-port", help="Serve Prometheus /metrics"),
    retention_days: float = typer.Option(None, "--retention-days", help="Delete older rows"),
    alert_interval: float = typer.Option(
        30.0, "--alert-interval", help="Seconds between alert runs"
    ),
) -> None:
    """Subscribe to edge/v1/FLEET/+/# and store state, telemetry and deploy status.

    A stable --client-id keeps the broker session (and the messages it queues) across restarts.
    """
    from dataclasses import replace

    from edge_sdk.fleet.collector import Collector, CollectorOptions, default_client_id

    options = CollectorOptions(
        broker=replace(broker, client_id=broker.client_id or default_client_id(share_group),
                       clean_session=False, max_inflight=1000),
        db=db, share_group=share_group, fleet=fleet, retention_days=retention_days,
        metrics_port=metrics_port, alert_interval_s=alert_interval,
    )  # fmt: skip
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    c = Collector(options).start()
    port = c.metrics_server.server_port if c.metrics_server else None
    typer.echo(f"collector: {broker.url} → {db} (filter {c.filter}; metrics port {port})", err=True)
    while not stop.is_set() and not c.subscribed.wait(0.5):
        pass
    if c.subscribed.is_set():
        typer.echo("collector: subscribed", err=True)
    while not stop.wait(0.5):
        pass
    c.stop()
