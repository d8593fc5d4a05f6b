"""Collector: share groups, ACLs, hostile payloads, PostgreSQL — real broker and databases."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from device_agent.mqtt import BrokerOptions, MqttClient
from device_agent.protocol import topics
from device_agent.protocol.messages import MAX_PAYLOAD, TelemetryWindow
from tests.fleet.conftest import REPO, sqlite_rows, wait_for
from tests.fleet.test_reliability import collector_up

sys.path.insert(0, str(REPO / "tools"))


def pg_count(
    dsn: str, sql: str = "SELECT COUNT(*), COUNT(DISTINCT (device, boot_id, seq)) FROM telemetry"
) -> tuple[Any, ...]:
    try:
        with psycopg.connect(dsn) as con:
            return tuple(con.execute(sql).fetchone() or ())
    except psycopg.errors.UndefinedTable:
        return (0, 0)


def test_share_group_one_collector_killed_no_qos1_message_lost(broker, procs, pg_dsn) -> None:  # type: ignore[no-untyped-def]
    """Two collectors split the fleet into PostgreSQL; one is SIGKILLed mid-stream and later
    restarted with the same client id: its persistent session hands back what it had not
    acknowledged (it acknowledges only after committing), so every message is stored once."""
    mq = broker()
    a = collector_up(procs, mq.url, pg_dsn, client_id="ca", group="g1")
    collector_up(procs, mq.url, pg_dsn, client_id="cb", group="g1")
    devices, windows = 200, 20
    sim = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tools" / "fleet_sim.py"),
            "--broker",
            mq.url,
            "--devices",
            str(devices),
            "--windows",
            str(windows),
            "--rate",
            "1000",
        ],
        env={"PYTHONPATH": str(REPO)},
    )
    wait_for(lambda: pg_count(pg_dsn)[0] >= 600, 60, "ingest under way")
    a.send_signal(signal.SIGKILL)
    a.wait()
    at_kill = pg_count(pg_dsn)[0]
    assert sim.wait(timeout=120) == 0
    time.sleep(1.0)
    before_restart = pg_count(pg_dsn)[0]
    collector_up(procs, mq.url, pg_dsn, client_id="ca", group="g1")
    total = devices * windows
    wait_for(lambda: pg_count(pg_dsn)[0] >= total, 60, "every window stored")
    time.sleep(1.0)
    rows, distinct = pg_count(pg_dsn)
    assert rows == distinct == total
    print(
        f"\nshare group, collector A SIGKILLed at {at_kill}/{total} windows: "
        f"{before_restart} stored "
        f"by B alone, {rows} after A's restart; 0 lost, 0 duplicated (PostgreSQL)"
    )


ACL_USERS = {"collector": "c-secret", "lab/pi-01": "p1-secret", "lab/pi-02": "p2-secret"}


def acl_broker(broker, tmp_path: Path) -> Any:  # type: ignore[no-untyped-def]
    pw = tmp_path / "passwd"
    for i, (user, password) in enumerate(ACL_USERS.items()):
        flags = ["-c"] if i == 0 else []
        subprocess.run(["mosquitto_passwd", "-b", *flags, str(pw), user, password], check=True)
    acl = REPO / "tools" / "mosquitto" / "acl.example"
    extra = (
        f"allow_anonymous false\npassword_file {pw}\nacl_file {acl}\n"
        "use_username_as_clientid true\n"
    )
    return broker(extra_config=extra)


def window(seq: int, boot: str = "acl") -> bytes:
    return TelemetryWindow(seq=seq, boot_id=boot, start=1.0, end=2.0, inferences=1).to_payload()


def publish_when_connected(c: MqttClient, topic: str, payload: bytes, retain: bool) -> None:
    """QoS 1 publish that waits out a reconnect (Mosquitto 2.0.11 drops an MQTT 3.1.1
    client right after acknowledging a PUBLISH its ACL denied; paho then refuses the next
    publish instead of queueing it)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if c.wait_connected(1):
            info = c.publish(topic, payload, qos=1, retain=retain)
            if info.rc == 0:
                info.wait_for_publish(10)
                return
        time.sleep(0.1)
    raise AssertionError(f"could not publish to {topic} within 20 s")


