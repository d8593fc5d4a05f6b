"""Staged rollouts end to end: real Mosquitto, a real collector, real ``edge-agent daemon``
processes serving a model, ``edge deploy --canary`` and ``edge fleet rollouts``.

A bundle that passes the health check but whose confidence collapses while serving
halts in the canary (probation rolls it back) and never reaches the rest; a good one
passes the canary's probation and is promoted. The collector's database holds both.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.bundle import read_members
from device_agent.update.agent import PAUSE_ENV
from device_agent.update.store import ModelStore
from edge_sdk.fleet.store import open_store
from tests.support.mosquitto import Mosquitto

from .conftest import Factory
from .test_commands import _scaled, _val
from .test_flow import install
from .test_ota import _listen, _stop, _wait_line

REPO = Path(__file__).resolve().parents[2]
ENV = {**{k: v for k, v in os.environ.items() if k != PAUSE_ENV}, "PYTHONPATH": str(REPO)}


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[str]:
    m = Mosquitto(tmp_path / "mosq").start()
    try:
        yield m.url
    finally:
        m.stop()


def _daemon(store: Path, broker: str, device: str, data: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "device_agent", "daemon", "--store", str(store), "--source",
         f"file:{data}?rate=300&loop=1", "--broker", broker, "--device-id", device, "--fleet", "lab",
         "--probation-samples", "60", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
    )
    _wait_line(proc, "serving ")
    return proc


def _store(tmp_path: Path, factory: Factory, name: str, first: Path) -> Path:
    d = tmp_path / name
    (d / "keys").mkdir(parents=True)
    (d / "keys" / "fleet.pub").write_bytes(factory.key.public.read_bytes())
    assert install(d, first).status.value == "active"
    return d


def _edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_sdk", *args], capture_output=True, text=True,
                          env=ENV, timeout=300)


def _wait_rollouts(db: str, want: int, timeout: float = 30) -> list[dict]:  # type: ignore[type-arg]
    """``edge fleet rollouts --json`` once the collector has every device settled."""
    deadline = time.monotonic() + timeout
    rows: list[dict] = []  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        res = _edge("fleet", "rollouts", "--db", db, "--json")
        assert res.returncode == 0, res.stderr
        rows = json.loads(res.stdout)
        if len(rows) == want and all(r["pending"] == 0 or r["phase"] == "halted" for r in rows) and \
                all(d["status"] not in ("active",) or not d["canary"] for r in rows for d in r["devices"]):
            return rows
        time.sleep(0.5)
    return rows


def _wait_versions(db: str, devices: set[str], version: str, timeout: float = 20) -> dict[str, str]:
    """Model version per device as the collector stored the devices' births."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        store = open_store(db)
        try:
            seen = {r["device"]: r["model_version"] for r in store.devices() if r["device"] in devices}
        finally:
            store.close()
        if set(seen) == devices and set(seen.values()) == {version}:
            break
        time.sleep(0.5)
    return seen


