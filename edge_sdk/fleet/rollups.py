"""The SQL that keeps and reads the rollups (schema migration 3), for both dialects.

Written as ``INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE``, so the sums of a
batch are computed inside the database in one statement per resolution: the collector's
Python never loops over windows for them. ``src`` is a relation holding the windows a
batch actually inserted (SQLite: ``telemetry`` rows past the id the batch started from;
PostgreSQL: a temporary table filled from the insert's ``RETURNING``).
"""

from __future__ import annotations

from typing import Any

from edge_sdk.fleet.schema import Dialect
from edge_sdk.fleet.series import AGG_COLUMNS, MAX_COLUMNS, SUM_COLUMNS

LATEST_COLUMNS = (
    "boot_id", "seq", "start_ts", "end_ts", "inferences", "errors", "throughput", "latency_p50",
    "latency_p95", "latency_p99", "cache_hits", "exits", "cpu_percent", "rss_bytes", "temperature_c",
    "dropped", "model_version", "received_at",
)  # fmt: skip

# How each rollup column is computed from the windows of one bucket.
_AGG_SQL = {
    "windows": "COUNT(*)",
    "seconds": "SUM(end_ts - start_ts)",
    "inferences": "SUM(inferences)",
    "errors": "SUM(errors)",
    "cache_hits": "SUM(cache_hits)",
    "dropped": "SUM(dropped)",
    # A window without inferences has no latency to weigh.
    "lat_n": "SUM(CASE WHEN inferences > 0 THEN inferences ELSE 0 END)",
    "p50_sum": "SUM(CASE WHEN inferences > 0 THEN latency_p50 * inferences ELSE 0 END)",
    "p95_sum": "SUM(CASE WHEN inferences > 0 THEN latency_p95 * inferences ELSE 0 END)",
    "p99_sum": "SUM(CASE WHEN inferences > 0 THEN latency_p99 * inferences ELSE 0 END)",
    "cpu_n": "COUNT(cpu_percent)",
    "cpu_sum": "COALESCE(SUM(cpu_percent), 0)",
    "rss_n": "COUNT(rss_bytes)",
    "rss_sum": "COALESCE(SUM(rss_bytes), 0)",
    "temp_n": "COUNT(temperature_c)",
    "temp_sum": "COALESCE(SUM(temperature_c), 0)",
    "p95_max": "MAX(CASE WHEN inferences > 0 THEN latency_p95 ELSE 0 END)",
    "p99_max": "MAX(CASE WHEN inferences > 0 THEN latency_p99 ELSE 0 END)",
    "end_max": "MAX(end_ts)",
}
assert set(_AGG_SQL) == set(AGG_COLUMNS)


def bucket(dialect: Dialect, res: int, column: str = "end_ts") -> str:
    """The start of the ``res``-second bucket of ``column`` (timestamps are positive)."""
    if dialect.name == "postgresql":
        return f"FLOOR({column} / {res}) * {res}"
    return f"CAST({column} / {res} AS INTEGER) * {res}"


def _greatest(dialect: Dialect) -> str:
    return "GREATEST" if dialect.name == "postgresql" else "MAX"


def upsert_rollups(dialect: Dialect, res: int, src: str) -> str:
    """Add the windows of ``src`` to the ``res``-second rollups."""
    cols = ", ".join(AGG_COLUMNS)
    aggs = ", ".join(_AGG_SQL[c] for c in AGG_COLUMNS)
    g = _greatest(dialect)
    sets = [f"{c} = rollups.{c} + excluded.{c}" for c in SUM_COLUMNS]
    sets += [f"{c} = {g}(rollups.{c}, excluded.{c})" for c in MAX_COLUMNS]
    return (
        f"INSERT INTO rollups (res, fleet, device, bucket, {cols}) "
        f"SELECT {res}, fleet, device, {bucket(dialect, res)} AS b, {aggs} FROM {src} WHERE true "
        "GROUP BY fleet, device, b "
        f"ON CONFLICT (res, fleet, device, bucket) DO UPDATE SET {', '.join(sets)}"
    )


def upsert_exits(dialect: Dialect, res: int, src: str) -> str:
    """Add the exit counts per stage of the windows of ``src`` to the ``res``-second buckets."""
    if dialect.name == "postgresql":
        each = "json_each_text(s.exits::json) AS j(key, value)"  # json: no jsonb conversion per row
    else:
        each = "json_each(s.exits) AS j"
    return (
        "INSERT INTO rollup_exits (res, fleet, device, bucket, stage, count) "
        f"SELECT {res}, s.fleet, s.device, {bucket(dialect, res, 's.end_ts')} AS b, j.key, "
        f"SUM(CAST(j.value AS BIGINT)) FROM {src} s, {each} WHERE true "
        "GROUP BY s.fleet, s.device, b, j.key "
        "ON CONFLICT (res, fleet, device, bucket, stage) DO UPDATE SET count = rollup_exits.count + excluded.count"
    )


def upsert_latest(dialect: Dialect) -> str:
    """Upsert one device's latest window (``device_latest`` columns, from
    :func:`latest_rows`) unless the stored one is newer (ties go to the later insert)."""
    cols = ("fleet", "device", "telemetry_id", *LATEST_COLUMNS)
    mark = "%s" if dialect.name == "postgresql" else "?"
    sets = ", ".join(f"{c} = excluded.{c}" for c in cols[2:])
    return (
        f"INSERT INTO device_latest ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))}) "
        f"ON CONFLICT (fleet, device) DO UPDATE SET {sets} "
        "WHERE excluded.end_ts > device_latest.end_ts OR (excluded.end_ts = device_latest.end_ts "
        "AND excluded.telemetry_id > device_latest.telemetry_id)"
    )


def latest_rows(rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Each device's latest window among ``rows`` (``(id, *values)`` tuples in id order,
    values in ``columns`` order) as ``device_latest`` rows."""
    at = {c: i + 1 for i, c in enumerate(columns)}
    fleet, device, end = at["fleet"], at["device"], at["end_ts"]
    pick = [at[c] for c in LATEST_COLUMNS]
    latest: dict[tuple[str, str], tuple[Any, ...]] = {}
    for r in rows:
        key = (r[fleet], r[device])
        seen = latest.get(key)
        if seen is None or r[end] >= seen[end]:
            latest[key] = r
    return [(f, d, r[0], *(r[j] for j in pick)) for (f, d), r in sorted(latest.items())]


def latest_from(dialect: Dialect, src: str) -> str:
    """Each device's latest window of relation ``src`` (with ``id``) into ``device_latest``,
    unless the stored one is newer: one statement, no rows through Python."""
    cols = ", ".join(LATEST_COLUMNS)
    sets = ", ".join(f"{c} = excluded.{c}" for c in ("telemetry_id", *LATEST_COLUMNS))
    return (
        f"INSERT INTO device_latest (fleet, device, telemetry_id, {cols}) "
        f"SELECT fleet, device, id, {cols} FROM (SELECT *, ROW_NUMBER() OVER "
        f"(PARTITION BY fleet, device ORDER BY end_ts DESC, id DESC) AS rn FROM {src} s) t WHERE rn = 1 "
        f"ON CONFLICT (fleet, device) DO UPDATE SET {sets} "
        "WHERE excluded.end_ts > device_latest.end_ts OR (excluded.end_ts = device_latest.end_ts "
        "AND excluded.telemetry_id > device_latest.telemetry_id)"
    )