def test_acl_device_cannot_publish_to_another_devices_topics(
    tiny_model, broker, procs, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    mq = acl_broker(broker, tmp_path)
    db = tmp_path / "fleet.db"
    collector_up(procs, mq.url, db, extra=("--username", "collector", "--password", "c-secret"))
    agent = procs.agent(
        tiny_model,
        mq.url,
        "pi-01",
        outbox=tmp_path / "ob.db",
        extra=("--username", "lab/pi-01", "--password", "p1-secret"),
    )
    wait_for(
        lambda: sqlite_rows(db, "SELECT 1 FROM telemetry WHERE device='pi-01'"), 30, "pi-01 windows"
    )
    procs.stop(agent)  # the broker forces client id = user name: one pi-01 connection at a time
    wait_for(  # the broker has seen the agent leave: its clean "offline" reached the collector
        lambda: sqlite_rows(db, "SELECT 1 FROM devices WHERE device='pi-01' AND status='offline'"),
        20, "pi-01 offline",
    )  # fmt: skip
    # pi-01 (authenticated) tries to write pi-02's telemetry and state, then its own.
    rogue = MqttClient(
        BrokerOptions(url=mq.url, client_id="pi-01x", username="lab/pi-01", password="p1-secret")
    )
    rogue.start()
    assert rogue.wait_connected(10)
    for topic, payload, retain in (
        (topics.telemetry("lab", "pi-02"), window(0), False),
        (topics.state("lab", "pi-02"), b'{"v":1}', True),
        (topics.telemetry("lab", "pi-01"), window(7), False),
    ):
        publish_when_connected(rogue, topic, payload, retain)
    wait_for(
        lambda: sqlite_rows(db, "SELECT 1 FROM telemetry WHERE boot_id='acl'"),
        20,
        "own-topic window",
    )
    rogue.stop()
    assert sqlite_rows(db, "SELECT device, seq FROM telemetry WHERE boot_id='acl'") == [
        ("pi-01", 7)
    ]
    assert sqlite_rows(db, "SELECT * FROM devices WHERE device='pi-02'") == []
    # a wrong password is refused outright
    bad = MqttClient(
        BrokerOptions(url=mq.url, client_id="pi-02", username="lab/pi-02", password="nope")
    )
    bad.start()
    assert not bad.wait_connected(2)
    bad.stop()
    print(
        "\nACL: pi-01 publishing to pi-02's telemetry/state was dropped by the broker; "
        "its own topic was stored; a wrong password was refused"
    )


def metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\S+) (\S+)$", text, re.M)}


