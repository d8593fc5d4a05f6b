"""``mqtt:TOPIC[?broker=URL]``: readings that sensor nodes publish to a broker.

Without ``broker=`` (or with the agent's own broker URL) the source subscribes on the
agent's one connection (``--broker`` and its credentials); another broker gets a
connection of its own (anonymous; ``mqtt://127.0.0.1:1883`` when the agent has none).

Payloads are a JSON array, a JSON object ``{"x": [...], "id": ..., "label": ...}``, or
raw little-endian float32 bytes. The subscription is renewed on every reconnect (paho
reconnects by itself). When no message arrives for ``timeout`` seconds (default 10) the
source yields an error reading ("sensor silent") and keeps waiting: a stopped sensor
is counted, never fatal. ``n`` stops after that many messages; ``qos`` (default 1).
"""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Iterator
from typing import Any

import numpy as np

from device_agent.errors import EdgeError
from device_agent.mqtt import BrokerOptions, MqttClient
from device_agent.sources.base import Reading
from device_agent.sources.stdin import parse_line

log = logging.getLogger(__name__)


def parse_payload(payload: bytes, n: int, topic: str) -> Reading:
    """A message body → a reading: JSON first, raw float32 when it is not JSON text."""
    try:
        text = payload.decode("utf-8")
        json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        if payload and len(payload) % 4 == 0:
            return Reading(id=f"{topic}:{n}", value=np.frombuffer(payload, dtype="<f4").copy())
        return Reading(
            id=f"{topic}:{n}",
            value=None,
            error=f"message {n} on {topic}: neither JSON nor float32 bytes ({len(payload)} bytes)",
        )
    r = parse_line(text, n)
    return (
        r
        if r.id != f"stdin:{n}"
        else Reading(id=f"{topic}:{n}", value=r.value, meta=r.meta, error=r.error)
    )


class MqttSource:
    """Readings from one topic's messages, queued by paho's thread and yielded in arrival order."""

    def __init__(
        self,
        topic: str,
        *,
        broker: str | None = None,
        connection: MqttClient | None = None,
        qos: int = 1,
        timeout: float = 10.0,
        n: int = 0,
        client_id: str = "",
        connect_timeout: float = 10.0,
    ):
        if not topic:
            raise EdgeError(
                "source mqtt: needs a topic, e.g. mqtt:sensors/imu?broker=mqtt://host:1883"
            )
        self.topic, self.qos, self.timeout, self.n = topic, qos, timeout, n
        self._q: queue.Queue[bytes] = queue.Queue(maxsize=10000)
        self._closed = False
        shared = connection is not None and broker in (None, connection.options.url)
        if shared:
            assert connection is not None
            self._client, self._owns = connection, False
        else:
            options = BrokerOptions(url=broker or "mqtt://127.0.0.1:1883", client_id=client_id).check()
            self._client, self._owns = MqttClient(options), True
        self._client.subscribe(topic, qos=qos, handler=self._on_message)
        if self._owns:
            self._client.start()
        if not self._client.wait_subscribed(topic, connect_timeout):
            why = self._client.last_error or "no subscription acknowledgement"
            self.close()
            raise EdgeError(
                f"source mqtt: no subscription to {topic} on {self._client.options.url} "
                f"within {connect_timeout:g} s ({why})"
            )

    def _on_message(self, msg: Any) -> None:
        try:
            self._q.put_nowait(bytes(msg.payload))
        except queue.Full:
            log.warning("mqtt source: queue full, dropping a message on %s", msg.topic)

    def __iter__(self) -> Iterator[Reading]:
        count = 0
        while not self._closed:
            try:
                payload = self._q.get(timeout=self.timeout)
            except queue.Empty:
                if self._closed:
                    return
                yield Reading(
                    id=f"{self.topic}:silent",
                    value=None,
                    error=f"sensor silent: no message on {self.topic} for {self.timeout:g}s",
                )
                continue
            yield parse_payload(payload, count, self.topic)
            count += 1
            if self.n and count >= self.n:
                return

    def close(self) -> None:
        """End the iteration (within ``timeout``); stop the connection only if this source opened it."""
        if self._closed:
            return
        self._closed = True
        if self._owns:
            self._client.stop()
