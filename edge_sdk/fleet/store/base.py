"""The fleet store over DB-API: the same SQL for SQLite and PostgreSQL.

The backend modules (``sqlite.py``, ``postgres.py``) only open a connection;
everything else — migrations, batched inserts with deduplication, queries — is here,
written once in the subset of SQL both databases share (``ON CONFLICT``, window
functions, ``RETURNING``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from device_agent.errors import EdgeError
from device_agent.protocol.messages import (
    WINDOW_FIELDS,
    Alert,
    DeployStatus,
    State,
    TelemetryWindow,
)
from edge_sdk.fleet import rollups, schema
from edge_sdk.fleet.schema import Dialect
from edge_sdk.fleet.series import merge_rows, rollup_windows

# Telemetry rows as the collector builds them straight from a validated payload:
# fleet, device, the window fields in messages.WINDOW_FIELDS order, exits JSON, received_at.
_COLUMN_OF = {"start": "start_ts", "end": "end_ts"}
WINDOW_ROW_COLUMNS = (
    "fleet", "device", *(_COLUMN_OF.get(k, k) for k in WINDOW_FIELDS), "exits", "received_at",
)  # fmt: skip
_BOOT_AT = WINDOW_ROW_COLUMNS.index("boot_id")
_PG_TYPE_OF = {"fleet": "text", "device": "text", "boot_id": "text", "model_version": "text", "exits": "text"}
_PG_INTS = {"seq", "inferences", "errors", "cache_hits", "rss_bytes", "dropped"}
# PostgreSQL types of WINDOW_ROW_COLUMNS, for the binary COPY.
_PG_TYPES = [_PG_TYPE_OF.get(c, "int8" if c in _PG_INTS else "float8") for c in WINDOW_ROW_COLUMNS]


def exits_json(exits: dict[str, int]) -> str:
    """The stored form of a window's exit counts (sorted keys; read back with json.loads)."""
    return orjson.dumps(exits, option=orjson.OPT_SORT_KEYS).decode()


