"""Fleet simulator: play many devices' telemetry against a broker.

Each simulated device has its own topics, boot id and seq; devices are multiplexed
over a pool of MQTT connections (one connection per device would measure the
simulator's socket count, not the collector). Births are published retained, then
``windows`` telemetry windows per device at QoS 1, optionally at a fixed ``rate``.

It publishes with the collector's MQTT codec over plain sockets, pipelining up to
``window`` unacknowledged messages per connection: paho's publish path costs tens of
µs per message, so a paho simulator could not offer 20,000 messages a second to a
collector on the same 2-core machine.

    python tools/fleet_sim.py --broker mqtt://127.0.0.1:1883 --devices 2000 --windows 10
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device_agent.mqtt import parse_url
from device_agent.protocol import topics
from device_agent.protocol.messages import State, Status, TelemetryWindow
from edge_sdk.fleet import mqtt_codec as codec


@dataclass(frozen=True, kw_only=True)
class SimOptions:
    broker: str
    devices: int = 1000
    windows: int = 10
    fleet: str = "sim"
    connections: int = 4
    interval_s: float = 10.0  # simulated window length (timestamps only; no sleeping)
    rate: float = 0.0  # messages per second overall; 0 = as fast as QoS 1 allows
    window: int = 500  # unacknowledged QoS 1 messages per connection
    seed: int = 0


def device_ids(n: int) -> list[str]:
    return [f"sim-{i:05d}" for i in range(n)]


def window(
    boot: str, seq: int, start: float, interval: float, rng: random.Random
) -> TelemetryWindow:
    n = rng.randint(50, 500)
    p50 = rng.uniform(1.0, 5.0)
    return TelemetryWindow(
        seq=seq, boot_id=boot, start=start, end=start + interval, inferences=n,
        errors=rng.randint(0, 2), throughput=n / interval, latency_p50=p50,
        latency_p95=p50 * 1.6, latency_p99=p50 * 2.1, cache_hits=rng.randint(0, n // 4),
        exits={"0": n // 2, "1": n - n // 2}, cpu_percent=rng.uniform(5, 60),
        rss_bytes=rng.randint(40, 90) * 2**20, temperature_c=rng.uniform(40, 70),
        model_version="1.0.0",
    )  # fmt: skip


class _Connection:
    """One publishing connection: QoS 1 with up to ``window`` PUBLISHes awaiting PUBACK."""

    def __init__(self, url: str, client_id: str, window: int):
        host, port, _ = parse_url(url)
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = codec.Decoder()
        self.sock.sendall(codec.connect(client_id, clean_session=True, keepalive=60))
        while not (packets := self.decoder.feed(self._recv())):
            pass
        if not isinstance(packets[0], codec.ConnAck) or packets[0].code:
            raise SystemExit(f"fleet_sim: {url} refused the connection: {packets[0]}")
        self.window, self.inflight, self.mid = window, 0, 0
        self.out: list[bytes] = []

    def _recv(self) -> bytes:
        data = self.sock.recv(1 << 16)
        if not data:
            raise SystemExit("fleet_sim: the broker closed the connection")
        return data

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if self.inflight >= self.window:
            self.flush()
            while self.inflight >= self.window // 2:
                self._take_acks()
        self.mid = self.mid % 0xFFFF + 1
        self.out.append(codec.publish(topic, payload, qos=1, mid=self.mid, retain=retain))
        self.inflight += 1

    def flush(self) -> None:
        if self.out:
            self.sock.sendall(b"".join(self.out))
            self.out = []

    def _take_acks(self) -> None:
        self.inflight -= sum(type(p) is codec.PubAck for p in self.decoder.feed(self._recv()))

    def finish(self) -> None:
        """Wait for every PUBACK, then DISCONNECT."""
        self.flush()
        while self.inflight > 0:
            self._take_acks()
        self.sock.sendall(codec.DISCONNECT_PACKET)
        self.sock.close()


def fleet_messages(o: SimOptions) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """(births, telemetry) as (topic, payload), built before any timing starts."""
    rng = random.Random(o.seed)
    ids = device_ids(o.devices)
    boots = {d: uuid.uuid4().hex[:16] for d in ids}
    t0 = time.time() - o.windows * o.interval_s
    births = [
        (topics.state(o.fleet, d), State(
            status=Status.ONLINE, boot_id=boots[d], ts=t0, agent_version="sim",
            model_name="sim-model", model_version="1.0.0", model_hash="0" * 64,
        ).to_payload())
        for d in ids
    ]  # fmt: skip
    telemetry = [
        (topics.telemetry(o.fleet, d),
         window(boots[d], seq, t0 + seq * o.interval_s, o.interval_s, rng).to_payload())
        for seq in range(o.windows) for d in ids
    ]  # fmt: skip
    return births, telemetry


def simulate(o: SimOptions) -> dict[str, float]:
    """Publish births and ``windows`` × ``devices`` telemetry; wait for every PUBACK."""
    births, telemetry = fleet_messages(o)
    conns = [_Connection(o.broker, f"fleet-sim-{os.getpid()}-{i}", o.window)
             for i in range(o.connections)]  # fmt: skip
    for i, (topic, payload) in enumerate(births):
        conns[i % len(conns)].publish(topic, payload, retain=True)
    started_at, start = time.time(), time.perf_counter()
    n = len(conns)
    for i, (topic, payload) in enumerate(telemetry, 1):
        conns[(i - 1) % o.devices % n].publish(topic, payload)  # a device keeps its connection
        if i % 100 == 0:
            _pace(conns, o.rate, i, start)
    for c in conns:
        c.finish()
    elapsed = time.perf_counter() - start
    return {"telemetry": len(telemetry), "births": len(births), "seconds": elapsed,
            "per_s": len(telemetry) / elapsed, "started_at": started_at}  # fmt: skip


def _pace(conns: list[_Connection], rate: float, sent: int, start: float) -> None:
    """Send what is buffered; when a rate is set, sleep until the schedule catches up."""
    for c in conns:
        c.flush()
    if rate:
        ahead = sent / rate - (time.perf_counter() - start)
        if ahead > 0:
            time.sleep(ahead)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--broker", required=True)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--windows", type=int, default=10)
    p.add_argument("--fleet", default="sim")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--rate", type=float, default=0.0)
    a = p.parse_args()
    out = simulate(SimOptions(broker=a.broker, devices=a.devices, windows=a.windows,
                              fleet=a.fleet, connections=a.connections, rate=a.rate))  # fmt: skip
    print(f"published {out['telemetry']:.0f} windows from {a.devices} devices "
          f"in {out['seconds']:.1f} s ({out['per_s']:.0f}/s)")  # fmt: skip


if __name__ == "__main__":
    main()
