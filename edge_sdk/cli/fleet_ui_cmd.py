"""``edge fleet ui``: the collector's web dashboard over a database, without a collector."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import typer

from edge_sdk.cli._common import cli_errors


def register(app: typer.Typer) -> None:
    """Add ``edge fleet ui`` to the fleet group."""
    from edge_sdk.cli.fleet_cmd import fleet_app

    fleet_app.command("ui")(ui)


@cli_errors
def ui(
    db: str = typer.Option("fleet.db", "--db", help="SQLite file or postgresql://..."),
    http: str = typer.Option("127.0.0.1:8080", "--http", help="HOST:PORT to listen on (PORT 0: a free one)"),
    token: str = typer.Option(
        None, "--http-token", envvar="EDGE_HTTP_TOKEN", help="Required to listen beyond loopback"
    ),
) -> None:
    """Serve the read-only fleet dashboard (devices, charts, alerts, rollouts) until Ctrl-C."""
    from edge_sdk.fleet.dashboard import DashboardData
    from edge_sdk.fleet.http_server import parse_listen, serve_http
    from edge_sdk.fleet.store import open_store

    options = parse_listen(http, token=token)
    open_store(db, must_exist=True).close()  # a wrong --db fails here, with its own message, not on the first page
    server = serve_http(options, data=DashboardData(lambda: open_store(db, must_exist=True)))
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    typer.echo(f"dashboard: {server.url} (fleet database {db}; Ctrl-C stops)", err=True)
    while not stop.wait(0.5):
        pass
    server.stop()
