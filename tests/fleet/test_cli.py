"""``edge fleet``, ``edge collector`` pieces and ``edge broker`` through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
from typer.testing import CliRunner

from device_agent.mqtt import BrokerOptions, MqttClient
from device_agent.protocol.messages import Alert, DeployPhase, DeployStatus, State, Status, TelemetryWindow
from edge_sdk.cli import app
from edge_sdk.fleet.store import Batch, open_store
from tests.fleet.conftest import ENV, wait_for

runner = CliRunner()


def populate(db: str, now: float) -> None:
    """Two devices: d-ok steady; d-bad with a latency regression, a gap and outbox drops."""
    store = open_store(db)
    b = Batch()
    for dev in ("d-ok", "d-bad"):
        b.states.append(
            (
                "lab",
                dev,
                State(
                    status=Status.ONLINE,
                    boot_id=f"{dev}-b",
                    ts=now - 100,
                    model_name="digits",
                    model_version="1.2.0",
                    model_hash="ab",
                ),
                now - 100,
            )
        )
        for seq in range(12):
            if dev == "d-bad" and seq == 7:
                continue  # a window that never arrived
            slow = dev == "d-bad" and seq == 11
            w = TelemetryWindow(
                seq=seq,
                boot_id=f"{dev}-b",
                start=now - 60 + seq * 5,
                end=now - 55 + seq * 5,
                inferences=100,
                throughput=20.0,
                latency_p50=1.0,
                latency_p95=9.0 if slow else 2.0,
                latency_p99=3.0,
                exits={"0": 60, "1": 40},
                cache_hits=5,
                dropped=3 if slow else 0,
            )
            b.windows.append(("lab", dev, w, now - 55 + seq * 5))
    b.deploys.append(("lab", "d-bad", DeployStatus(rollout="r7", version="1.3.0", status=DeployPhase.ROLLED_BACK,
                                                  ts=now - 10, reason="health check failed"), now - 10))
    assert store.write(b).inserted == 23
    assert store.write(b).duplicates == 23  # replays are deduplicated by the database
    store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return str(tmp_path / "fleet.db")
    return str(request.getfixturevalue("pg_dsn"))


def test_batches_keep_arrival_order_and_drop_duplicates_within_and_across(db: str) -> None:
    store = open_store(db)

    def batch(*keys: tuple[str, int]) -> Batch:
        b = Batch()
        for dev, seq in keys:
            w = TelemetryWindow(seq=seq, boot_id="b1", start=seq, end=seq + 1.0, inferences=seq)
            b.windows.append(("lab", dev, w, 100.0 + seq))
        return b

    r = store.write(batch(("z", 5), ("a", 9), ("z", 5), ("m", 1), ("a", 2)))
    assert (r.inserted, r.duplicates) == (4, 1)
    r = store.write(batch(("a", 9), ("q", 0), ("m", 1)))
    assert (r.inserted, r.duplicates) == (1, 2)
    assert [(d, s) for _, d, _, s in store.telemetry_keys()] == [
        ("z", 5), ("a", 9), ("m", 1), ("a", 2), ("q", 0),
    ]  # fmt: skip
    assert [h["inferences"] for h in store.history("a")] == [2, 9]
    store.close()


def invoke(*args: str) -> Any:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r


def test_status_history_alerts(db: str, broker) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    populate(db, now)
    rows = json.loads(invoke("fleet", "status", "--db", db, "--json").stdout)
    assert [(r["device"], r["status"], r["model_version"], r["seq"]) for r in rows] == [
        ("d-bad", "online", "1.2.0", 11),
        ("d-ok", "online", "1.2.0", 11),
    ]
    assert rows[0]["latency_p95_ms"] == 9.0 and rows[1]["exits"] == {"0": 60, "1": 40}
    table = invoke("fleet", "status", "--db", db).stdout
    assert "d-ok" in table and "online" in table
    hist = json.loads(invoke("fleet", "history", "d-bad", "--db", db, "--json").stdout)
    assert [h["seq"] for h in hist] == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11]
    assert hist[0]["exits"] == rows[0]["exits"] == {"0": 60, "1": 40}  # an object, as in status
    assert "d-bad: 11 windows" in invoke("fleet", "history", "d-bad", "--db", db).stdout
    mq = broker()
    got: list[Alert] = []
    watcher = MqttClient(
        BrokerOptions(url=mq.url, client_id="alert-watch"),
        on_message=lambda m: got.append(Alert.from_payload(m.payload)),
    )
    watcher.start()
    assert watcher.wait_connected(10)
    watcher.subscribe("edge/v1/lab/alerts")
    time.sleep(0.3)
    alerts = json.loads(invoke("fleet", "alerts", "--db", db, "--json", "--broker", mq.url).stdout)
    kinds = sorted((a["device"], a["kind"]) for a in alerts)
    assert kinds == [
        ("d-bad", "latency-regression"),
        ("d-bad", "outbox-drops"),
        ("d-bad", "rollout-failed"),
        ("d-bad", "telemetry-gap"),
    ]
    wait_for(lambda: len(got) == 4, 10, "alerts published on edge/v1/lab/alerts")
    watcher.stop()
    again = json.loads(invoke("fleet", "alerts", "--db", db, "--json").stdout)
    assert len(again) == 4  # stored once, not re-raised
    assert "(0 new)" in invoke("fleet", "alerts", "--db", db).stdout
    assert invoke("fleet", "watch", "--db", db, "--count", "1", "--interval", "0").exit_code == 0
    store = open_store(db)
    from edge_sdk.fleet.schema import MIGRATIONS

    assert store.schema_version() == max(MIGRATIONS)
    store.close()


def test_bad_db_and_broker_urls_are_one_line_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = runner.invoke(app, ["fleet", "status", "--db", "mysql://x/y"])
    assert r.exit_code == 2 and "expected a SQLite file path or postgresql://" in r.output
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    r = runner.invoke(app, ["fleet", "status", "--db", str(junk)])
    assert r.exit_code == 2 and str(junk) in r.output
    r = runner.invoke(app, ["collector", "--broker", "http://x", "--db", str(tmp_path / "f.db")])
    assert r.exit_code == 2 and "broker URL" in r.output


def test_edge_broker_embedded_amqtt_on_a_free_port() -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", "edge_sdk", "broker"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = p.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("broker: mqtt://127.0.0.1:")
        url = line.split()[1]
        got: list[bytes] = []
        c = MqttClient(
            BrokerOptions(url=url, client_id="t"), on_message=lambda m: got.append(m.payload)
        )
        c.start()
        assert wait_for(lambda: c.connected, 20, "connection to the embedded broker")
        c.subscribe("edge/v1/x/y/state")
        time.sleep(0.5)
        c.publish("edge/v1/x/y/state", b"hello", qos=1)
        wait_for(lambda: got == [b"hello"], 10, "round trip")
        c.stop()
    finally:
        p.terminate()
        p.wait(timeout=10)


def test_grafana_dashboard_uses_metrics_the_collector_exports() -> None:
    import re
    from pathlib import Path

    from tests.fleet.conftest import REPO

    dash = json.loads((REPO / "tools" / "grafana" / "edge-fleet.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"] if "expr" in t]
    names = {n for e in exprs for n in re.findall(r"edge_collector_[a-z_]+", e)}
    source = Path(REPO / "edge_sdk" / "fleet" / "collector.py").read_text()
    assert names and all(f'"{n}"' in source for n in names), names
    sqls = [t["rawSql"] for p in dash["panels"] for t in p["targets"] if "rawSql" in t]
    for col in ("latency_p95", "end_ts", "last_seen", "status"):
        assert any(col in s for s in sqls)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--broker", "mqtt://127.0.0.1:1", "--device-id", "pi/01"], "device id: expected"),
        (["--broker", "mqtt://127.0.0.1:1"], "--device-id: expected an id"),
        (["--broker", "http://127.0.0.1", "--device-id", "pi-01"], "broker URL: expected"),
        (["--broker", "mqtt://127.0.0.1:1", "--device-id", "pi-01", "--qos", "2"], "--qos: expected 0 or 1"),
    ],
)
def test_agent_broker_options_are_checked(tiny_model, tmp_path, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    tflite, data = tiny_model
    cmd = [sys.executable, "-m", "device_agent", "run", str(tflite), "--source", f"file:{data}", "-q",
           "--outbox", str(tmp_path / "ob.db"), *args]  # fmt: skip
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr.splitlines()[-1]


def test_history_of_an_unknown_device_is_an_error(db: str) -> None:
    populate(db, time.time())
    r = runner.invoke(app, ["fleet", "history", "nobody", "--db", db])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        f"error: no device nobody in {db}; `edge fleet status --db {db}` lists them"]
    r = runner.invoke(app, ["fleet", "history", "d-ok", "--db", db, "--fleet", "other"])
    assert r.exit_code == 2 and "(it has d-ok in fleet " in r.stderr


def test_one_device_is_not_devices(db: str) -> None:
    from edge_sdk.report.tables import count

    assert (count(1, "device"), count(2, "window"), count(1200, "window")) == ("1 device", "2 windows", "1,200 windows")
