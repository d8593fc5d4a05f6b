"""Rollouts in the fleet database: migration 2 on SQLite and on the real PostgreSQL, and
``edge fleet rollouts`` counting each device by its latest deploy/status report."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from device_agent.protocol.messages import DeployPhase, DeployStatus
from edge_sdk.cli import app
from edge_sdk.fleet import schema
from edge_sdk.fleet.store import Batch, Store, open_store
from edge_sdk.ota.rollout import summarize

runner = CliRunner()



def _record(store: Store, rid: str, t0: float) -> None:
    store.start_rollout({
        "rollout_id": rid, "fleet": "lab", "bundle": "m.edgepkg", "name": "digits", "version": "1.3.0",
        "device_group": "lab", "canary_percent": 25.0, "phase": "canary", "outcome": "running",
        "started": t0, "updated": t0,
    }, ["d0"], ["d1", "d2", "d3"])  # fmt: skip
    b = Batch()
    for dev, phases in {"d0": ["downloading", "active", "probation-passed"], "d1": ["active"],
                        "d2": ["verifying", "rejected"], "d3": []}.items():
        for i, ph in enumerate(phases):
            b.deploys.append(("lab", dev, DeployStatus(rollout=rid, version="1.3.0", status=DeployPhase(ph),
                                                       ts=t0 + i, reason=f"{ph} reason"), t0 + i))
    # Another fleet's report under the same rollout id is not this rollout's.
    b.deploys.append(("other", "d3", DeployStatus(rollout=rid, version="1.3.0", status=DeployPhase.ACTIVE,
                                                  ts=t0), t0))
    store.write(b)
    store.update_rollout(rid, phase="promoted", outcome="failed", ts=t0 + 9)


def _check(store: Store, rid: str) -> None:
    assert store.schema_version() == max(schema.MIGRATIONS) >= 2
    (row,) = store.rollouts()
    s = summarize(row)
    assert (s["targeted"], s["active"], s["rejected"], s["rolled-back"], s["pending"]) == (4, 2, 1, 0, 1)
    assert (s["phase"], s["outcome"], s["group"], s["canary_percent"]) == ("promoted", "failed", "lab", 25.0)
    by = {d["device"]: d for d in s["devices"]}
    assert by["d0"]["canary"] and by["d0"]["status"] == "probation-passed"
    assert by["d2"]["reason"] == "rejected reason" and by["d3"]["status"] == "pending"


def test_rollouts_in_sqlite_migrating_a_version_1_database(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    con = sqlite3.connect(db)  # a database the first collector release created
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    for stmt in schema.statements(1, schema.SQLITE):
        con.execute(stmt)
    con.execute("INSERT INTO schema_migrations VALUES (1, 0)")
    con.commit()
    con.close()
    store = open_store(str(db))
    try:
        _record(store, "r1", 1000.0)
        _check(store, "r1")
    finally:
        store.close()
    res = runner.invoke(app, ["fleet", "rollouts", "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["active"] == 2


def test_rollouts_in_postgresql(pg_dsn: str) -> None:
    store = open_store(pg_dsn)
    try:
        _record(store, "r2", 2000.0)
        _check(store, "r2")
    finally:
        store.close()
    again = open_store(pg_dsn)  # migrating twice is a no-op
    try:
        assert again.schema_version() == max(schema.MIGRATIONS) and len(again.rollouts()) == 1
    finally:
        again.close()
    res = runner.invoke(app, ["fleet", "rollouts", "--db", pg_dsn])
    assert res.exit_code == 0, res.output
    assert "r2" in res.output and "promoted" in res.output and "failed" in res.output