@dataclass
class Batch:
    """Messages for one transaction; items are (fleet, device, message, received_at).

    ``rows`` holds telemetry already in :data:`WINDOW_ROW_COLUMNS` form (the collector's
    fast path, which never builds a :class:`TelemetryWindow`).
    """

    windows: list[tuple[str, str, TelemetryWindow, float]] = field(default_factory=list)
    states: list[tuple[str, str, State, float]] = field(default_factory=list)
    deploys: list[tuple[str, str, DeployStatus, float]] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.windows) + len(self.states) + len(self.deploys) + len(self.rows)

    def items(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Every item with the name of the list holding it, telemetry first."""
        return [(k, item) for k in ("rows", "windows", "states", "deploys") for item in getattr(self, k)]

    def halves(self) -> tuple[Batch, Batch]:
        """Two batches with half the items each (in order), to find an item the database
        refuses."""
        items = self.items()
        cut = (len(items) + 1) // 2
        out = (Batch(), Batch())
        for i, (k, item) in enumerate(items):
            getattr(out[i >= cut], k).append(item)
        return out

    def extend(self, other: Batch) -> None:
        """Append ``other``'s items after this batch's own."""
        self.windows += other.windows
        self.states += other.states
        self.deploys += other.deploys
        self.rows += other.rows

    def window_rows(self) -> list[tuple[Any, ...]]:
        """Every telemetry item as a :data:`WINDOW_ROW_COLUMNS` row."""
        return self.rows + [_window_row(f, d, w, at) for f, d, w, at in self.windows]


@dataclass(frozen=True)
class WriteResult:
    """What a write did: windows inserted, and duplicates skipped (stored before)."""
    inserted: int
    duplicates: int


def _row(cols: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(cols, values, strict=True))


class Store:
    """A fleet database. Not thread-safe: one Store per thread."""

    def __init__(
        self,
        conn: Any,
        dialect: Dialect,
        *,
        changes: Callable[[Any], int],
        refused: Callable[[BaseException], bool],
        reconnect: Callable[[], Any] | None = None,
    ):
        self.conn, self.dialect = conn, dialect
        self._changes = changes  # rows touched by the last executemany
        # The database refused the data itself (a constraint, a value it cannot take);
        # anything else (away, busy, locked, a schema problem) is worth retrying.
        self.refused = refused
        self._reconnect = reconnect
        self._ph = "%s" if dialect.name == "postgresql" else "?"
        self._staged: Any = None  # the connection whose staging tables exist
        self.migrate()

    def recover(self) -> None:
        """After a failed write: a new connection if the old one is broken (a server
        restart or a killed backend), so the next try can succeed."""
        if self._reconnect is not None and (self.conn.closed or getattr(self.conn, "broken", False)):
            try:
                self.conn.close()
            finally:
                self.conn = self._reconnect()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self._ph) if self._ph != "?" else sql

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction: committed on exit, rolled back on any exception."""
        cur = self.conn.cursor()
        try:
            if self.dialect.name == "sqlite":
                cur.execute("BEGIN IMMEDIATE")
            yield cur
            self.conn.commit()
        except BaseException:
            self._staged = None  # a rolled-back transaction takes the temp tables it created along
            self.conn.rollback()
            raise
        finally:
            cur.close()

    def migrate(self) -> None:
        """Apply every migration not yet recorded in ``schema_migrations``."""
        with self.transaction() as cur:
            if self.dialect.name == "postgresql":
                cur.execute("SELECT pg_advisory_xact_lock(716151)")  # one migrator at a time
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                f"(version INTEGER PRIMARY KEY, applied_at {self.dialect.real} NOT NULL)"
            )
            cur.execute("SELECT version FROM schema_migrations")
            done = {int(r[0]) for r in cur.fetchall()}
            for version in sorted(set(schema.MIGRATIONS) - done):
                for stmt in schema.statements(version, self.dialect):
                    cur.execute(stmt)
                if version == 3:  # rollups of the windows stored before there were any
                    self._roll_up(cur, "telemetry")
                    cur.execute(rollups.latest_from(self.dialect, "telemetry"))
                cur.execute(
                    self._sql("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"),
                    (version, time.time()),
                )

    def schema_version(self) -> int:
        """The latest migration applied (0 for an empty database)."""
        cur = self.conn.cursor()
        cur.execute("SELECT MAX(version) FROM schema_migrations")
        (v,) = cur.fetchone()
        self.conn.commit()
        return int(v or 0)

    # ---- writes -------------------------------------------------------------------------
    def write(self, batch: Batch) -> WriteResult:
        """Store a batch atomically; windows already stored are skipped (not an error)."""
        rows = batch.window_rows()
        with self.transaction() as cur:
            inserted = self._insert_windows(cur, rows)
            self._touch_devices(cur, rows)
            for fleet, device, st, at in batch.states:
                self._upsert_state(cur, fleet, device, st, at)
            if batch.deploys:
                cur.executemany(self._insert_sql("deploy_status", schema.DEPLOY_COLUMNS), [
                    (f, d, m.rollout, m.version or "", m.status.value, m.reason, m.boot_id, m.ts, at)
                    for f, d, m, at in batch.deploys
                ])  # fmt: skip
        return WriteResult(inserted, len(rows) - inserted)

    def _insert_sql(self, table: str, cols: Sequence[str], conflict: str = "") -> str:
        marks = ", ".join("?" * len(cols))
        return self._sql(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks}) {conflict}")

    def _insert_windows(self, cur: Any, rows: list[tuple[Any, ...]]) -> int:
        """Insert the windows not stored yet and add exactly those to the rollups."""
        if not rows:
            return 0
        if self.dialect.name == "postgresql":
            inserted = self._copy_windows(cur, rows)
            if inserted:
                self._roll_up(cur, "telemetry_new")
                cur.execute(rollups.latest_from(self.dialect, "telemetry_new"))
            return inserted
        sql = self._insert_sql(
            "telemetry",
            WINDOW_ROW_COLUMNS,
            "ON CONFLICT (fleet, device, boot_id, seq) DO NOTHING",
        )
        # BEGIN IMMEDIATE holds the write lock: the ids past this one are this batch's rows.
        cur.execute("SELECT seq FROM sqlite_sequence WHERE name = 'telemetry'")
        before = int((cur.fetchone() or (0,))[0])
        cur.executemany(sql, rows)
        inserted = self._changes(cur)
        if not inserted:
            return 0
        # The rowid range, not an index: SQLite's planner would otherwise walk a whole index.
        new = f"(SELECT * FROM telemetry NOT INDEXED WHERE id > {before})"
        self._roll_up(cur, new)
        if inserted == len(rows):  # no duplicates: ids follow one another in batch order
            with_ids = [(before + i, *r) for i, r in enumerate(rows, 1)]
        else:
            cur.execute(f"SELECT id, {', '.join(WINDOW_ROW_COLUMNS)} FROM {new} s ORDER BY id")
            with_ids = cur.fetchall()
        cur.executemany(rollups.upsert_latest(self.dialect), rollups.latest_rows(with_ids, WINDOW_ROW_COLUMNS))
        return inserted

    def _roll_up(self, cur: Any, src: str) -> None:
        """Add the windows of relation ``src`` to the rollups."""
        for res in schema.ROLLUP_RESOLUTIONS:
            cur.execute(rollups.upsert_rollups(self.dialect, res, src))
            cur.execute(rollups.upsert_exits(self.dialect, res, src))

    def _copy_windows(self, cur: Any, rows: list[tuple[Any, ...]]) -> int:
        """PostgreSQL: COPY into a per-session staging table, then one INSERT ... SELECT.

        ``executemany`` costs a server round of parse/bind/execute per row, COPY streams
        the batch; the INSERT keeps the deduplication (``ON CONFLICT DO NOTHING``) and
        the storage order (a fresh temporary table is read back in insertion order).
        """
        cols = ", ".join(WINDOW_ROW_COLUMNS)
        if self._staged is not self.conn:  # once per connection (a reconnect starts afresh)
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS telemetry_stage ON COMMIT DELETE ROWS "
                f"AS SELECT {cols} FROM telemetry WITH NO DATA"
            )
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS telemetry_new ON COMMIT DELETE ROWS "
                f"AS SELECT id, {cols} FROM telemetry WITH NO DATA"
            )
            self._staged = self.conn
        # Binary COPY: psycopg encodes in C and the server parses no text (measured: less
        # collector CPU and server time per window than the text format).
        with cur.copy(f"COPY telemetry_stage ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_PG_TYPES)
            for r in rows:
                copy.write_row(r)
        # The rows actually inserted (not the duplicates) feed the rollups.
        cur.execute(
            f"WITH ins AS (INSERT INTO telemetry ({cols}) SELECT {cols} FROM telemetry_stage "
            f"ON CONFLICT (fleet, device, boot_id, seq) DO NOTHING RETURNING id, {cols}) "
            "INSERT INTO telemetry_new SELECT * FROM ins"
        )
        return max(int(cur.rowcount), 0)

    def _touch_devices(self, cur: Any, rows: list[tuple[Any, ...]]) -> None:
        if self.dialect.name == "postgresql" and rows:
            # The batch is still in the staging table: one statement, not a row per device.
            cur.execute(
                f"INSERT INTO devices ({', '.join(schema.DEVICE_COLUMNS)}) "
                "SELECT DISTINCT ON (fleet, device) fleet, device, 'unknown', received_at, boot_id, "
                "'', '', '', '', 0, 0.0, received_at FROM telemetry_stage "
                "ORDER BY fleet, device, received_at DESC "
                "ON CONFLICT (fleet, device) DO UPDATE SET last_seen = GREATEST(devices.last_seen, excluded.last_seen)"
            )
            return
        latest: dict[tuple[str, str], tuple[float, str]] = {}
        for r in rows:
            key = (r[0], r[1])
            if r[-1] >= latest.get(key, (-1.0, ""))[0]:
                latest[key] = (r[-1], r[_BOOT_AT])
        greatest = "MAX" if self.dialect.name == "sqlite" else "GREATEST"
        sql = self._insert_sql(
            "devices",
            schema.DEVICE_COLUMNS,
            f"ON CONFLICT (fleet, device) DO UPDATE SET "
            f"last_seen = {greatest}(devices.last_seen, excluded.last_seen)",
        )
        cur.executemany(sql, [
            (f, d, "unknown", at, boot, "", "", "", "", 0, 0.0, at)
            for (f, d), (at, boot) in sorted(latest.items())
        ])  # fmt: skip

    def _upsert_state(self, cur: Any, fleet: str, device: str, st: State, at: float) -> None:
        # state_ts orders states across boots (State.order_ts: a Will has no ts of its own
        # and stands at its boot's start), so a stale Will from an earlier boot never
        # overrides a newer birth; within one boot, arrival order wins.
        sql = self._insert_sql(
            "devices",
            schema.DEVICE_COLUMNS,
            "ON CONFLICT (fleet, device) DO UPDATE SET "
            "status_since = CASE WHEN devices.status = excluded.status "
            "THEN devices.status_since ELSE excluded.status_since END, "
            "status = excluded.status, boot_id = excluded.boot_id, "
            "agent_version = CASE WHEN excluded.agent_version = '' THEN devices.agent_version "
            "ELSE excluded.agent_version END, "
            "model_name = excluded.model_name, model_version = excluded.model_version, "
            "model_hash = excluded.model_hash, clean_offline = excluded.clean_offline, "
            "state_ts = excluded.state_ts "
            "WHERE devices.boot_id = excluded.boot_id OR excluded.state_ts >= devices.state_ts",
        )
        cur.execute(sql, (
            fleet, device, st.status.value, at, st.boot_id, st.agent_version, st.model_name,
            st.model_version, st.model_hash, int(st.clean), st.order_ts, 0.0,
        ))  # fmt: skip

    def add_alerts(self, alerts: Sequence[tuple[str, Alert]]) -> list[Alert]:
        """Store (key, alert) pairs; returns the ones not stored before (to publish)."""
        new: list[Alert] = []
        sql = self._insert_sql(
            "alerts", schema.ALERT_COLUMNS, "ON CONFLICT (alert_key) DO NOTHING RETURNING id"
        )
        with self.transaction() as cur:
            for key, a in alerts:
                cur.execute(sql, (
                    key, a.fleet, a.device, a.kind.value, a.severity.value, a.message,
                    a.value, a.baseline, a.ts,
                ))  # fmt: skip
                if cur.fetchone() is not None:
                    new.append(a)
        return new

    def start_rollout(self, row: dict[str, Any], canary: Sequence[str], rest: Sequence[str]) -> None:
        """Record a rollout (``schema.ROLLOUT_COLUMNS``) and the devices it targets."""
        with self.transaction() as cur:
            cur.execute(self._insert_sql("rollouts", schema.ROLLOUT_COLUMNS),
                        tuple(row[c] for c in schema.ROLLOUT_COLUMNS))
            cur.executemany(self._insert_sql("rollout_devices", ("rollout_id", "device", "canary")),
                            [(row["rollout_id"], d, int(d in canary)) for d in (*canary, *rest)])

    def update_rollout(self, rollout_id: str, *, phase: str, outcome: str, ts: float) -> None:
        """Record a rollout's new phase and outcome at ``ts``."""
        with self.transaction() as cur:
            cur.execute(self._sql("UPDATE rollouts SET phase = ?, outcome = ?, updated = ? WHERE rollout_id = ?"),
                        (phase, outcome, ts, rollout_id))

    def rollouts(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest rollouts, oldest first, each with ``devices``: every targeted device
        with its latest deploy/status report for that rollout (phase ``None`` if none yet)."""
        rows = self._query("SELECT * FROM rollouts ORDER BY started DESC LIMIT ?", [limit])[::-1]
        if not rows:
            return []
        marks = ", ".join("?" * len(rows))
        devs = self._query(
            "SELECT rd.rollout_id, rd.device, rd.canary, s.phase, s.reason, s.version, s.ts "
            "FROM rollout_devices rd JOIN rollouts r ON r.rollout_id = rd.rollout_id LEFT JOIN ("
            "  SELECT fleet, rollout_id, device, phase, reason, version, ts, ROW_NUMBER() OVER "
            "  (PARTITION BY fleet, rollout_id, device ORDER BY ts DESC, id DESC) AS rn FROM deploy_status) s "
            "ON s.fleet = r.fleet AND s.rollout_id = rd.rollout_id AND s.device = rd.device AND s.rn = 1 "
            f"WHERE rd.rollout_id IN ({marks}) ORDER BY rd.rollout_id, rd.canary DESC, rd.device",
            [r["rollout_id"] for r in rows],
        )
        for r in rows:
            r["devices"] = [d for d in devs if d["rollout_id"] == r["rollout_id"]]
        return rows

    def prune(self, older_than: float | None, *, rollups_older_than: dict[int, float] | None = None) -> int:
        """Retention: delete telemetry, deploy status and alerts older than ``older_than``
        (``None``: keep) and, per resolution (seconds → time), rollups older than
        ``rollups_older_than``."""
        with self.transaction() as cur:
            n = 0
            for table, col in (("telemetry", "end_ts"), ("deploy_status", "ts"), ("alerts", "ts")):
                if older_than is None:
                    break
                cur.execute(self._sql(f"DELETE FROM {table} WHERE {col} < ?"), (older_than,))
                n += max(cur.rowcount, 0)
            for res, before in (rollups_older_than or {}).items():
                for table in ("rollups", "rollup_exits"):
                    cur.execute(self._sql(f"DELETE FROM {table} WHERE res = ? AND bucket < ?"), (res, before))
                    n += max(cur.rowcount, 0)
        return n

    def retire(self, device: str, fleet: str | None = None) -> list[tuple[str, str]]:
        """Drop a device from ``devices`` (status, alerts, Home Assistant); its telemetry
        stays for history. Returns the (fleet, device) dropped; refuses an id that several
        fleets share unless ``fleet`` says which."""
        where, params = "device = ?", [device]
        if fleet:
            where, params = where + " AND fleet = ?", [*params, fleet]
        rows = self._query(f"SELECT fleet, device FROM devices WHERE {where}", params)
        found = [(r["fleet"], r["device"]) for r in rows]
        if len(found) > 1:
            fleets = ", ".join(f for f, _ in found)
            raise EdgeError(f"device {device!r} is in several fleets ({fleets}): say which with --fleet")
        with self.transaction() as cur:
            cur.execute(self._sql(f"DELETE FROM devices WHERE {where}"), tuple(params))
        return found

    # ---- reads --------------------------------------------------------------------------
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.cursor()
        try:
            cur.execute(self._sql(sql), tuple(params))
            cols = [c[0] for c in cur.description]
            rows = [_row(cols, r) for r in cur.fetchall()]
        finally:
            cur.close()
            self.conn.commit()
        return rows

    def devices(self) -> list[dict[str, Any]]:
        """Every device with its state and its latest telemetry window (by window end)."""
        return self._query(self._DEVICES_SQL + "ORDER BY d.fleet, d.device")

    # The latest window comes from device_latest (kept by write), never a scan of telemetry.
    _DEVICES_SQL = (
        "SELECT d.*, t.seq, t.end_ts, t.inferences, t.errors, t.throughput, t.latency_p50, "
        "t.latency_p95, t.latency_p99, t.cache_hits, t.exits, t.cpu_percent, t.rss_bytes, "
        "t.temperature_c, t.dropped FROM devices d LEFT JOIN device_latest t "
        "ON t.fleet = d.fleet AND t.device = d.device "
    )

    def fleets_of(self, device: str) -> list[str]:
        """The fleets holding a device named ``device`` (empty: no such device)."""
        return [r["fleet"] for r in self._query("SELECT fleet FROM devices WHERE device = ? ORDER BY fleet", [device])]

    def history(
        self, device: str, *, fleet: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The latest ``limit`` windows of one device, oldest first (through the
        (fleet, device, end_ts) index: the fleets come from ``device_latest``)."""
        where, params = "device = ? AND fleet IN (SELECT fleet FROM device_latest WHERE device = ?)", [device, device]
        if fleet:
            where, params = "device = ? AND fleet = ?", [device, fleet]
        rows = self._query(
            f"SELECT * FROM telemetry WHERE {where} ORDER BY end_ts DESC, id DESC LIMIT ?",
            [*params, limit],
        )
        return rows[::-1]

    def recent_windows(self, per_device: int = 30) -> list[dict[str, Any]]:
        """The last ``per_device`` windows of every device (input of the alert rules):
        one index range per device, never a scan of the table."""
        if self.dialect.name == "postgresql":
            return self._query(
                "SELECT t.* FROM device_latest d CROSS JOIN LATERAL (SELECT * FROM telemetry x "
                "WHERE x.fleet = d.fleet AND x.device = d.device ORDER BY x.end_ts DESC, x.id DESC LIMIT ?) t "
                "ORDER BY t.fleet, t.device, t.end_ts, t.id",
                [per_device],
            )
        out: list[dict[str, Any]] = []
        for d in self._query("SELECT fleet, device FROM device_latest ORDER BY fleet, device"):
            out += self._query(
                "SELECT * FROM telemetry WHERE fleet = ? AND device = ? ORDER BY end_ts DESC, id DESC LIMIT ?",
                [d["fleet"], d["device"], per_device],
            )[::-1]
        return out

    def history_range(self, device: str, *, fleet: str, start: float, end: float, res: int) -> list[dict[str, Any]]:
        """One device's rollups of resolution ``res`` (60 or 3600) over [start, end], oldest
        first, each with its ``exits`` per stage."""
        rows = self._query(
            "SELECT * FROM rollups WHERE res = ? AND fleet = ? AND device = ? AND bucket >= ? AND bucket <= ? "
            "ORDER BY bucket",
            [res, fleet, device, start, end],
        )
        exits: dict[float, dict[str, int]] = {}
        for e in self._query(
            "SELECT bucket, stage, count FROM rollup_exits WHERE res = ? AND fleet = ? AND device = ? "
            "AND bucket >= ? AND bucket <= ?",
            [res, fleet, device, start, end],
        ):
            exits.setdefault(float(e["bucket"]), {})[e["stage"]] = int(e["count"])
        for r in rows:
            r["exits"] = exits.get(float(r["bucket"]), {})
        return rows

    def deploys(self, limit: int = 500) -> list[dict[str, Any]]:
        """The latest deployment status reports, newest first."""
        return self._query("SELECT * FROM deploy_status ORDER BY ts DESC, id DESC LIMIT ?", [limit])

    def alerts(self, limit: int = 200) -> list[dict[str, Any]]:
        """The latest alerts, newest first."""
        return self._query("SELECT * FROM alerts ORDER BY ts DESC, id DESC LIMIT ?", [limit])

    # ---- dashboard reads ----------------------------------------------------------------
    def device_rows(self, fleet: str, device: str) -> list[dict[str, Any]]:
        """:meth:`devices` for one device (empty if unknown)."""
        return self._query(self._DEVICES_SQL + "WHERE d.fleet = ? AND d.device = ?", [fleet, device])

    def series(self, fleet: str, device: str, *, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """Chart points of one device over [start, end] in ``step``-second buckets, each
        :meth:`Agg.point <edge_sdk.fleet.series.Agg.point>` with its bucket start ``t``."""
        res = max((r for r in schema.ROLLUP_RESOLUTIONS if r <= step), default=0)
        if res:  # whole rollup buckets: from the one holding ``start``
            rows = self.history_range(device, fleet=fleet, start=start - start % res, end=end, res=res)
            ex = {(fleet, device, float(r["bucket"])): r["exits"] for r in rows}
            aggs = merge_rows(rows, ex, step)
            return [{"t": key[2], **aggs[key].point()} for key in sorted(aggs)]
        rows = self._query(
            "SELECT fleet, device, start_ts, end_ts, inferences, errors, cache_hits, dropped, "
            "latency_p50, latency_p95, latency_p99, cpu_percent, rss_bytes, temperature_c, exits "
            "FROM telemetry WHERE fleet = ? AND device = ? AND end_ts >= ? AND end_ts <= ? ORDER BY end_ts",
            [fleet, device, start, end],
        )
        aggs = rollup_windows(rows, step)
        return [{"t": key[2], **aggs[key].point()} for key in sorted(aggs)]

    def device_deploys(self, fleet: str, device: str, limit: int = 50) -> list[dict[str, Any]]:
        """A device's latest deployment status reports, newest first."""
        return self._query(
            "SELECT * FROM deploy_status WHERE fleet = ? AND device = ? ORDER BY ts DESC, id DESC LIMIT ?",
            [fleet, device, limit],
        )

    def device_alerts(self, fleet: str, device: str, limit: int = 50) -> list[dict[str, Any]]:
        """A device's latest alerts, newest first."""
        return self._query(
            "SELECT * FROM alerts WHERE fleet = ? AND device = ? ORDER BY ts DESC, id DESC LIMIT ?",
            [fleet, device, limit],
        )

    def change_marker(self) -> tuple[Any, ...]:
        """A value that changes whenever a device, alert, deployment or rollout does."""
        row = self._query(
            "SELECT (SELECT MAX(last_seen) FROM devices) AS a, (SELECT MAX(status_since) FROM devices) AS b, "
            "(SELECT MAX(state_ts) FROM devices) AS c, (SELECT COUNT(*) FROM devices) AS d, "
            "(SELECT MAX(id) FROM alerts) AS e, (SELECT MAX(id) FROM deploy_status) AS f, "
            "(SELECT MAX(updated) FROM rollouts) AS g"
        )[0]
        return tuple(row.values())

    def telemetry_keys(self) -> list[tuple[str, str, str, int]]:
        """(fleet, device, boot_id, seq) of every stored window, in storage order."""
        rows = self._query("SELECT fleet, device, boot_id, seq FROM telemetry ORDER BY id")
        return [(r["fleet"], r["device"], r["boot_id"], int(r["seq"])) for r in rows]

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _window_row(fleet: str, device: str, w: TelemetryWindow, at: float) -> tuple[Any, ...]:
    return (fleet, device, *(getattr(w, k) for k in WINDOW_FIELDS), exits_json(w.exits), at)

