"""``edge broker``'s embedded amqtt: a retained message reaches only the subscriptions it
matches (amqtt 0.12.1 alone replays, on every CONNECT, what matches anyone's filters)."""

from __future__ import annotations

import queue
import time

import paho.mqtt.client as mqtt

from edge_sdk.fleet.embedded_broker import EmbeddedBroker


class _Client:
    """A paho client whose messages land in a shared queue as (client id, topic, retained)."""

    def __init__(self, b: EmbeddedBroker, cid: str, got: queue.Queue[tuple[str, str, bool]]):
        self.subacks: queue.Queue[object] = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid)
        self.c.on_message = lambda c_, u, m: got.put((cid, m.topic, bool(m.retain)))
        self.c.on_subscribe = lambda c_, u, mid, codes, p: self.subacks.put(codes)
        self.c.connect(b.host, b.port)
        self.c.loop_start()

    def subscribe(self, topic_filter: str) -> None:
        self.c.subscribe(topic_filter, qos=1)
        self.subacks.get(timeout=10)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_retained_state_reaches_only_matching_subscriptions() -> None:
    b = EmbeddedBroker().start()
    got: queue.Queue[tuple[str, str, bool]] = queue.Queue()
    try:
        collector = _Client(b, "collector", got)
        collector.subscribe("edge/v1/+/+/#")
        agent = _Client(b, "agent", queue.Queue())
        agent.publish("edge/v1/lab/pi-01/state", b"online", retain=True)
        assert got.get(timeout=10) == ("collector", "edge/v1/lab/pi-01/state", False)  # live

        bystander = _Client(b, "bystander", got)
        bystander.subscribe("nothing/here")
        watcher = _Client(b, "watcher", got)
        watcher.subscribe("edge/v1/lab/+/state")
        assert got.get(timeout=10) == ("watcher", "edge/v1/lab/pi-01/state", True)
        agent.publish("nothing/here", b"marker")
        seen = set()
        deadline = time.monotonic() + 10
        while ("bystander", "nothing/here", False) not in seen and time.monotonic() < deadline:
            seen.add(got.get(timeout=10))
        # the bystander got its own topic's message and nothing retained from anyone's filters
        assert {m for m in seen if m[0] == "bystander"} == {("bystander", "nothing/here", False)}
        for c in (collector, agent, bystander, watcher):
            c.close()
    finally:
        b.stop()
