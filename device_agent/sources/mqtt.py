"""``mqtt:TOPIC?broker=mqtt://host:port``: readings that sensor nodes publish to a broker.

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
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from device_agent.errors import EdgeError
from device_agent.mqtt_util import Broker, new_client
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
    def __init__(
        self,
        topic: str,
        *,
        broker: str = "mqtt://127.0.0.1:1883",
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
        self.broker = Broker.parse(broker)
        self._q: queue.Queue[bytes] = queue.Queue(maxsize=10000)
        self._subscribed = threading.Event()
        self._closed = False
        self._client = new_client(client_id)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        try:
            self._client.connect(self.broker.host, self.broker.port, keepalive=30)
        except OSError as e:
            raise EdgeError(f"source mqtt: cannot reach broker {broker} ({e})") from e
        self._client.loop_start()
        if not self._subscribed.wait(connect_timeout):
            self.close()
            raise EdgeError(
                f"source mqtt: no subscription to {topic} on {broker} within {connect_timeout}s"
            )

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("mqtt source: connection refused: %s", reason)
            return
        client.subscribe(self.topic, qos=self.qos)
        self._subscribed.set()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
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
        if self._closed:
            return
        self._closed = True
        self._client.loop_stop()
        self._client.disconnect()
