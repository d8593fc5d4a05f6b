"""``edge demo``'s fleet steps: embedded amqtt broker, collector, real agent processes."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from device_agent.mqtt import BrokerOptions, MqttClient
from device_agent.protocol import topics
from edge_sdk.demo import fleet
from edge_sdk.demo.state import DemoState
from edge_sdk.demo.steps import run_demo
from edge_sdk.fleet.embedded_broker import EmbeddedBroker


def _state(tmp_path: Path, model: tuple[Path, Path]) -> DemoState:
    tflite, data = model
    s = DemoState(out=tmp_path, say=lambda line: None)
    # What the demo's earlier steps leave: the model to serve and the inputs to replay.
    s.results["report"] = SimpleNamespace(bundle=tflite)
    s.results["train"] = SimpleNamespace(test=data)
    return s


def _port_open(url: str) -> bool:
    host, port = url.removeprefix("mqtt://").split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def test_fleet_steps_show_three_devices_that_served_then_stopped(tiny_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = run_demo(_state(tmp_path, tiny_model), fleet.STEPS)
    rows = {r["device"]: r for r in s.results["fleet"]}
    assert sorted(rows) == list(fleet.DEVICES)
    for r in rows.values():
        assert r["fleet"] == "demo" and r["status"] == "offline"
        assert r["inferences"] > 0 and r["seq"] >= fleet.WINDOWS - 1 and r["errors"] == 0
    assert all(p.returncode == 0 for p in s.results["agents"].values())  # clean SIGTERM stop
    assert not _port_open(s.results["broker"]), "the broker still listens after the demo"
    assert not [t for t in threading.enumerate() if t.name in ("collector-writer", "embedded-broker")]


def test_a_failing_step_leaves_nothing_running(tiny_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    def boom(s: DemoState) -> None:
        raise RuntimeError("injected failure after the agents started")

    s = _state(tmp_path, tiny_model)
    steps = [*fleet.STEPS[:3], ("boom", boom)]
    with pytest.raises(RuntimeError, match="injected"):
        run_demo(s, steps)
    agents = s.results["agents"]
    assert len(agents) == 3 and all(p.poll() is not None for p in agents.values())
    assert not _port_open(s.results["broker"])
    assert not [t for t in threading.enumerate() if t.name in ("collector-writer", "embedded-broker")]


def test_amqtt_has_no_shared_subscriptions_so_the_demo_subscribes_plainly() -> None:
    """Why the demo's collector runs without a share group: amqtt keeps ``$share/g/...``
    as a literal filter and delivers nothing to it (if this starts failing, amqtt gained
    shared subscriptions and the demo could use one)."""
    broker = EmbeddedBroker().start()
    got: dict[str, list[bytes]] = {"plain": [], "shared": []}
    clients = []
    try:
        for name, filt in (("plain", topics.fleet_filter("demo")),
                           ("shared", topics.shared(topics.fleet_filter("demo"), "g1"))):  # fmt: skip
            subscribed = threading.Event()
            c = MqttClient(BrokerOptions(url=broker.url, client_id=f"sub-{name}"),
                           on_message=lambda m, n=name: got[n].append(m.payload),  # type: ignore[misc]
                           on_subscribe=subscribed.set)  # fmt: skip
            c.subscribe(filt, qos=1)  # sent on every connect
            c.start()
            assert subscribed.wait(10)
            clients.append(c)
        pub = MqttClient(BrokerOptions(url=broker.url, client_id="pub"))
        pub.start()
        assert pub.wait_connected(10)
        pub.publish(topics.telemetry("demo", "demo-01"), b"x", qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 10
        while not got["plain"] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        pub.stop()
        assert got["plain"] == [b"x"]
        assert got["shared"] == []
    finally:
        for c in clients:
            c.stop()
        broker.stop()
