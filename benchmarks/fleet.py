"""Fleet benchmark: collector ingest rate (SQLite, PostgreSQL) and telemetry's cost to the agent.

    PYTHONPATH=. python benchmarks/fleet.py [--devices 1000] [--windows 30]

Ingest: the simulator queues DEVICES × WINDOWS telemetry messages (QoS 1) in a Mosquitto
started on a free port for a persistent session; then that session's consumer connects and
drains the queue. The baseline is a bare paho subscriber that only counts (no parsing, no
database) draining the same queue in the same run, so the ratio shows what parsing,
validation and storage cost on this machine. Agent: the same model and input served with
telemetry off and on (0.25 s windows, a local Mosquitto), medians of alternating runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from fleet_sim import SimOptions, simulate  # noqa: E402

from device_agent.mqtt import BrokerOptions, MqttClient  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402

# Telemetry's work is per window (nothing runs per inference): runs (~1 s) must span
# windows. 0.25 s is 40x more windows than the agent's default, so the cost is an upper bound.
WINDOW_S = 0.25
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


def queue_for(mq: Mosquitto, client_id: str, devices: int, windows: int) -> None:
    """Create ``client_id``'s persistent session, then queue the fleet's telemetry for it."""
    c = MqttClient(BrokerOptions(url=mq.url, client_id=client_id, clean_session=False))
    done = threading.Event()
    c._on_subscribe = done.set
    c.start()
    c.wait_connected(10)
    c.subscribe("edge/v1/+/+/#", qos=1)
    done.wait(10)
    c.stop()
    simulate(SimOptions(broker=mq.url, devices=devices, windows=windows, fleet="bench"))


def drain_bare(mq: Mosquitto, client_id: str, expected: int) -> tuple[float, float]:
    """(messages per second, CPU µs per message) for a subscriber that only counts."""
    n = 0
    first = 0.0
    done = threading.Event()

    cpu = [0.0, 0.0]

    def on_message(msg: object) -> None:
        nonlocal n, first
        if n == 0:
            first, cpu[0] = time.perf_counter(), time.process_time()
        n += 1
        if n >= expected:
            cpu[1] = time.process_time()
            done.set()

    c = MqttClient(
        BrokerOptions(url=mq.url, client_id=client_id, clean_session=False, max_inflight=1000),
        on_message=on_message,
    )
    c.start()
    done.wait(300)
    rate = (n - 1) / (time.perf_counter() - first)
    c.stop()
    return rate, (cpu[1] - cpu[0]) / (n - 1) * 1e6


def count_rows(db: str) -> tuple[int, float]:
    """Read-only poll (opening a Store would migrate, i.e. take the write lock)."""
    sql = "SELECT COUNT(*), MIN(received_at) FROM telemetry"
    try:
        if "://" in db:
            import psycopg

            with psycopg.connect(db) as con:
                n, t = con.execute(sql).fetchone()  # type: ignore[misc]
        else:
            import sqlite3

            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            n, t = con.execute(sql).fetchone()
            con.close()
    except Exception:  # not created yet
        return 0, 0.0
    return int(n), float(t or 0.0)


def drain_collector(mq: Mosquitto, client_id: str, db: str, expected: int) -> tuple[float, float]:
    """(messages per second from the first message received to the last row committed,
    the collector process's CPU µs per message over the same span)."""
    import psutil

    p = subprocess.Popen(
        [sys.executable, "-m", "edge_sdk", "collector", "--broker", mq.url, "--db", db,
         "--client-id", client_id, "--alert-interval", "3600"],
        env=ENV, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    proc, cpu0 = psutil.Process(p.pid), None
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            n, first = count_rows(db)
            if n and cpu0 is None:
                cpu0 = sum(proc.cpu_times()[:2])
            if n >= expected:
                cpu = sum(proc.cpu_times()[:2]) - (cpu0 or 0.0)
                return (expected - 1) / (time.time() - first), cpu / (expected - 1) * 1e6
            time.sleep(0.05)
        raise SystemExit(f"collector stored only {n} of {expected}")
    finally:
        p.terminate()
        p.wait()


def live(
    devices: int, windows: int, rate: float, root: Path, db: str, *, collectors: int = 1, name: str = "live"
) -> dict[str, Any]:
    """Collectors subscribed first (``collectors`` > 1: one $share group), then the fleet
    publishing at ``rate`` messages/s: do they keep up (rows stored per second over the
    whole run), is anything lost or stored twice, and each collector's CPU per message."""
    import psutil

    mq = Mosquitto(root / f"mq-{name}").start()
    procs, logs = [], []
    for i in range(collectors):
        log = root / f"{name}-collector{i}.log"
        group = ["--share-group", "bench"] if collectors > 1 else []
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "edge_sdk", "collector", "--broker", mq.url, "--db", db,
             "--client-id", f"{name}{i}", "--alert-interval", "3600", "--http", "127.0.0.1:0", *group],
            env=ENV, stderr=log.open("wb"),
        ))  # fmt: skip
        logs.append(log)
    try:
        for p, log in zip(procs, logs, strict=True):
            deadline = time.time() + 60
            while "collector: subscribed" not in log.read_text():
                if time.time() > deadline or p.poll() is not None:
                    raise SystemExit(f"live collector did not subscribe: {log.read_text()[-500:]}")
                time.sleep(0.05)
        broker = psutil.Process(mq.proc.pid)  # type: ignore[union-attr]
        broker0 = sum(broker.cpu_times()[:2])
        cpu0 = [sum(psutil.Process(p.pid).cpu_times()[:2]) for p in procs]
        sim = simulate(SimOptions(broker=mq.url, devices=devices, windows=windows,
                                  fleet="live", rate=rate))  # fmt: skip
        published = time.time()
        total = devices * windows
        while (n := count_rows(db)[0]) < total and time.time() < published + 120:
            time.sleep(0.05)
        done = time.time()
        cpu = [sum(psutil.Process(p.pid).cpu_times()[:2]) - c for p, c in zip(procs, cpu0, strict=True)]
        broker_cpu = sum(broker.cpu_times()[:2]) - broker0
        stored = [_metric(log, "edge_collector_windows_stored_total") for log in logs]
        dups = sum(_metric(log, "edge_collector_duplicates_total") for log in logs)
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        mq.stop()
    return {"offered": sim["per_s"], "stored": n / (done - sim["started_at"]), "lag": done - published,
            "lost": total - n, "total": total, "dups": dups, "per_collector": stored,
            "cpu_us": [c / max(k, 1) * 1e6 for c, k in zip(cpu, stored, strict=True)],
            "broker_us": broker_cpu / max(n, 1) * 1e6}  # fmt: skip


