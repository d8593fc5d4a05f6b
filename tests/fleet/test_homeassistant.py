"""Home Assistant MQTT discovery from the collector, checked by a real MQTT subscriber on a
real Mosquitto; ``edge fleet retire`` removes a device's configs and its status row."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from typing import Any

from device_agent.mqtt import BrokerOptions, MqttClient
from device_agent.protocol import topics
from device_agent.protocol.messages import State, Status, TelemetryWindow
from edge_sdk.fleet import homeassistant as ha
from tests.fleet.conftest import ENV, wait_for
from tests.fleet.test_reliability import collector_up


class Retained:
    """A fresh subscriber: every message it got, by topic (retained ones arrive first)."""

    def __init__(self, url: str, *filters: str):
        self.msgs: dict[str, tuple[bytes, bool]] = {}
        self.lock = threading.Lock()
        done = threading.Event()

        def on_message(m: Any) -> None:
            with self.lock:
                self.msgs[m.topic] = (bytes(m.payload), bool(m.retain))

        self.client = MqttClient(BrokerOptions(url=url, client_id=f"ha-check-{time.monotonic_ns()}"),
                                 on_message=on_message, on_subscribe=done.set)  # fmt: skip
        self.client.start()
        assert self.client.wait_connected(10)
        for f in filters:
            done.clear()
            self.client.subscribe(f)
            assert done.wait(10)

    def snapshot(self, prefix: str = "") -> dict[str, bytes]:
        with self.lock:
            return {t: p for t, (p, _) in self.msgs.items() if t.startswith(prefix) and p}

    def close(self) -> None:
        self.client.stop()


def publish(url: str, msgs: list[tuple[str, bytes, bool]]) -> None:
    c = MqttClient(BrokerOptions(url=url, client_id=f"ha-pub-{time.monotonic_ns()}"))
    c.start()
    assert c.wait_connected(10)
    for info in [c.publish(t, p, qos=1, retain=r) for t, p, r in msgs]:
        info.wait_for_publish(10)
    c.stop()


def birth(device: str, version: str, status: Status = Status.ONLINE) -> tuple[str, bytes, bool]:
    st = State(status=status, boot_id=f"boot-{device}", ts=time.time(), agent_version="0.1.0",
               model_name="digits-cnn", model_version=version, model_hash="ab" * 32, clean=status is Status.OFFLINE)
    return topics.state("lab", device), st.to_payload(), True  # fmt: skip


def window(device: str, seq: int, p95: float, hits: int, temp: float) -> tuple[str, bytes, bool]:
    now = time.time()
    w = TelemetryWindow(seq=seq, boot_id=f"boot-{device}", start=now - 10, end=now, inferences=400, errors=3,
                        throughput=40.0, latency_p50=p95 / 2, latency_p95=p95, latency_p99=p95 * 1.2,
                        cache_hits=hits, exits={"0": 400}, cpu_percent=20.0, rss_bytes=50 << 20,
                        temperature_c=temp, model_version="1.4.0")  # fmt: skip
    return topics.telemetry("lab", device), w.to_payload(), False


def render(template: str, state: dict[str, Any]) -> Any:
    """Home Assistant's ``{{ value_json.KEY }}`` as these configs use it."""
    m = re.fullmatch(r"\{\{ value_json\.(\w+) \}\}", template)
    assert m, template
    return state[m.group(1)]