def test_hostile_payloads_are_counted_never_stored_never_crash(broker, procs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    mq, db = broker(), tmp_path / "fleet.db"
    col = collector_up(procs, mq.url, db, extra=("--metrics-port", "0"))
    log = (procs.root / "collector-c1.log").read_text()
    port = int(re.search(r"dashboard http://127.0.0.1:(\d+)/", log).group(1))  # type: ignore[union-attr]
    assert "None" not in log  # unset options are left out, not printed as None
    c = MqttClient(BrokerOptions(url=mq.url, client_id="fuzzer"))
    c.start()
    assert c.wait_connected(10)
    t = topics.telemetry("lab", "pi-09")
    good = json.loads(window(0, "fz"))
    bad_payloads = [
        b"",
        b"\xff\xfe\x00garbage",
        b'{"v":1',
        b"null",
        b"[]",
        b'"str"',
        json.dumps({**good, "seq": -5}).encode(),
        json.dumps({**good, "seq": "1"}).encode(),
        json.dumps({**good, "latency_p95": None, "boot_id": 7}).encode(),
        json.dumps({**good, "exits": {"0": "many"}}).encode(),
        b'{"v":1,"type":"telemetry","seq":1,"boot_id":"b","start":1,"end":Infinity}',
        # These three once stopped the collector: a count too big for a 64-bit column
        # (every retry of the batch failed), a number too big for a float and deep
        # nesting (both killed the writer thread).
        json.dumps({**good, "seq": 2**70}).encode(),
        json.dumps({**good, "latency_p50": 10**400}).encode(),
        b"[" * 60000,
    ]
    future = time.time() + 3600  # past the collector's clock-skew allowance (300 s)
    impossible = {  # each well-formed, impossible: counted by the rule it breaks
        "window": [{"end": 0.5}],
        "negative": [{"latency_p50": -1.0}, {"cpu_percent": -3}],
        "percentiles": [{"latency_p50": 5.0, "latency_p95": 4.0, "latency_p99": 6.0}],
        "counts": [{"exits": {"0": 1, "1": 1}}, {"cache_hits": 2}],
        "future": [{"start": future - 1, "end": future}],
    }
    for p in bad_payloads + [json.dumps({**good, **ch}).encode() for chs in impossible.values() for ch in chs]:
        c.publish(t, p, qos=1)
    c.publish(t, json.dumps({**good, "pad": "x" * MAX_PAYLOAD}).encode(), qos=1)  # oversized
    # Past the collector's packet cap: its body is skipped, never buffered, and acknowledged.
    c.publish(t, b"[" + b" " * (3 << 20) + b"]", qos=1)
    c.publish(t, json.dumps({**good, "v": 2}).encode(), qos=1)  # wrong version
    c.publish(t, json.dumps({**good, "v": "1"}).encode(), qos=1)
    c.publish(topics.state("lab", "pi-09"), b"offline", qos=1)
    c.publish("edge/v1/lab/bad.id/telemetry", window(0), qos=1)  # not a fleet topic
    c.publish(t, window(0, "fz"), qos=1).wait_for_publish(10)
    wait_for(lambda: sqlite_rows(db, "SELECT 1 FROM telemetry"), 20, "the valid window")
    c.stop()
    time.sleep(0.5)
    m = metrics(port)
    assert col.poll() is None, "collector crashed"
    assert m['edge_collector_rejected_total{reason="malformed"}'] == len(bad_payloads) + 1
    assert m['edge_collector_rejected_total{reason="oversized"}'] == 2
    assert m['edge_collector_rejected_total{reason="version"}'] == 2
    for reason, changes in impossible.items():
        assert m[f'edge_collector_rejected_total{{reason="{reason}"}}'] == len(changes), reason
    assert m['edge_collector_ignored_total{kind="other"}'] == 1
    assert m["edge_collector_windows_stored_total"] == 1
    assert sqlite_rows(db, "SELECT device, boot_id, seq FROM telemetry") == [("pi-09", "fz", 0)]
    assert sqlite_rows(db, "SELECT COUNT(*) FROM devices WHERE status != 'unknown'") == [(0,)]
    assert sqlite_rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert (
        "rejected edge/v1/lab/pi-09/telemetry (oversized)"
        in (procs.root / "collector-c1.log").read_text()
    )
    # Everything rejected was acknowledged: a restarted collector on the same persistent
    # session receives none of it again, only the next valid window.
    col.terminate()
    col.wait(10)
    col = procs.collector(mq.url, str(db), client_id="c1", extra=("--metrics-port", "0"))
    log_file = procs.root / "collector-c1.log"
    wait_for(lambda: log_file.read_text().count("collector: subscribed") == 2, 30, "second SUBACK")
    port = int(re.findall(r"metrics on http://127.0.0.1:(\d+)/", log_file.read_text())[-1])
    c = MqttClient(BrokerOptions(url=mq.url, client_id="fuzzer2"))
    c.start()
    assert c.wait_connected(10)
    c.publish(t, window(1, "fz"), qos=1).wait_for_publish(10)
    c.stop()
    wait_for(lambda: len(sqlite_rows(db, "SELECT 1 FROM telemetry")) == 2, 20, "the next window")
    m = metrics(port)
    assert not any(k.startswith("edge_collector_rejected_total") and v for k, v in m.items()), m
    assert m['edge_collector_messages_total{kind="telemetry"}'] == 1
    print(
        f"\nhostile payloads: {len(bad_payloads) + 5} rejected and counted "
        f"(malformed {len(bad_payloads) + 1}, oversized 2, version 2), 1 ignored topic, "
        "collector alive, 1 valid row, integrity ok, none redelivered after a restart"
    )


def _publish_windows(url: str, client_id: str, plan: list[tuple[str, int]], boot: str) -> None:
    """QoS 1 windows (device, seq), every PUBACK awaited."""
    c = MqttClient(BrokerOptions(url=url, client_id=client_id))
    c.start()
    assert c.wait_connected(10)
    infos = [c.publish(topics.telemetry("lab", dev), window(seq, boot), qos=1) for dev, seq in plan]
    for info in infos:
        info.wait_for_publish(10)
    c.stop()


def _refuse_device(db: str, device: str) -> None:
    """A real constraint in the real database that refuses one device's windows (``*``:
    every device's), as a DBA's CHECK or trigger might, added after the migrations ran."""
    from edge_sdk.fleet.store import open_store

    open_store(db).close()
    if db.startswith("postgresql://"):
        with psycopg.connect(db, autocommit=True) as con:
            con.execute(
                "CREATE FUNCTION refuse_device() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.device = '{device}' OR '{device}' = '*' THEN RAISE EXCEPTION "
                "'device % refused', NEW.device USING ERRCODE = 'check_violation'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            con.execute("CREATE TRIGGER refuse BEFORE INSERT ON telemetry "
                        "FOR EACH ROW EXECUTE FUNCTION refuse_device()")  # fmt: skip
    else:
        import sqlite3

        con = sqlite3.connect(db)
        con.execute("CREATE TRIGGER refuse BEFORE INSERT ON telemetry "
                    f"WHEN NEW.device = '{device}' OR '{device}' = '*' "
                    "BEGIN SELECT RAISE(ABORT, 'device refused'); END")  # fmt: skip
        con.commit()
        con.close()


def _allow_again(db: str) -> None:
    if db.startswith("postgresql://"):
        with psycopg.connect(db, autocommit=True) as con:
            con.execute("DROP TRIGGER refuse ON telemetry")
    else:
        import sqlite3

        con = sqlite3.connect(db, timeout=30)
        con.execute("DROP TRIGGER refuse")
        con.commit()
        con.close()


def _stored(db: str, boot: str) -> list[tuple[Any, ...]]:
    sql = f"SELECT device, seq FROM telemetry WHERE boot_id='{boot}' ORDER BY device, seq"
    if db.startswith("postgresql://"):
        with psycopg.connect(db) as con:
            return [tuple(r) for r in con.execute(sql).fetchall()]
    return sqlite_rows(Path(db), sql)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_window_the_database_refuses_is_rejected_alone(backend, broker, procs, tmp_path, request) -> None:  # type: ignore[no-untyped-def]
    """The database refuses one device's windows: each is rejected on its own (logged,
    counted, acknowledged) and every other window of the same batches is stored; before,
    the whole batch was retried forever and the fleet's ingest stalled."""
    db = str(tmp_path / "fleet.db") if backend == "sqlite" else request.getfixturevalue("pg_dsn")
    _refuse_device(db, "pi-bad")
    mq = broker()
    collector_up(procs, mq.url, db)
    plan = [(dev, seq) for seq in range(20) for dev in ("pi-01", "pi-bad", "pi-02")]
    _publish_windows(mq.url, "pub-1", plan, "refuse")
    good = sorted((d, s) for d, s in plan if d != "pi-bad")
    wait_for(lambda: len(_stored(db, "refuse")) >= len(good), 30, "the other devices' windows")
    _publish_windows(mq.url, "pub-2", [("pi-01", 20)], "refuse")  # not stalled afterwards
    wait_for(lambda: ("pi-01", 20) in _stored(db, "refuse"), 30, "a later window")
    assert _stored(db, "refuse") == sorted([*good, ("pi-01", 20)])
    log = (procs.root / "collector-c1.log").read_text()
    assert log.count("rejected a message the database refused") == 20
    assert "lab/pi-bad (telemetry)" in log


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_refusing_everything_loses_nothing(backend, broker, procs, tmp_path, request) -> None:  # type: ignore[no-untyped-def]
    """When the database refuses every message (a new constraint all rows fail), that is
    its problem, not the messages': nothing is acknowledged or rejected, and everything is
    stored once the constraint is gone."""
    db = str(tmp_path / "fleet.db") if backend == "sqlite" else request.getfixturevalue("pg_dsn")
    _refuse_device(db, "*")
    mq = broker()
    collector_up(procs, mq.url, db)
    plan = [("pi-01", s) for s in range(10)]
    _publish_windows(mq.url, "pub-1", plan[:5], "all")
    log_path = procs.root / "collector-c1.log"
    wait_for(lambda: "the database refused all" in log_path.read_text(), 30, "the refusal logged")
    _publish_windows(mq.url, "pub-2", plan[5:], "all")  # joins the held ones, refused too
    time.sleep(2.0)
    assert _stored(db, "all") == []
    _allow_again(db)
    wait_for(lambda: len(_stored(db, "all")) >= 10, 30, "every window once allowed")
    assert _stored(db, "all") == plan
    assert "rejected a message the database refused" not in log_path.read_text()


def test_postgres_backend_killed_collector_reconnects_nothing_lost(broker, procs, pg_dsn) -> None:  # type: ignore[no-untyped-def]
    """The collector's PostgreSQL session is terminated by the server (as a restart or an
    admin would): the collector reconnects and every window is stored exactly once."""
    import psutil

    mq = broker()
    col = collector_up(procs, mq.url, pg_dsn)
    _publish_windows(mq.url, "pub-1", [("pi-01", s) for s in range(50)], "kill")
    wait_for(lambda: len(_stored(pg_dsn, "kill")) >= 50, 30, "the first 50 windows")
    ports = [c.laddr.port for c in psutil.Process(col.pid).net_connections("tcp") if c.raddr and c.raddr.port == 5432]
    assert ports, "the collector holds no PostgreSQL connection"
    with psycopg.connect(pg_dsn, autocommit=True) as con:
        killed = con.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'edge-collector' AND client_port = ANY(%s)", (ports,)
        ).fetchall()
    assert killed == [(True,)]
    _publish_windows(mq.url, "pub-2", [("pi-01", s) for s in range(50, 100)], "kill")
    wait_for(lambda: len(_stored(pg_dsn, "kill")) >= 100, 60, "every window after the kill")
    time.sleep(0.5)
    assert _stored(pg_dsn, "kill") == [("pi-01", s) for s in range(100)]
    assert "retrying" in (procs.root / "collector-c1.log").read_text()


def test_metrics_bind_loopback_by_default() -> None:
    """``--metrics-port N`` (an alias of ``--http 127.0.0.1:N``) never opens every interface."""
    from edge_sdk.fleet.http_server import HttpOptions, serve_http
    from edge_sdk.fleet.metrics import Metrics

    server = serve_http(HttpOptions(port=0), metrics=Metrics())
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()
