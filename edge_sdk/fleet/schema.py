"""The fleet database schema: one definition, rendered for SQLite and PostgreSQL.

Migrations are numbered and recorded in ``schema_migrations`` so both backends move
forward the same way. Deduplication is a unique constraint on (fleet, device, boot_id,
seq): the database, not the collector's memory, decides what is a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    """What differs between the two SQL backends."""

    name: str
    pk: str  # an auto-increment integer primary key column definition
    real: str
    bigint: str


SQLITE = Dialect("sqlite", "INTEGER PRIMARY KEY AUTOINCREMENT", "REAL", "INTEGER")
POSTGRES = Dialect("postgresql", "BIGSERIAL PRIMARY KEY", "DOUBLE PRECISION", "BIGINT")

_V1 = """
CREATE TABLE devices (
    fleet TEXT NOT NULL, device TEXT NOT NULL,
    status TEXT NOT NULL, status_since {real} NOT NULL, boot_id TEXT NOT NULL,
    agent_version TEXT NOT NULL, model_name TEXT NOT NULL, model_version TEXT NOT NULL,
    model_hash TEXT NOT NULL, clean_offline INTEGER NOT NULL, state_ts {real} NOT NULL,
    last_seen {real} NOT NULL,
    PRIMARY KEY (fleet, device)
);
CREATE TABLE telemetry (
    id {pk},
    fleet TEXT NOT NULL, device TEXT NOT NULL, boot_id TEXT NOT NULL, seq {bigint} NOT NULL,
    start_ts {real} NOT NULL, end_ts {real} NOT NULL,
    inferences {bigint} NOT NULL, errors {bigint} NOT NULL, throughput {real} NOT NULL,
    latency_p50 {real} NOT NULL, latency_p95 {real} NOT NULL, latency_p99 {real} NOT NULL,
    cache_hits {bigint} NOT NULL, exits TEXT NOT NULL,
    cpu_percent {real}, rss_bytes {bigint}, temperature_c {real},
    dropped {bigint} NOT NULL, model_version TEXT NOT NULL, received_at {real} NOT NULL,
    CONSTRAINT telemetry_window_unique UNIQUE (fleet, device, boot_id, seq)
);
CREATE INDEX telemetry_device_time ON telemetry (fleet, device, end_ts);
CREATE TABLE deploy_status (
    id {pk},
    fleet TEXT NOT NULL, device TEXT NOT NULL, rollout_id TEXT NOT NULL, version TEXT NOT NULL,
    phase TEXT NOT NULL, reason TEXT NOT NULL, boot_id TEXT NOT NULL, ts {real} NOT NULL,
    received_at {real} NOT NULL
);
CREATE INDEX deploy_status_device ON deploy_status (fleet, device, ts);
CREATE TABLE alerts (
    id {pk},
    alert_key TEXT NOT NULL UNIQUE,
    fleet TEXT NOT NULL, device TEXT NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL,
    message TEXT NOT NULL, value {real}, baseline {real}, ts {real} NOT NULL
);
"""

# Rollouts (edge deploy): the host records what it targets and how far it got; the
# devices' own reports stay in deploy_status, joined on rollout_id.
_V2 = """
CREATE TABLE rollouts (
    rollout_id TEXT PRIMARY KEY, fleet TEXT NOT NULL, bundle TEXT NOT NULL, name TEXT NOT NULL,
    version TEXT NOT NULL, device_group TEXT NOT NULL, canary_percent {real} NOT NULL,
    phase TEXT NOT NULL, outcome TEXT NOT NULL, started {real} NOT NULL, updated {real} NOT NULL
);
CREATE TABLE rollout_devices (
    rollout_id TEXT NOT NULL, device TEXT NOT NULL, canary INTEGER NOT NULL,
    PRIMARY KEY (rollout_id, device)
);
CREATE INDEX deploy_status_rollout ON deploy_status (rollout_id, device, ts);
"""

# Rollups (issue 16): what status, alerts, history and the dashboard read instead of raw
# windows. device_latest holds each device's latest window; rollups hold per-device sums
# per bucket of ``res`` seconds (ROLLUP_RESOLUTIONS) in edge_sdk.fleet.series' columns; rollup_exits
# the early-exit counts per stage of the same buckets. Kept by Store.write in the same
# transaction as the windows, from the rows actually inserted (duplicates never count).
_V3 = """
CREATE TABLE device_latest (
    fleet TEXT NOT NULL, device TEXT NOT NULL, telemetry_id {bigint} NOT NULL,
    boot_id TEXT NOT NULL, seq {bigint} NOT NULL, start_ts {real} NOT NULL, end_ts {real} NOT NULL,
    inferences {bigint} NOT NULL, errors {bigint} NOT NULL, throughput {real} NOT NULL,
    latency_p50 {real} NOT NULL, latency_p95 {real} NOT NULL, latency_p99 {real} NOT NULL,
    cache_hits {bigint} NOT NULL, exits TEXT NOT NULL,
    cpu_percent {real}, rss_bytes {bigint}, temperature_c {real},
    dropped {bigint} NOT NULL, model_version TEXT NOT NULL, received_at {real} NOT NULL,
    PRIMARY KEY (fleet, device)
);
CREATE TABLE rollups (
    res INTEGER NOT NULL, fleet TEXT NOT NULL, device TEXT NOT NULL, bucket {real} NOT NULL,
    windows {real} NOT NULL, seconds {real} NOT NULL, inferences {real} NOT NULL,
    errors {real} NOT NULL, cache_hits {real} NOT NULL, dropped {real} NOT NULL,
    lat_n {real} NOT NULL, p50_sum {real} NOT NULL, p95_sum {real} NOT NULL, p99_sum {real} NOT NULL,
    cpu_n {real} NOT NULL, cpu_sum {real} NOT NULL, rss_n {real} NOT NULL, rss_sum {real} NOT NULL,
    temp_n {real} NOT NULL, temp_sum {real} NOT NULL,
    p95_max {real} NOT NULL, p99_max {real} NOT NULL, end_max {real} NOT NULL,
    PRIMARY KEY (res, fleet, device, bucket)
);
CREATE TABLE rollup_exits (
    res INTEGER NOT NULL, fleet TEXT NOT NULL, device TEXT NOT NULL, bucket {real} NOT NULL,
    stage TEXT NOT NULL, count {bigint} NOT NULL,
    PRIMARY KEY (res, fleet, device, bucket, stage)
);
CREATE INDEX rollups_bucket ON rollups (res, bucket);
CREATE INDEX devices_device ON devices (device)
"""

# version → DDL template. Add a migration by appending; never edit a shipped one.
MIGRATIONS: dict[int, str] = {1: _V1, 2: _V2, 3: _V3}
# Seconds. Per hour only: a minute rollup costs an upsert per device and minute at ingest
# (measured: ingest CPU per window doubled with minutes and hours), and a range short
# enough for minutes reads one device's raw windows through its index just as fast.
ROLLUP_RESOLUTIONS = (3600,)


def statements(version: int, dialect: Dialect) -> list[str]:
    """The DDL statements of one migration, rendered for ``dialect``."""
    sql = MIGRATIONS[version].format(pk=dialect.pk, real=dialect.real, bigint=dialect.bigint)
    return [s.strip() for s in sql.split(";") if s.strip()]


TELEMETRY_COLUMNS = (
    "fleet", "device", "boot_id", "seq", "start_ts", "end_ts", "inferences", "errors",
    "throughput", "latency_p50", "latency_p95", "latency_p99", "cache_hits", "exits",
    "cpu_percent", "rss_bytes", "temperature_c", "dropped", "model_version", "received_at",
)  # fmt: skip
DEVICE_COLUMNS = (
    "fleet", "device", "status", "status_since", "boot_id", "agent_version", "model_name",
    "model_version", "model_hash", "clean_offline", "state_ts", "last_seen",
)  # fmt: skip
DEPLOY_COLUMNS = (
    "fleet", "device", "rollout_id", "version", "phase", "reason", "boot_id", "ts", "received_at",
)  # fmt: skip
ROLLOUT_COLUMNS = (
    "rollout_id", "fleet", "bundle", "name", "version", "device_group", "canary_percent",
    "phase", "outcome", "started", "updated",
)  # fmt: skip
ALERT_COLUMNS = (
    "alert_key", "fleet", "device", "kind", "severity", "message", "value", "baseline", "ts",
)  # fmt: skip