def test_canary_probation_halts_then_good_bundle_promotes(tmp_path: Path, factory: Factory, mosquitto: str,
                                                        digits_npz: Path) -> None:
    w, b = factory.weights(0)
    sharp = factory.bundle("1.0.0", name="c-sharp.edgepkg", model=_scaled(w * 4, b * 4),
                           validation=_val(factory, w * 4, b * 4))
    # Passes the health check (its recorded outputs are its own) but is barely confident.
    flat = factory.bundle("1.1.0", name="c-flat.edgepkg", model=_scaled(w * 0.01, b * 0.01),
                          validation=_val(factory, w * 0.01, b * 0.01))
    good = factory.bundle("1.2.0", name="c-good.edgepkg", model=_scaled(w * 4, b * 4),
                          validation=_val(factory, w * 4, b * 4))
    stores = [_store(tmp_path, factory, f"s{i}", sharp) for i in range(3)]
    db = str(tmp_path / "fleet.db")
    collector = subprocess.Popen([sys.executable, "-m", "edge_sdk", "collector", "--broker", mosquitto,
                                  "--db", db, "--client-id", "ota-c1", "--alert-interval", "3600"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    agents = [_daemon(s, mosquitto, f"g{i}", digits_npz) for i, s in enumerate(stores)]
    base = ["--broker", mosquitto, "--fleet", "lab", "--group", "lab", "--devices", "g0,g1,g2",
            "--canary", "30", "--db", db, "--timeout", "90", "--probation-timeout", "60"]
    try:
        bad = _edge("deploy", str(flat), *base)
        after_bad = [ModelStore(s).current().manifest.version for s in stores]  # type: ignore[union-attr]
        # The group without --devices: every device the collector has seen in fleet "lab".
        ok = _edge("deploy", str(good), *[a for a in base if a != "g0,g1,g2" and a != "--devices"])
        rows = _wait_rollouts(db, 2)
        versions = _wait_versions(db, {"g0", "g1", "g2"}, "1.2.0")
    finally:
        for a in agents:
            _stop(a)
        collector.terminate()
        collector.wait(30)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "halted" in bad.stderr and "mean confidence fell" in bad.stderr, bad.stderr
    assert after_bad == ["1.0.0", "1.0.0", "1.0.0"]
    assert ok.returncode == 0, ok.stdout + ok.stderr
    statuses = [json.loads(line)["status"] for line in ok.stdout.splitlines() if '"status"' in line]
    assert statuses.index("probation-passed") < max(i for i, s in enumerate(statuses) if s == "active")
    assert [ModelStore(s).current().manifest.version for s in stores] == ["1.2.0"] * 3  # type: ignore[union-attr]

    # The daemons publish births: the fleet shows every device serving the new version,
    # identified by the sha256 of its manifest as shipped (which also names its slot).
    assert versions == {"g0": "1.2.0", "g1": "1.2.0", "g2": "1.2.0"}
    shipped = hashlib.sha256(read_members(good)["manifest.json"]).hexdigest()
    store = open_store(db)
    try:
        assert {r["model_hash"] for r in store.devices() if r["device"] in versions} == {shipped}
    finally:
        store.close()
    assert ModelStore(stores[0]).current_id().endswith(shipped[:12])  # type: ignore[union-attr]
    halted, promoted = rows
    print("edge fleet rollouts:", json.dumps([{k: r[k] for k in ("rollout", "version", "targeted", "active",
          "rejected", "rolled-back", "pending", "phase", "outcome")} for r in rows]))
    assert (halted["version"], halted["phase"], halted["outcome"]) == ("1.1.0", "halted", "failed")
    assert (halted["targeted"], halted["rolled-back"], halted["pending"], halted["active"]) == (3, 1, 2, 0)
    canary = [d for d in halted["devices"] if d["canary"]]
    assert [d["device"] for d in canary] == ["g0"] and "mean confidence fell" in canary[0]["reason"]
    assert (promoted["version"], promoted["phase"], promoted["outcome"]) == ("1.2.0", "promoted", "completed")
    assert (promoted["targeted"], promoted["active"], promoted["pending"]) == (3, 3, 0)
    # The rest never heard of the halted rollout: no deploy/status from g1 or g2 for it.
    store = open_store(db)
    try:
        reports = [r for r in store.deploys() if r["rollout_id"] == halted["rollout"]]
    finally:
        store.close()
    assert {r["device"] for r in reports} == {"g0"}
    table = _edge("fleet", "rollouts", "--db", db)
    assert table.returncode == 0 and halted["rollout"] in table.stdout and "halted" in table.stdout


def test_canary_without_probation_verdict_is_rolled_back(tmp_path: Path, factory: Factory,
                                                         mosquitto: str) -> None:
    """A canary that switches but never reports a verdict (it serves nothing, so no
    probation) halts the rollout at the timeout, and the host rolls it back."""
    first = factory.bundle("1.0.0", name="t-1.edgepkg")
    new = factory.bundle("1.1.0", name="t-2.edgepkg")
    stores = [_store(tmp_path, factory, f"t{i}", first) for i in range(2)]
    agents = [_listen(s, mosquitto, f"t{i}") for i, s in enumerate(stores)]
    db = str(tmp_path / "fleet.db")
    try:
        res = _edge("deploy", str(new), "--broker", mosquitto, "--fleet", "lab", "--group", "pair",
                    "--devices", "t0,t1", "--canary", "50", "--db", db, "--timeout", "60",
                    "--probation-timeout", "3")
    finally:
        for a in agents:
            _stop(a)
    assert res.returncode == 2 and "no probation verdict" in res.stderr, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert any(x.get("status") == "rolled-back" and "canary failed" in x.get("reason", "") for x in lines), lines
    assert [ModelStore(s).current().manifest.version for s in stores] == ["1.0.0", "1.0.0"]  # type: ignore[union-attr]
    store = open_store(db)
    try:
        (row,) = store.rollouts()
    finally:
        store.close()
    assert (row["phase"], row["outcome"], row["canary_percent"]) == ("halted", "failed", 50.0)
