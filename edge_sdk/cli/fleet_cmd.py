"""``edge fleet status|watch|history|alerts``: what the collector stored, as tables or JSON."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import typer

from device_agent.errors import EdgeError
from device_agent.mqtt import BrokerOptions, MqttClient
from edge_sdk.cli._common import cli_errors, print_json
from edge_sdk.cli._options import broker_options
from edge_sdk.fleet.views import status_rows
from edge_sdk.report.tables import Column, Table, count, is_terminal, print_table, render

fleet_app = typer.Typer(help="Look at the fleet the collector stores.", no_args_is_help=True,
                        rich_markup_mode=None)

DB = typer.Option("fleet.db", "--db", help="SQLite file or postgresql://...")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def register(app: typer.Typer) -> None:
    """Add the ``edge fleet`` group to ``app`` (other modules add their commands to it)."""
    app.add_typer(fleet_app, name="fleet")


def fleet_console() -> Any:
    """A rich console for live views; its width is the terminal's (80 when piped)."""
    from rich.console import Console

    return Console()


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _ago(ts: float | None, now: float) -> str:
    return "-" if not ts else f"{max(now - float(ts), 0):.0f}s ago"


STATUS_COLORS = {"online": "green", "offline": "red"}


def status_table(rows: list[dict[str, Any]], now: float) -> Table:
    """The status of every device as a :class:`~edge_sdk.report.tables.Table` (device first)."""
    cols = (Column("device"), Column("fleet"), Column("status"), Column("model", wrap=True),
            *(Column(n, right=True) for n in ("p50 ms", "p95 ms", "per s", "n/window", "errors",
                                              "cache")),
            Column("exits", wrap=True), Column("last seen", right=True))
    out = []
    for r in rows:
        exits = " ".join(f"{k}:{v}" for k, v in r["exits"].items()) or "-"
        out.append((
            r["device"], r["fleet"], r["status"], f"{r['model']} {r['model_version']}".strip() or "-",
            _fmt(r["latency_p50_ms"]), _fmt(r["latency_p95_ms"]), _fmt(r["throughput_per_s"], 1),
            _fmt(r["inferences"]), _fmt(r["errors"]), _fmt(r["cache_hits"]), exits,
            _ago(r["last_seen"], now),
        ))  # fmt: skip
    return Table.of(f"fleet: {count(len(rows), 'device')}", cols, out, styles=STATUS_COLORS)


@fleet_app.command("status")
@cli_errors
def status(db: str = DB, as_json: bool = JSON) -> None:
    """Every device: status, model, p50/p95, throughput, errors, cache, exits, last seen."""
    from edge_sdk.fleet.store import open_store

    store, now = open_store(db, must_exist=True), time.time()
    rows = status_rows(store, now)
    store.close()
    if as_json:
        print_json(rows)
        return
    print_table(status_table(rows, now))


@fleet_app.command("watch")
@cli_errors
def watch(
    db: str = DB,
    interval: float = typer.Option(2.0, "--interval", help="Refresh seconds"),
    count: int = typer.Option(0, "--count", help="Stop after this many refreshes (0 = Ctrl-C)"),
) -> None:
    """The status table, refreshed live."""
    from edge_sdk.fleet.store import open_store

    store = open_store(db, must_exist=True)
    try:
        if is_terminal():
            _watch_live(store, interval, count)
        else:
            _watch_plain(store, interval, count)
    except KeyboardInterrupt:
        pass
    finally:
        store.close()


def _watch_live(store: Any, interval: float, count: int) -> None:
    from rich.live import Live

    con = fleet_console()
    n = 0
    with Live(console=con, refresh_per_second=4) as live:
        while True:
            now = time.time()
            live.update(render(status_table(status_rows(store, now), now), terminal=True,
                               width=con.width))
            n += 1
            if count and n >= count:
                break
            time.sleep(interval)


def _watch_plain(store: Any, interval: float, count: int) -> None:
    """Piped: the plain table once per refresh, a blank line between refreshes."""
    n = 0
    while True:
        now = time.time()
        if n:
            sys.stdout.write("\n")
        print_table(status_table(status_rows(store, now), now))
        sys.stdout.flush()
        n += 1
        if count and n >= count:
            break
        time.sleep(interval)


