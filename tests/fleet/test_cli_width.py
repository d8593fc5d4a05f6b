"""Piped ``edge fleet status`` and ``edge fleet rollouts`` at 80 columns: plain lines that
fit, every column present, no cell cut (no ``…``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from edge_sdk.cli import app
from edge_sdk.fleet.store import open_store
from tests.fleet.test_cli import populate

runner = CliRunner(env={"COLUMNS": "80"})

STATUS_COLUMNS = ("device", "fleet", "status", "model", "p50 ms", "p95 ms", "per s", "n/window",
                  "errors", "cache", "exits", "last seen")
ROLLOUT_COLUMNS = ("rollout", "bundle", "version", "group", "canary %", "targeted", "active",
                   "rejected", "rolled-back", "pending", "phase", "outcome")


def _fits(out: str, columns: tuple[str, ...]) -> None:
    assert "…" not in out and "\x1b[" not in out, out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    for c in columns:
        assert c in out, (c, out)


def test_status_piped_at_80_columns(tmp_path: Path) -> None:
    db = str(tmp_path / "fleet.db")
    now = time.time()
    populate(db, now)
    res = runner.invoke(app, ["fleet", "status", "--db", db])
    assert res.exit_code == 0, res.output
    _fits(res.stdout, STATUS_COLUMNS)
    rows = json.loads(runner.invoke(app, ["fleet", "status", "--db", db, "--json"]).stdout)
    for r in rows:  # every value whole, in the row of its device
        assert r["device"] in res.stdout and f"{r['throughput_per_s']:.1f}" in res.stdout


def test_rollouts_piped_at_80_columns(tmp_path: Path) -> None:
    db = str(tmp_path / "fleet.db")
    store = open_store(db)
    now = time.time()
    store.start_rollout({
        "rollout_id": "r0123456789ab", "fleet": "greenhouse", "bundle": "digits-classifier-int8.edgepkg",
        "name": "digits", "version": "1.12.0-rc.1", "device_group": "greenhouse-north",
        "canary_percent": 12.5, "phase": "canary", "outcome": "running", "started": now, "updated": now,
    }, ["pi-greenhouse-01"], [f"pi-greenhouse-{i:02d}" for i in range(2, 40)])  # fmt: skip
    store.close()
    res = runner.invoke(app, ["fleet", "rollouts", "--db", db])
    assert res.exit_code == 0, res.output
    _fits(res.stdout, ROLLOUT_COLUMNS)
    for value in ("r0123456789ab", "digits-classifier-int8.edgepkg", "1.12.0-rc.1", "greenhouse-north",
                  "12.5", "39", "canary", "running"):
        assert value in res.stdout, (value, res.stdout)