def _metric(log: Path, name: str) -> float:
    """One counter from the /metrics of the collector that wrote ``log``."""
    import re
    import urllib.request

    url = re.search(r"dashboard (http://\S+)", log.read_text()).group(1)  # type: ignore[union-attr]
    text = urllib.request.urlopen(url + "metrics", timeout=5).read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def fresh_db(root: Path, pg: str | None, name: str) -> tuple[str, str | None]:
    """(database, PostgreSQL schema to drop afterwards): a new SQLite file, or a new schema."""
    if pg is None:
        return str(root / f"{name}.db"), None
    schema, dsn = pg_schema(pg)
    return dsn, schema


def live_rows(a: argparse.Namespace, root: Path) -> list[tuple[str, dict[str, Any]]]:
    """SQLite, PostgreSQL, and two collectors in a share group into PostgreSQL."""
    plans = [("SQLite", None, 1)]
    if a.pg:
        plans += [("PostgreSQL", a.pg, 1), ("PostgreSQL, 2 in a $share group", a.pg, 2)]
    out = []
    for i, (label, pg, n) in enumerate(plans):
        db, schema = fresh_db(root, pg, f"live{i}")
        try:
            out.append((label, live(a.devices, a.live_windows, a.live_rate, root, db, collectors=n, name=f"live{i}")))
        finally:
            if schema:
                drop_schema(pg, schema)  # type: ignore[arg-type]
    return out


