"""``edge fleet status|watch|history|alerts``: what the collector stored, as tables or JSON."""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from edge_sdk.cli._common import cli_errors, print_json

fleet_app = typer.Typer(help="Look at the fleet the collector stores.", no_args_is_help=True)

DB = typer.Option("fleet.db", "--db", help="SQLite file or postgresql://...")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def register(app: typer.Typer) -> None:
    app.add_typer(fleet_app, name="fleet")


def fleet_console() -> Any:
    from rich.console import Console

    c = Console()
    # Piped output (logs, CI) would be cut to 80 columns and the table truncated.
    return c if c.is_terminal else Console(width=160)


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _ago(ts: float | None, now: float) -> str:
    return "-" if not ts else f"{max(now - float(ts), 0):.0f}s ago"


def status_rows(store: Any, now: float) -> list[dict[str, Any]]:
    """One JSON-friendly dict per device."""
    out = []
    for d in store.devices():
        out.append({
            "fleet": d["fleet"], "device": d["device"], "status": d["status"],
            "model": d["model_name"], "model_version": d["model_version"],
            "latency_p50_ms": d["latency_p50"], "latency_p95_ms": d["latency_p95"],
            "throughput_per_s": d["throughput"], "inferences": d["inferences"],
            "errors": d["errors"],
            "cache_hits": d["cache_hits"], "exits": json.loads(d["exits"]) if d["exits"] else {},
            "last_seen": d["last_seen"], "last_seen_s_ago": round(now - float(d["last_seen"]), 1),
            "boot_id": d["boot_id"], "seq": d["seq"],
        })  # fmt: skip
    return out


def status_table(rows: list[dict[str, Any]], now: float) -> Any:
    from rich.table import Table

    t = Table(title=f"fleet: {len(rows)} devices")
    for col in ("fleet", "device", "status", "model", "p50 ms", "p95 ms", "per s", "n/window",
                "errors", "cache", "exits", "last seen"):  # fmt: skip
        t.add_column(col)
    colors = {"online": "green", "offline": "red"}
    for r in rows:
        st = f"[{colors.get(r['status'], 'yellow')}]{r['status']}[/]"
        exits = " ".join(f"{k}:{v}" for k, v in r["exits"].items()) or "-"
        t.add_row(
            r["fleet"], r["device"], st, f"{r['model']} {r['model_version']}".strip() or "-",
            _fmt(r["latency_p50_ms"]), _fmt(r["latency_p95_ms"]), _fmt(r["throughput_per_s"], 1),
            _fmt(r["inferences"]), _fmt(r["errors"]), _fmt(r["cache_hits"]), exits,
            _ago(r["last_seen"], now),
        )  # fmt: skip
    return t


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
    fleet_console().print(status_table(rows, now))


@fleet_app.command("watch")
@cli_errors
def watch(
    db: str = DB,
    interval: float = typer.Option(2.0, "--interval", help="Refresh seconds"),
    count: int = typer.Option(0, "--count", help="Stop after this many refreshes (0 = Ctrl-C)"),
) -> None:
    """The status table, refreshed live."""
    from rich.live import Live

    from edge_sdk.fleet.store import open_store

    store = open_store(db, must_exist=True)
    n = 0
    try:
        with Live(console=fleet_console(), refresh_per_second=4) as live:
            while True:
                now = time.time()
                live.update(status_table(status_rows(store, now), now))
                n += 1
                if count and n >= count:
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        store.close()


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
    from rich.table import Table

    from edge_sdk.fleet.store import open_store

    store = open_store(db, must_exist=True)
    rows = store.history(device, fleet=fleet, limit=limit)
    store.close()
    if as_json:
        print_json(rows)
        return
    t = Table(title=f"{device}: {len(rows)} windows")
    for col in ("boot", "seq", "end", "n", "per s", "p50", "p95", "p99", "err", "cpu %", "rss MB",
                "temp", "dropped"):  # fmt: skip
        t.add_column(col)
    for r in rows:
        rss = None if r["rss_bytes"] is None else r["rss_bytes"] / 1e6
        t.add_row(
            r["boot_id"][:8], str(r["seq"]), time.strftime("%H:%M:%S", time.localtime(r["end_ts"])),
            str(r["inferences"]), _fmt(r["throughput"], 1), _fmt(r["latency_p50"]),
            _fmt(r["latency_p95"]), _fmt(r["latency_p99"]), str(r["errors"]),
            _fmt(r["cpu_percent"], 1), _fmt(rss, 1), _fmt(r["temperature_c"], 1), str(r["dropped"]),
        )  # fmt: skip
    fleet_console().print(t)


@fleet_app.command("alerts")
@cli_errors
def alerts(
    db: str = DB,
    broker: str = typer.Option(
        None, "--broker", help="Also publish new alerts to edge/v1/FLEET/alerts"
    ),
    offline_after: float = typer.Option(
        120.0, "--offline-after", help="Seconds offline before alerting"
    ),
    as_json: bool = JSON,
) -> None:
    """Evaluate the alert rules, store new alerts, and list the latest."""
    from rich.table import Table

    from edge_sdk.fleet.alerts import AlertRules, evaluate_store
    from edge_sdk.fleet.store import open_store

    store = open_store(db)
    new = evaluate_store(store, AlertRules(offline_after_s=offline_after), now=time.time())
    if broker and new:
        _publish(broker, new)
    rows = store.alerts()
    store.close()
    if as_json:
        print_json(rows)
        return
    t = Table(title=f"alerts ({len(new)} new)")
    for col in ("time", "fleet", "device", "kind", "severity", "message"):
        t.add_column(col)
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ts"]))
        t.add_row(when, r["fleet"], r["device"], r["kind"], r["severity"], r["message"])
    fleet_console().print(t)


def _publish(url: str, new: list[Any]) -> None:
    import os

    from device_agent.mqtt import BrokerOptions, MqttClient
    from device_agent.telemetry import topics

    client = MqttClient(BrokerOptions(url=url, client_id=f"edge-fleet-alerts-{os.getpid()}"))
    client.start()
    if not client.wait_connected(10):
        client.stop()
        from device_agent.errors import EdgeError

        raise EdgeError(f"--broker {url}: could not connect within 10 s")
    infos = [client.publish(topics.alerts(a.fleet), a.to_payload(), qos=1) for a in new]
    for info in infos:
        info.wait_for_publish(timeout=5)
    client.stop()
