"""``edge collector``: gather the fleet's telemetry into SQLite or PostgreSQL."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import typer

from edge_sdk.cli._common import cli_errors


def register(app: typer.Typer) -> None:
    app.command("collector")(collector)


@cli_errors
def collector(
    broker: str = typer.Option(..., "--broker", help="mqtt[s]://HOST:PORT"),
    db: str = typer.Option("fleet.db", "--db", help="SQLite file or postgresql://..."),
    share_group: str = typer.Option(None, "--share-group", help="$share group to split the fleet"),
    fleet: str = typer.Option("+", "--fleet", show_default=False,
                              help="Only this fleet (default: every fleet)"),
    client_id: str = typer.Option(None, "--client-id", help="Stable MQTT client id (session)"),
    metrics_port: int = typer.Option(None, "--metrics-port", help="Serve Prometheus /metrics"),
    metrics_host: str = typer.Option(
        "127.0.0.1", "--metrics-host",
        help="Address the metrics port binds (0.0.0.0 for every interface)"),
    retention_days: float = typer.Option(None, "--retention-days", help="Delete older rows"),
    alert_interval: float = typer.Option(
        30.0, "--alert-interval", help="Seconds between alert runs"
    ),
    username: str = typer.Option(None, "--username"),
    password: str = typer.Option(None, "--password", envvar="EDGE_MQTT_PASSWORD"),
    ca_file: str = typer.Option(None, "--tls-ca"),
    cert_file: str = typer.Option(None, "--tls-cert"),
    key_file: str = typer.Option(None, "--tls-key"),
) -> None:
    """Subscribe to edge/v1/FLEET/+/# and store state, telemetry and deploy status."""
    from device_agent.mqtt import BrokerOptions
    from edge_sdk.fleet.collector import Collector, CollectorOptions, default_client_id

    options = CollectorOptions(
        broker=BrokerOptions(
            url=broker, client_id=client_id or default_client_id(share_group),
            clean_session=False, username=username, password=password, ca_file=ca_file,
            cert_file=cert_file, key_file=key_file, max_inflight=1000,
        ),
        db=db, share_group=share_group, fleet=fleet, retention_days=retention_days,
        metrics_port=metrics_port, metrics_host=metrics_host, alert_interval_s=alert_interval,
    )  # fmt: skip
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    c = Collector(options).start()
    metrics = (f"; metrics on http://{metrics_host}:{c.metrics_server.server_port}/metrics"
               if c.metrics_server else "")
    typer.echo(f"collector: {broker} → {db} (filter {c.filter}{metrics})", err=True)
    while not stop.is_set() and not c.subscribed.wait(0.5):
        pass
    if c.subscribed.is_set():
        typer.echo("collector: subscribed", err=True)
    while not stop.wait(0.5):
        pass
    c.stop()