@fleet_app.command("history")
@cli_errors
def history(
    device: str = typer.Argument(..., help="Device id"),
    db: str = DB,
    fleet: str = typer.Option(None, "--fleet", help="Fleet id (when ids repeat across fleets)"),
    limit: int = typer.Option(50, "--limit", help="Latest N windows"),
    as_json: bool = JSON,
) -> None:
    """One device's telemetry windows over time."""
    from edge_sdk.fleet.store import open_store

    store = open_store(db, must_exist=True)
    try:
        fleets = store.fleets_of(device)
        if not fleets or (fleet and fleet not in fleets):
            where = f" in fleet {fleet}" if fleet else ""
            known = f" (it has {device} in fleet {', '.join(fleets)})" if fleets else ""
            raise EdgeError(f"no device {device}{where} in {db}{known}; `edge fleet status --db {db}` lists them")
        rows = store.history(device, fleet=fleet, limit=limit)
    finally:
        store.close()
    if as_json:  # exits as an object, as in `status --json` (stored as JSON text)
        print_json([{**r, "exits": json.loads(r["exits"]) if r["exits"] else {}} for r in rows])
        return
    cols = (Column("boot"), *(Column(n, right=True) for n in (
        "seq", "end", "n", "per s", "p50", "p95", "p99", "err", "cpu %", "rss MB", "temp", "dropped")))
    out = []
    for r in rows:
        rss = None if r["rss_bytes"] is None else r["rss_bytes"] / 1e6
        out.append((
            r["boot_id"][:8], str(r["seq"]), time.strftime("%H:%M:%S", time.localtime(r["end_ts"])),
            str(r["inferences"]), _fmt(r["throughput"], 1), _fmt(r["latency_p50"]),
            _fmt(r["latency_p95"]), _fmt(r["latency_p99"]), str(r["errors"]),
            _fmt(r["cpu_percent"], 1), _fmt(rss, 1), _fmt(r["temperature_c"], 1), str(r["dropped"]),
        ))  # fmt: skip
    print_table(Table.of(f"{device}: {count(len(rows), 'window')}", cols, out))


@fleet_app.command("alerts")
@cli_errors
@broker_options()
def alerts(
    db: str = DB,
    broker: BrokerOptions | None = None,
    offline_after: float = typer.Option(
        120.0, "--offline-after", help="Seconds offline before alerting"
    ),
    as_json: bool = JSON,
) -> None:
    """Evaluate the alert rules, store new alerts, and list the latest.

    With --broker (and its credential options) new alerts are also published to
    edge/v1/FLEET/alerts.
    """
    from edge_sdk.fleet.alerts import AlertRules, evaluate_store
    from edge_sdk.fleet.store import open_store

    # The broker first: alerts stored as seen but never published would not count as new
    # on the next run, so a dead broker is an error before anything is evaluated.
    client = _connected(broker) if broker else None
    try:
        store = open_store(db)
        new = evaluate_store(store, AlertRules(offline_after_s=offline_after), now=time.time())
        if client is not None and new:
            _publish(client, new)
        rows = store.alerts()
        store.close()
    finally:
        if client is not None:
            client.stop()
    if as_json:
        print_json(rows)
        return
    cols = ("time", "fleet", "device", "kind", "severity", Column("message", wrap=True))
    out = [(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ts"])), r["fleet"], r["device"],
            r["kind"], r["severity"], r["message"]) for r in rows]
    print_table(Table.of(f"alerts ({len(new)} new)", cols, out))


def _connected(broker: BrokerOptions) -> MqttClient:
    """A started client, connected, or :class:`EdgeError` naming the URL and the reason."""
    import os
    from dataclasses import replace

    client = MqttClient(replace(broker, client_id=broker.client_id or f"edge-fleet-alerts-{os.getpid()}"),
                        log_outages=False)
    client.start()
    client.require_connected(10)
    return client


def _publish(client: MqttClient, new: list[Any]) -> None:
    from device_agent.protocol import topics

    infos = [client.publish(topics.alerts(a.fleet), a.to_payload(), qos=1) for a in new]
    for info in infos:
        info.wait_for_publish(timeout=5)
