"""``edge demo``'s fleet: an embedded broker, a collector and three agents on this machine.

The agents are real ``device_agent run`` processes serving the demo's optimized bundle
with telemetry; the collector writes ``fleet.db`` in the demo folder; the last step
reads it as ``edge fleet status`` does. Whatever a step starts is registered on
``DemoState.cleanup``, so a failing step leaves no broker, collector or agent behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device_agent.errors import EdgeError
from edge_sdk.demo.state import DemoState

FLEET = "demo"
DEVICES = tuple(f"demo-{i:02d}" for i in range(1, 4))
WINDOW_S = 1.0  # telemetry window, so a few seconds of serving give a few windows
WINDOWS = 3  # per device before the agents are stopped
RATE_HZ = 50  # readings per second each agent replays from the test split


def _wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise EdgeError(f"demo fleet: {what} not seen within {timeout:.0f} s")


def _devices(s: DemoState) -> dict[str, dict[str, Any]]:
    from edge_sdk.fleet.store import open_store

    store = open_store(str(s.results["fleet_db"]))
    try:
        return {d["device"]: d for d in store.devices() if d["fleet"] == FLEET}
    finally:
        store.close()


def broker_step(s: DemoState) -> None:
    """An amqtt broker on a free port (1883 is often held by a system Mosquitto)."""
    from edge_sdk.fleet.embedded_broker import EmbeddedBroker

    s.progress("starting an embedded MQTT broker", 0, 1)
    broker = EmbeddedBroker().start()
    s.cleanup.callback(broker.stop)
    s.results["broker"] = broker.url
    s.say(f"fleet: embedded broker at {broker.url}")


def collector_step(s: DemoState) -> None:
    """The collector in this process, writing ``fleet.db`` in the demo folder."""
    from device_agent.mqtt import BrokerOptions
    from edge_sdk.fleet.collector import Collector, CollectorOptions

    s.progress("starting the fleet collector", 0, 1)
    folder = s.out / "fleet"
    folder.mkdir(parents=True, exist_ok=True)
    db = s.out / "fleet.db"
    for old in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):  # a rerun into the same folder
        old.unlink(missing_ok=True)
    s.results["fleet_db"] = db
    collector = Collector(CollectorOptions(
        broker=BrokerOptions(url=s.results["broker"], client_id="edge-demo-collector"),
        db=str(db), fleet=FLEET, alert_interval_s=3600.0,
        # No share group: amqtt has no $share subscriptions (see embedded_broker.py).
        share_group=None,
    ))  # fmt: skip
    s.cleanup.callback(collector.stop)
    collector.start()
    if not collector.subscribed.wait(15):
        raise EdgeError(f"demo fleet: collector not subscribed to {s.results['broker']} in 15 s")


def _spawn_agent(s: DemoState, device: str) -> subprocess.Popen[bytes]:
    folder = s.out / "fleet"
    with (folder / f"{device}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "device_agent", "run", str(s.results["report"].bundle),
             "--source", f"file:{s.results['train'].test}?rate={RATE_HZ}&loop=1", "-q",
             "--broker", s.results["broker"], "--device-id", device, "--fleet", FLEET,
             "--telemetry-interval", str(WINDOW_S), "--outbox", str(folder / f"{device}.outbox.db")],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )  # fmt: skip


def agents_step(s: DemoState) -> None:
    """Three agents serve the bundle until each has sent a few windows with inferences."""
    s.progress(f"serving the bundle on {len(DEVICES)} agents with telemetry", 0, 1)
    agents: dict[str, subprocess.Popen[bytes]] = {}
    s.results["agents"] = agents
    s.cleanup.callback(_kill_all, agents)
    for device in DEVICES:
        agents[device] = _spawn_agent(s, device)

    def enough() -> bool:
        for device, p in agents.items():
            if p.poll() is not None:
                log = (s.out / "fleet" / f"{device}.log").read_text(errors="replace")
                raise EdgeError(f"demo fleet: agent {device} exited with {p.returncode}: "
                                f"{log.strip().splitlines()[-1:] or 'no output'}")
        seen = _devices(s)
        return all(
            d in seen and (seen[d]["seq"] or 0) >= WINDOWS - 1 and (seen[d]["inferences"] or 0) > 0
            for d in DEVICES
        )

    _wait(enough, 60, f"{WINDOWS} telemetry windows from each agent")


def stop_step(s: DemoState) -> None:
    """SIGTERM: each agent publishes its last window and ``offline`` (no Will), then exits."""
    s.progress("stopping the agents", 0, 1)
    agents: dict[str, subprocess.Popen[bytes]] = s.results["agents"]
    # Windows close every WINDOW_S after the last one's end; stopping an agent half a
    # window later makes its final (partial) window, the one `edge fleet status` shows,
    # hold readings rather than possibly none.
    now, seen = time.time(), _devices(s)
    at = {d: now + (WINDOW_S / 2 - (now - float(seen[d]["end_ts"]))) % WINDOW_S for d in agents}
    for device in sorted(agents, key=at.__getitem__):
        time.sleep(max(0.0, at[device] - time.time()))
        agents[device].send_signal(signal.SIGTERM)
    for device, p in agents.items():
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise EdgeError(f"demo fleet: agent {device} did not stop within 20 s") from None
    _wait(lambda: all(d.get("status") == "offline" for d in _devices(s).values()), 15,
          "every agent's offline state")  # fmt: skip


def status_step(s: DemoState) -> None:
    """What ``edge fleet status --db OUT/fleet.db`` shows."""
    from edge_sdk.fleet.store import open_store
    from edge_sdk.fleet.views import status_rows

    store = open_store(str(s.results["fleet_db"]))
    try:
        s.results["fleet"] = status_rows(store, time.time())
        windows = len(store.history(DEVICES[0], fleet=FLEET, limit=1000))
    finally:
        store.close()
    s.say(f"fleet: {len(DEVICES)} agents served the bundle and stopped; {DEVICES[0]} sent "
          f"{windows} telemetry windows; see edge fleet status --db {s.results['fleet_db']}")


def _kill_all(agents: dict[str, subprocess.Popen[bytes]]) -> None:
    for p in agents.values():
        if p.poll() is None:
            p.kill()
            p.wait()


STEPS: list[tuple[str, Callable[[DemoState], None]]] = [
    ("fleet-broker", broker_step),
    ("fleet-collector", collector_step),
    ("fleet-agents", agents_step),
    ("fleet-stop", stop_step),
    ("fleet-status", status_step),
]