def ingest(
    devices: int, windows: int, root: Path, pg: str | None, rounds: int
) -> list[tuple[str, float, float]]:
    """Median rate of each consumer over ``rounds`` interleaved rounds (fresh database each)."""
    total = devices * windows
    rates: dict[str, list[tuple[float, float]]] = {}
    mq = Mosquitto(root / "mq").start()
    try:
        for r in range(rounds):
            queue_for(mq, f"bare{r}", devices, windows)
            rates.setdefault("bare paho subscriber (count only)", []).append(
                drain_bare(mq, f"bare{r}", total)
            )
            queue_for(mq, f"sqlite{r}", devices, windows)
            rates.setdefault("edge collector → SQLite (WAL)", []).append(
                drain_collector(mq, f"sqlite{r}", str(root / f"fleet{r}.db"), total)
            )
            if pg:
                queue_for(mq, f"pg{r}", devices, windows)
                schema, dsn = pg_schema(pg)
                try:
                    rates.setdefault("edge collector → PostgreSQL", []).append(
                        drain_collector(mq, f"pg{r}", dsn, total)
                    )
                finally:
                    drop_schema(pg, schema)
    finally:
        mq.stop()
    return [
        (k, statistics.median(r for r, _ in v), statistics.median(c for _, c in v))
        for k, v in rates.items()
    ]


def tiny_model(root: Path) -> tuple[Path, Path]:
    import numpy as np
    import tensorflow as tf

    m = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1)),
        tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10),
    ])  # fmt: skip
    (root / "m.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    np.savez(root / "x.npz", x=np.random.default_rng(0).random((256, 8, 8, 1)).astype("float32"))
    return root / "m.tflite", root / "x.npz"


def serve_once(engine: object, data: Path, n: int, publisher: object | None) -> tuple[float, float]:
    """(inferences per wall second, inferences per CPU second of the whole process)."""
    from device_agent.serve import serve
    from device_agent.sources import open_source
    from device_agent.stats import RunStats

    src = open_source(f"file:{data}?loop=1")
    stats = RunStats()
    if publisher is not None:
        publisher.watch(stats)  # type: ignore[attr-defined]
    c0, w0 = time.process_time(), time.perf_counter()
    serve(src, engine, limit=n, stats=stats)  # type: ignore[arg-type]
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return stats.count / wall, stats.count / cpu


def telemetry_cost(root: Path, n: int, repeats: int) -> dict[str, Any]:
    """Telemetry off against on, in one process, on one engine (1 runtime thread).

    Throughput: ``repeats`` ABBA-ordered pairs (off/on, then on/off); the ratio is the
    median of the pairs' own on/off ratios, so a drift of the machine's speed during the
    run cancels within each pair (consecutive identical runs differ by up to ±15% on a
    shared 2-core machine, more than the effect measured). Cost, the
    robust way: the CPU time of the telemetry threads (paho's network loop and the
    window worker, read per thread from /proc) as a share of the CPU an inference takes.
    The serve loop itself runs the same code with telemetry on or off: the worker reads
    the loop's counters when a window closes.
    """
    from device_agent.loader import engine_for
    from device_agent.runtimes import RuntimeOptions

    tflite, data = tiny_model(root)
    mq = Mosquitto(root / "mq-agent").start()
    runs: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    threads_cpu: list[float] = []
    windows = 0
    try:
        with engine_for(tflite, options=RuntimeOptions(threads=1)) as engine:
            serve_once(engine, data, n // 4, None)  # warm-up
            for i in range(repeats):
                for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                    if mode == "off":
                        runs["off"].append(serve_once(engine, data, n, None))
                        continue
                    pub = _publisher(mq, root, i)
                    before = _thread_cpu(pub)
                    runs["on"].append(serve_once(engine, data, n, pub))
                    threads_cpu.append(_thread_cpu(pub) - before)
                    windows += pub.windows_closed
                    pub.close()
    finally:
        mq.stop()
    med = {
        k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
        for k, v in runs.items()
    }
    inference_cpu = 1.0 / med["off"][1]
    pairs = [(on[0] / off[0], on[1] / off[1]) for off, on in zip(runs["off"], runs["on"], strict=True)]
    return {
        **med,
        "pair_ratios": (statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)),
        "pair_spread": (min(p[1] for p in pairs), max(p[1] for p in pairs)),
        "threads_share": sum(threads_cpu) / (len(threads_cpu) * n) / inference_cpu,
        "window_cpu_ms": sum(threads_cpu) / max(windows, 1) * 1000,
        "windows": windows,
        "inference_us": inference_cpu * 1e6,
    }


def _publisher(mq: Mosquitto, root: Path, i: int) -> Any:
    from device_agent.telemetry.publisher import TelemetryOptions, TelemetryPublisher

    pub = TelemetryPublisher(
        BrokerOptions(url=mq.url, client_id=f"bench-agent-{i}"),
        TelemetryOptions(fleet="bench", device_id=f"bench-agent-{i}", interval_s=WINDOW_S,
                         outbox=root / f"ob{i}.db"),
    ).start()  # fmt: skip
    pub.mqtt.wait_connected(10)
    return pub


def _thread_cpu(pub: Any) -> float:
    """CPU seconds so far of every thread but this one (the publisher's and paho's)."""
    import psutil

    me = threading.get_native_id()
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id != me)