def test_discovery_configs_values_availability_and_retire(broker, procs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    mq, db = broker(), tmp_path / "fleet.db"
    collector_up(procs, mq.url, db, extra=("--homeassistant", "--homeassistant-interval", "0.3"))
    publish(mq.url, [birth("pi-01", "1.4.0"), birth("pi-02", "1.3.0"),
                     window("pi-01", 0, 7.25, 100, 48.5), window("pi-02", 0, 3.5, 0, 61.0)])  # fmt: skip
    sub = Retained(mq.url, "homeassistant/#", "edge/ha/#")
    n = len(ha.ENTITIES)
    wait_for(lambda: len(sub.snapshot("homeassistant/")) == 2 * n and len(sub.snapshot("edge/ha/")) == 4,
             20, "discovery configs and states")  # fmt: skip
    time.sleep(0.5)
    configs = {t: json.loads(p) for t, p in sub.snapshot("homeassistant/").items()}
    states = sub.snapshot("edge/ha/")
    fresh = Retained(mq.url, "homeassistant/#", "edge/ha/#")  # what Home Assistant gets when it starts
    wait_for(lambda: len(fresh.msgs) == 2 * n + 4, 10, "retained configs and states")
    assert all(retained for _, retained in fresh.msgs.values())
    fresh.close()
    assert len({c["unique_id"] for c in configs.values()}) == 2 * n

    p95 = configs["homeassistant/sensor/edge_lab_pi-01/latency_p95_ms/config"]
    assert p95["unit_of_measurement"] == "ms" and p95["device_class"] == "duration"
    assert p95["state_class"] == "measurement"
    assert p95["state_topic"] == "edge/ha/lab/pi-01/state"
    assert p95["availability_topic"] == "edge/ha/lab/pi-01/availability"
    assert p95["device"] == {"identifiers": ["edge_lab_pi-01"], "name": "pi-01", "manufacturer": "Edge SDK",
                             "model": "digits-cnn", "sw_version": "1.4.0", "hw_version": "0.1.0"}  # fmt: skip
    temp = configs["homeassistant/sensor/edge_lab_pi-02/temperature_c/config"]
    assert (temp["device_class"], temp["unit_of_measurement"]) == ("temperature", "°C")
    status = configs["homeassistant/binary_sensor/edge_lab_pi-01/status/config"]
    assert status["device_class"] == "connectivity" and status["state_topic"] == "edge/ha/lab/pi-01/availability"

    # Every sensor's template resolves on the state the collector computed from the window.
    s1 = json.loads(states["edge/ha/lab/pi-01/state"])
    values = {c["unique_id"]: render(c["value_template"], s1)
              for t, c in configs.items() if "pi-01" in t and "value_template" in c}  # fmt: skip
    assert values == {"edge_lab_pi-01_latency_p95_ms": 7.25, "edge_lab_pi-01_throughput_per_s": 40.0,
                      "edge_lab_pi-01_errors": 3, "edge_lab_pi-01_cache_hit_rate": 25.0,
                      "edge_lab_pi-01_model_version": "1.4.0", "edge_lab_pi-01_temperature_c": 48.5}  # fmt: skip
    assert states["edge/ha/lab/pi-01/availability"] == b"online"

    # A clean stop: availability follows the device's status.
    publish(mq.url, [birth("pi-02", "1.3.0", Status.OFFLINE)])
    wait_for(lambda: sub.snapshot().get("edge/ha/lab/pi-02/availability") == b"offline", 20, "pi-02 offline")
    sub.close()

    # A dead broker: one error line naming it, and nothing changed in the database.
    dead = subprocess.run([sys.executable, "-m", "edge_sdk", "fleet", "retire", "pi-02", "--db", str(db),
                           "--broker", "mqtt://127.0.0.1:1"], env=ENV, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert dead.returncode == 2 and dead.stderr.startswith("error: broker mqtt://127.0.0.1:1"), dead.stderr
    assert len(dead.stderr.strip().splitlines()) == 1, dead.stderr
    kept = subprocess.run([sys.executable, "-m", "edge_sdk", "fleet", "status", "--db", str(db), "--json"],
                          env=ENV, capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "pi-02" in [d["device"] for d in json.loads(kept)]

    out = subprocess.run([sys.executable, "-m", "edge_sdk", "fleet", "retire", "pi-02", "--db", str(db),
                          "--broker", mq.url], env=ENV, capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "retired lab/pi-02" in out.stdout
    time.sleep(1.0)  # three collector rounds: it must not bring pi-02 back
    after = Retained(mq.url, "homeassistant/#", "edge/ha/#", "edge/v1/+/+/state")
    time.sleep(1.0)
    left = after.snapshot()
    assert left and not any("pi-02" in t for t in left), sorted(left)
    assert len(after.snapshot("homeassistant/")) == n
    status_json = subprocess.run([sys.executable, "-m", "edge_sdk", "fleet", "status", "--db", str(db), "--json"],
                                 env=ENV, capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert [d["device"] for d in json.loads(status_json)] == ["pi-01"]

    # If it reports again it is back, configured afresh.
    publish(mq.url, [window("pi-02", 1, 3.0, 40, 60.0)])
    wait_for(lambda: len(after.snapshot("homeassistant/")) == 2 * n, 20, "pi-02 configured again")
    after.close()

    again = subprocess.run([sys.executable, "-m", "edge_sdk", "fleet", "retire", "pi-09", "--db", str(db)],
                           env=ENV, capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 2 and again.stderr.startswith("error: device 'pi-09': not in")
