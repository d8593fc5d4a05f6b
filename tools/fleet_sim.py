"""Fleet simulator: play many devices' telemetry against a broker.

Each simulated device has its own topics, boot id and seq; devices are multiplexed
over a pool of MQTT connections (one connection per device would measure the
simulator's socket count, not the collector). Births are published retained, then
``windows`` telemetry windows per device at QoS 1.

    python tools/fleet_sim.py --broker mqtt://127.0.0.1:1883 --devices 2000 --windows 10
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device_agent.mqtt import BrokerOptions, MqttClient
from device_agent.telemetry import topics
from device_agent.telemetry.messages import State, Status, TelemetryWindow


@dataclass(frozen=True, kw_only=True)
class SimOptions:
    broker: str
    devices: int = 1000
    windows: int = 10
    fleet: str = "sim"
    connections: int = 4
    interval_s: float = 10.0  # simulated window length (timestamps only; no sleeping)
    rate: float = 0.0  # messages per second overall; 0 = as fast as QoS 1 allows
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


def _clients(o: SimOptions) -> list[MqttClient]:
    clients = []
    for i in range(o.connections):
        c = MqttClient(
            BrokerOptions(url=o.broker, client_id=f"fleet-sim-{os.getpid()}-{i}", max_inflight=1000)
        )
        c.start()
        if not c.wait_connected(15):
            raise SystemExit(f"fleet_sim: cannot connect to {o.broker}")
        clients.append(c)
    return clients


def simulate(o: SimOptions) -> dict[str, float]:
    """Publish births and ``windows`` × ``devices`` telemetry; wait for every PUBACK."""
    rng = random.Random(o.seed)
    ids = device_ids(o.devices)
    boots = {d: uuid.uuid4().hex[:16] for d in ids}
    clients = _clients(o)
    t0 = time.time() - o.windows * o.interval_s
    pending = []
    for i, d in enumerate(ids):
        st = State(status=Status.ONLINE, boot_id=boots[d], ts=t0, agent_version="sim",
                   model_name="sim-model", model_version="1.0.0", model_hash="0" * 64)  # fmt: skip
        c = clients[i % len(clients)]
        pending.append(c.publish(topics.state(o.fleet, d), st.to_payload(), qos=1, retain=True))
    start = time.perf_counter()
    sent = 0
    for seq in range(o.windows):
        for i, d in enumerate(ids):
            w = window(boots[d], seq, t0 + seq * o.interval_s, o.interval_s, rng)
            c = clients[i % len(clients)]
            pending.append(c.publish(topics.telemetry(o.fleet, d), w.to_payload(), qos=1))
            sent += 1
            if o.rate and sent % 100 == 0:
                ahead = sent / o.rate - (time.perf_counter() - start)
                if ahead > 0:
                    time.sleep(ahead)
    for info in pending:
        info.wait_for_publish(timeout=120)
    elapsed = time.perf_counter() - start
    for c in clients:
        c.stop()
    return {"telemetry": sent, "births": len(ids), "seconds": elapsed, "per_s": sent / elapsed}


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