def pg_schema(dsn: str) -> tuple[str, str]:
    """A fresh schema (name, DSN selecting it), so runs never see each other's rows."""
    schema = f"edge_bench_{uuid.uuid4().hex[:8]}"
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in dsn else "?"
    return schema, f"{dsn}{sep}options=-csearch_path%3D{schema}"


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f"DROP SCHEMA {schema} CASCADE")


# ---- large store: status, history and the dashboard at millions of windows ------------------
def large_rows(devices: int, seq_from: int, seq_to: int, end: float, interval: float = 300.0) -> Any:
    """Windows ``seq_from``..``seq_to - 1`` of every device (``WINDOW_ROW_COLUMNS`` tuples),
    time-ordered like live ingest, 5 minutes apart, the last one ending at ``end``."""
    import random

    from edge_sdk.fleet.store import exits_json

    rng = random.Random(seq_from)
    names = [f"dev-{d:05d}" for d in range(devices)]
    exits = [exits_json({"0": n // 2, "1": n - n // 2}) for n in range(501)]
    for seq in range(seq_from, seq_to):
        stop = end - (seq_to - 1 - seq) * interval
        for d in range(devices):
            n, p50 = rng.randint(50, 500), rng.uniform(1.0, 5.0)
            yield ("bench", names[d], seq, "boot0000", stop - interval, stop, n, seq % 3 // 2, n / interval,
                   p50, p50 * 1.6, p50 * 2.1, n // 5, 20.0 + d % 40, 50 << 20, 45.0 + d % 20, 0, "1.0.0",
                   exits[n], stop + 0.5)  # fmt: skip


def load(store: Any, rows: Any, batch: int = 10_000) -> tuple[int, float]:
    """(rows, seconds) writing ``rows`` through ``Store.write`` in batches, as the collector does."""
    from edge_sdk.fleet.store import Batch

    n, t0, buf = 0, time.perf_counter(), []
    for r in rows:
        buf.append(r)
        if len(buf) >= batch:
            n += store.write(Batch(rows=buf)).inserted
            buf = []
    if buf:
        n += store.write(Batch(rows=buf)).inserted
    return n, time.perf_counter() - t0


def timed(fn: Any, repeats: int = 5) -> float:
    """Median seconds of ``repeats`` calls (after one untimed warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def old_status_scan(store: Any) -> Any:
    """The status query before rollups: a window function over every stored window."""
    return store._query(
        "SELECT d.device, t.end_ts FROM devices d LEFT JOIN (SELECT fleet, device, end_ts, ROW_NUMBER() OVER "
        "(PARTITION BY fleet, device ORDER BY end_ts DESC, id DESC) AS rn FROM telemetry) t "
        "ON t.fleet = d.fleet AND t.device = d.device AND t.rn = 1"
    )


def large_queries(store: Any, devices: int, rows: int, scan: bool, now: float) -> dict[str, float]:
    """Median times of what `fleet status`, a 30-day history and the dashboard run, at
    ``now`` (the end of the windows loaded so far: the 30 days before it hold data)."""
    from edge_sdk.fleet.dashboard import DashboardData
    from edge_sdk.fleet.views import status_rows

    dash = DashboardData(lambda: store)
    one = f"dev-{devices // 2:05d}"
    out = {
        "rows": float(rows),
        "status": timed(lambda: status_rows(store, now)),
        "history": timed(lambda: store.history_range(one, fleet="bench", start=now - 30 * 86400, end=now, res=3600)),
        "device_page": timed(lambda: dash.device("bench", one, start=now - 30 * 86400, end=now, now=now)),
        "fleet_page": timed(lambda: dash.fleet(now)),
        "latest_50": timed(lambda: store.history(one, limit=50)),
    }
    assert len(status_rows(store, now)) == devices
    out["scan"] = timed(lambda: old_status_scan(store), repeats=1) if scan else float("nan")
    return out


def large(devices: int, windows: int, checkpoints: list[int], root: Path, pg: str | None) -> list[dict[str, Any]]:
    """Load ``devices`` × ``windows`` windows into each store, timing the queries at each
    checkpoint (total rows) and at the end."""
    from edge_sdk.fleet.store import open_store

    results: list[dict[str, Any]] = []
    end = time.time()
    stops = sorted({c // devices for c in checkpoints if c < devices * windows} | {windows})
    targets: list[tuple[str, str, str | None]] = [("SQLite", str(root / "large.db"), None)]
    if pg:
        schema, dsn = pg_schema(pg)
        targets.append(("PostgreSQL", dsn, schema))
    for name, db, schema_name in targets:
        try:
            store = open_store(db)
            done, loaded, spent = 0, 0, 0.0
            for stop in stops:
                n, secs = load(store, large_rows(devices, done, stop, end - (windows - stop) * 300.0))
                done, loaded, spent = stop, loaded + n, spent + secs
                if name == "PostgreSQL":
                    store.conn.execute("ANALYZE")  # as autovacuum would after a bulk load
                    store.conn.commit()
                q = large_queries(store, devices, loaded, loaded <= 1_000_000, end - (windows - stop) * 300.0)
                results.append({"store": name, "load_per_s": loaded / spent, **q})
                print("  so far:", _large_row(results[-1]), flush=True)  # a long run keeps what it measured
            store.close()
        finally:
            if schema_name and pg:
                drop_schema(pg, schema_name)
    return results


def _large_row(r: dict[str, Any]) -> str:
    scan = "-" if r["scan"] != r["scan"] else f"{r['scan']:.3f}"
    return (f"| {r['store']:<10} | {r['rows']:>11,.0f} | {r['load_per_s']:>8,.0f} | {r['status']:>7.4f} "
            f"| {r['history']:>12.4f} | {r['device_page']:>11.4f} | {r['fleet_page']:>10.4f} "
            f"| {r['latest_50']:>9.4f} | {scan:>7} |")  # fmt: skip


def print_large(a: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    print(
        f"\nLarge store: {a.large_devices:,} devices × {a.large_windows:,} windows 5 minutes apart "
        f"({a.large_devices * a.large_windows / 1e6:g} M windows, ~{a.large_windows * 300 / 86400:.0f} days), "
        "loaded through Store.write in batches of 10,000; medians of 5 runs (seconds). "
        "status: `edge fleet status`'s query; history 30 d: one device's hourly rollups; device page / "
        "fleet page: the dashboard's JSON for them; latest 50: `edge fleet history DEVICE`; "
        "scan: the status query before rollups (window function over all windows; run at ≤ 1 M rows)"
    )
    print(f"| {'store':<10} | {'windows':>11} | {'load/s':>8} | {'status':>7} | {'history 30 d':>12} "
          f"| {'device page':>11} | {'fleet page':>10} | {'latest 50':>9} | {'scan':>7} |")  # fmt: skip
    print(f"|{'-' * 12}|{'-' * 13}|{'-' * 10}|{'-' * 9}|{'-' * 14}|{'-' * 13}|{'-' * 12}|{'-' * 11}|{'-' * 9}|")
    for r in rows:
        print(_large_row(r))
    biggest = {r["store"]: r for r in rows}
    for name, r in biggest.items():
        met = r["status"] <= 0.2 and r["history"] <= 0.5
        print(f"target {'met' if met else 'not met'} ({name}, {r['rows']:,.0f} windows): fleet status "
              f"{r['status']:.4f} s (<= 0.2), 30-day history {r['history']:.4f} s (<= 0.5)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--windows", type=int, default=30)
    ap.add_argument("--inferences", type=int, default=120_000, help="per run: about a window")
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument(
        "--pg",
        default=os.environ.get("EDGE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    ap.add_argument("--rounds", type=int, default=2)
    # Offered above the 20,000/s target: "stored" counts from the first publish to the
    # last row seen (polled every 50 ms), so it always reads a little under what is offered.
    ap.add_argument("--live-rate", type=float, default=24_000)
    ap.add_argument("--live-windows", type=int, default=150)
    ap.add_argument("--only", choices=["ingest", "live", "agent", "large"], default=None)
    ap.add_argument("--large-devices", type=int, default=1000)
    ap.add_argument("--large-windows", type=int, default=10_000, help="per device (10 M windows in all)")
    ap.add_argument("--large-checkpoints", default="1000000", help="also time the queries at these row counts")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="edge-fleet-bench-"))
    if a.only in (None, "ingest"):
        print_ingest(a, ingest(a.devices, a.windows, root, a.pg or None, a.rounds))
    if a.only in (None, "live"):
        print_live(a, live_rows(a, root))
    if a.only in (None, "agent"):
        print_agent(a, telemetry_cost(root, a.inferences, a.repeats))
    if a.only in (None, "large"):
        checkpoints = [int(c) for c in a.large_checkpoints.split(",") if c]
        print_large(a, large(a.large_devices, a.large_windows, checkpoints, root, a.pg or None))


def print_ingest(a: argparse.Namespace, rows: list[tuple[str, float, float]]) -> None:
    total = a.devices * a.windows
    base, base_cpu = rows[0][1], rows[0][2]
    print(
        f"\nCollector ingest: {a.devices} simulated devices × {a.windows} windows = {total} "
        f"QoS 1 messages queued in Mosquitto, then drained; median of {a.rounds} rounds. "
        "CPU: the consumer process's CPU time per message while draining (less disturbed "
        "than wall time by other load on the machine)"
    )
    print(f"| {'consumer':<36} | {'msgs/s':>9} | {'vs bare':>7} | {'CPU µs/msg':>10} "
          f"| {'vs bare':>7} |")  # fmt: skip
    print(f"|{'-' * 38}|{'-' * 11}|{'-' * 9}|{'-' * 12}|{'-' * 9}|")
    for name, rate, cpu in rows:
        print(f"| {name:<36} | {rate:>9,.0f} | {rate / base:>7.2f} | {cpu:>10.1f} "
              f"| {cpu / base_cpu:>7.2f} |")  # fmt: skip


def print_live(a: argparse.Namespace, rows: list[tuple[str, dict[str, Any]]]) -> None:
    total = rows[0][1]["total"]
    print(
        f"\nLive ingest: the collector(s) subscribed, then {a.devices} simulated devices publish "
        f"{total:,.0f} windows (QoS 1) at a target of {a.live_rate:,.0f}/s through Mosquitto. "
        "CPU: each collector process's CPU time over the run per window it stored"
    )
    print(f"| {'store':<32} | {'offered msgs/s':>14} | {'stored msgs/s':>13} | {'lag after last publish':>22} "
          f"| {'lost':>4} | {'dup':>3} | {'stored by each':>15} | {'CPU µs/msg each':>15} "
          f"| {'broker µs/msg':>13} |")  # fmt: skip
    print(f"|{'-' * 34}|{'-' * 16}|{'-' * 15}|{'-' * 24}|{'-' * 6}|{'-' * 5}|{'-' * 17}|{'-' * 17}|{'-' * 15}|")
    for label, r in rows:
        each = " / ".join(f"{k:,.0f}" for k in r["per_collector"])
        cpu = " / ".join(f"{c:.1f}" for c in r["cpu_us"])
        print(f"| {label:<32} | {r['offered']:>14,.0f} | {r['stored']:>13,.0f} | {r['lag']:>20.2f} s "
              f"| {r['lost']:>4,.0f} | {r['dups']:>3,.0f} | {each:>15} | {cpu:>15} "
              f"| {r['broker_us']:>13.1f} |")  # fmt: skip
    for label, r in rows:
        met = r["stored"] >= 20_000 and r["lost"] == 0 and r["lag"] < 1.0
        print(f"target {'met' if met else 'not met'} ({label}): stored {r['stored']:,.0f} msgs/s (>= 20,000) "
              f"with {r['lost']:,.0f} lost, {r['dups']:,.0f} duplicates, {r['lag']:.2f} s behind the last "
              "publish (< 1 s: it kept up)")  # fmt: skip
    if len(rows) == 3:
        one, two = rows[1][1], rows[2][1]
        print(f"share group: 2 collectors stored {two['stored']:,.0f} msgs/s combined against one's "
              f"{one['stored']:,.0f} ({two['stored'] / one['stored']:.2f}x) on this machine's 2 shared cores")
        per = statistics.mean(two["cpu_us"])
        print(f"per message: a collector {per:.1f} µs of CPU, Mosquitto {two['broker_us']:.1f} µs: one core runs "
              f"~{1e6 / per:,.0f} msgs/s of collector, ~{1e6 / two['broker_us']:,.0f} msgs/s of broker (Mosquitto "
              "is single-threaded: past that rate, more collectors need a clustered broker)")  # fmt: skip


def print_agent(a: argparse.Namespace, agent: dict[str, Any]) -> None:
    off, on = agent["off"], agent["on"]
    print(
        f"\nAgent inference throughput, {a.inferences} inferences per run, {a.repeats} "
        f"ABBA-ordered pairs (telemetry: {WINDOW_S:g} s windows to a local Mosquitto); medians"
    )
    print(
        f"| {'telemetry':<10} | {'per wall s':>10} | {'ratio':>6} "
        f"| {'per CPU s':>10} | {'ratio':>6} |"
    )
    print(f"|{'-' * 12}|{'-' * 12}|{'-' * 8}|{'-' * 12}|{'-' * 8}|")
    for name, (w, c) in (("off", off), ("on", on)):
        print(
            f"| {name:<10} | {w:>10,.0f} | {w / off[0]:>6.3f} | {c:>10,.0f} | {c / off[1]:>6.3f} |"
        )
    (pw, pc), (lo, hi) = agent["pair_ratios"], agent["pair_spread"]
    print(f"on/off within each pair, median: {pw:.3f} per wall s, {pc:.3f} per CPU s "
          f"(CPU ratios of the pairs from {lo:.3f} to {hi:.3f})")  # fmt: skip
    total = agent["threads_share"]
    print(
        f"\nTelemetry's cost per inference ({agent['inference_us']:.1f} µs of CPU each, "
        "telemetry off):\n"
        f"| {'part':<44} | {'share':>6} |\n|{'-' * 46}|{'-' * 8}|\n"
        f"| {'in the serve loop: identical code, not timed':<44} | {'-':>6} |\n"
        f"| {'telemetry threads (paho, window worker)':<44} | {agent['threads_share']:>6.2%} |\n"
        f"| {'total':<44} | {total:>6.2%} |"
    )
    print(f"{agent['windows']} windows closed during the 'on' runs; telemetry threads' CPU per window "
          f"{agent['window_cpu_ms']:.2f} ms: {agent['window_cpu_ms'] / 1000 / WINDOW_S:.3%} of a core "
          f"at {WINDOW_S:g} s windows, {agent['window_cpu_ms'] / 1000:.3%} at 1 s, "
          f"{agent['window_cpu_ms'] / 10_000:.4%} at the default 10 s")  # fmt: skip
    # The verdict is the direct count: the serve loop runs the same code on and off, so
    # telemetry's cost is its threads' CPU. The pairs' ratio is printed beside it; on a
    # shared machine whose consecutive runs differ by more than 3% it cannot settle 3%.
    print(f"target {'met' if total <= 0.03 else 'not met'}: telemetry costs {total:.2%} of an "
          f"inference's CPU, counted directly (<= 3%); throughput pairs, on/off per CPU s: median "
          f"{pc:.3f}, pairs from {lo:.3f} to {hi:.3f} (inconclusive at that spread)")  # fmt: skip


if __name__ == "__main__":
    main()
