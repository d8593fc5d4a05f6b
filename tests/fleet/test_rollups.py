"""Rollups and each device's latest window, kept by the store's writes, against the same
numbers computed from the raw windows (SQLite and PostgreSQL, real databases)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from edge_sdk.fleet import schema
from edge_sdk.fleet.series import AGG_COLUMNS, rollup_windows
from edge_sdk.fleet.store import WINDOW_ROW_COLUMNS, Batch, Store, exits_json, open_store

T0 = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # an hour boundary


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return str(tmp_path / "fleet.db")
    return str(request.getfixturevalue("pg_dsn"))


def window_rows(n: int, seed: int = 0) -> list[tuple[Any, ...]]:
    """Rows (WINDOW_ROW_COLUMNS) of three devices, 7-minute windows over several hours,
    some without inferences or temperature, a second boot for one device."""
    rng = random.Random(seed)
    out = []
    for seq in range(n):
        for d, boot in (("pi-01", "b1"), ("pi-02", "b2"), ("pi-03", "b3" if seq < n // 2 else "b3x")):
            end = T0 + seq * 420 + rng.uniform(0, 5)
            k = 0 if seq % 9 == 4 else rng.randint(10, 900)
            exits = {"0": k // 3, "1": k - k // 3} if d != "pi-02" else {"0": k}
            out.append(("lab", d, seq, boot, end - 420, end, k, rng.randint(0, 3), k / 420,
                        rng.uniform(1, 4), rng.uniform(4, 9), rng.uniform(9, 20), rng.randint(0, k),
                        rng.uniform(0, 100), rng.randint(1, 9) << 20, None if seq % 5 == 0 else rng.uniform(30, 80),
                        0, "1.0", exits_json(exits), end + 1))  # fmt: skip
    return out


def raw(store: Store, sql: str) -> list[dict[str, Any]]:
    return store._query(sql)


def reference_rollups(store: Store) -> dict[tuple[str, str, float], tuple[dict[str, float], dict[str, int]]]:
    aggs = rollup_windows(raw(store, "SELECT * FROM telemetry"), 3600)
    return {k: (a.values, a.exits) for k, a in aggs.items()}


def stored_rollups(store: Store) -> dict[tuple[str, str, float], tuple[dict[str, float], dict[str, int]]]:
    exits: dict[tuple[str, str, float], dict[str, int]] = {}
    for e in raw(store, "SELECT * FROM rollup_exits WHERE res = 3600"):
        exits.setdefault((e["fleet"], e["device"], float(e["bucket"])), {})[e["stage"]] = int(e["count"])
    out = {}
    for r in raw(store, "SELECT * FROM rollups WHERE res = 3600"):
        key = (r["fleet"], r["device"], float(r["bucket"]))
        out[key] = ({c: float(r[c]) for c in AGG_COLUMNS}, exits.get(key, {}))
    return out


def assert_same(got: dict[Any, Any], want: dict[Any, Any]) -> None:
    assert sorted(got) == sorted(want)
    for key, (values, exits) in want.items():
        assert got[key][1] == {k: v for k, v in exits.items() if v or k in got[key][1]}, key
        for c in AGG_COLUMNS:
            assert got[key][0][c] == pytest.approx(values[c], rel=1e-9, abs=1e-9), (key, c)


def old_devices_query(store: Store) -> list[dict[str, Any]]:
    """What ``devices()`` answered before rollups: a window function over all of telemetry."""
    return raw(store,
        "SELECT d.*, t.seq, t.end_ts, t.inferences, t.errors, t.throughput, t.latency_p50, "
        "t.latency_p95, t.latency_p99, t.cache_hits, t.exits, t.cpu_percent, t.rss_bytes, "
        "t.temperature_c, t.dropped FROM devices d LEFT JOIN ("
        "  SELECT *, ROW_NUMBER() OVER "
        "  (PARTITION BY fleet, device ORDER BY end_ts DESC, id DESC) AS rn FROM telemetry) t "
        "ON t.fleet = d.fleet AND t.device = d.device AND t.rn = 1 ORDER BY d.fleet, d.device")  # fmt: skip


def test_rollups_and_latest_match_the_raw_windows_duplicates_counted_once(db: str) -> None:
    store = open_store(db)
    rows = window_rows(40)
    for i in range(0, len(rows), 25):
        store.write(Batch(rows=rows[i : i + 25]))
    # Redelivered windows, alone and mixed with new ones, and a duplicate inside one batch.
    more = window_rows(46, seed=1)[120:]
    r = store.write(Batch(rows=rows[10:40] + more[:5] + more[:1]))
    assert (r.inserted, r.duplicates) == (5, 31)
    store.write(Batch(rows=more[5:]))
    assert_same(stored_rollups(store), reference_rollups(store))
    assert store.devices() == old_devices_query(store)

    # What status, alerts, history and the dashboard read, against the raw windows.
    recent = store.recent_windows(per_device=6)
    by_device: dict[str, list[Any]] = {}
    for w in raw(store, "SELECT * FROM telemetry ORDER BY end_ts, id"):
        by_device.setdefault(w["device"], []).append(w)
    assert recent == [w for d in sorted(by_device) for w in by_device[d][-6:]]
    assert store.history("pi-03", limit=7) == by_device["pi-03"][-7:]
    start, end = T0 + 1800, T0 + 46 * 420
    from_rollups = store.series("lab", "pi-01", start=start, end=end, step=3600)
    windows = [w for w in by_device["pi-01"] if w["end_ts"] >= start - start % 3600]
    from_raw = rollup_windows(windows, 3600)
    assert from_rollups == [{"t": k[2], **from_raw[k].point()} for k in sorted(from_raw)]
    assert len(from_rollups) == 6 and from_rollups[0]["t"] == T0
    store.close()


def test_migration_backfills_rollups_and_prune_keeps_each_resolution_apart(db: str) -> None:
    """A database from before rollups (schema 2, windows stored) gains them when opened."""
    store = open_store(db)
    with store.transaction() as cur:  # back to schema 2: as an older collector left it
        for table in ("rollup_exits", "rollups", "device_latest"):
            cur.execute(f"DROP TABLE {table}")
        cur.execute("DROP INDEX devices_device")
        cur.execute("DELETE FROM schema_migrations WHERE version = 3")
    rows = window_rows(30)
    cols = ", ".join(WINDOW_ROW_COLUMNS)
    marks = ", ".join([store._ph] * len(WINDOW_ROW_COLUMNS))
    with store.transaction() as cur:
        cur.executemany(f"INSERT INTO telemetry ({cols}) VALUES ({marks})", rows)
        cur.execute(store._sql("INSERT INTO devices VALUES (?, ?, 'online', 0, 'b1', '', '', '', '', 0, 0, 0)"),
                    ("lab", "pi-01"))  # fmt: skip
    store.close()

    store = open_store(db)
    assert store.schema_version() == max(schema.MIGRATIONS)
    assert_same(stored_rollups(store), reference_rollups(store))
    assert store.devices() == old_devices_query(store)

    now = T0 + 30 * 420
    n = store.prune(now - 3 * 3600, rollups_older_than={3600: now - 2 * 3600})
    assert n > 0
    assert min(float(r["bucket"]) for r in raw(store, "SELECT bucket FROM rollups")) >= now - 2 * 3600 - 3600
    assert min(float(r["end_ts"]) for r in raw(store, "SELECT end_ts FROM telemetry")) >= now - 3 * 3600
    assert not raw(store, f"SELECT * FROM rollup_exits WHERE bucket < {now - 2 * 3600}")
    store.close()


def test_status_reads_no_raw_windows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SQLite's own plan for what status and the dashboard's fleet query run: no telemetry."""
    store = open_store(str(tmp_path / "fleet.db"))
    store.write(Batch(rows=window_rows(3)))
    plan = raw(store, "EXPLAIN QUERY PLAN " + store._DEVICES_SQL)
    assert plan and not any("telemetry" in str(p["detail"]) for p in plan), plan
    store.close()


def test_postgres_write_after_a_refused_first_batch(pg_dsn: str) -> None:
    """The staging tables of a rolled-back first batch are gone with it: the next batch
    (from a collector's retry or the halving) must create them again, not fail forever."""
    store = open_store(pg_dsn)
    good = window_rows(2)
    bad = (*good[0][:2], 2**64, *good[0][3:])  # seq past 64 bits: the binary COPY refuses it
    with pytest.raises(OverflowError) as e:
        store.write(Batch(rows=[bad]))
    assert store.refused(e.value)
    assert store.write(Batch(rows=good)).inserted == len(good)
    assert len(store.devices()) == 3
    store.close()
