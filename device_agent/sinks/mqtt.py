"""Results on MQTT: ``edge/v1/{fleet}/{device_id}/results``, one JSON message per result."""

from __future__ import annotations

import logging
import threading
from typing import Any

from device_agent.errors import EdgeError
from device_agent.mqtt_util import Broker, new_client
from device_agent.sinks.base import Result
from device_agent.telemetry import topics

log = logging.getLogger(__name__)


class MqttSink:
    """Publishes each result (QoS 0 or 1) to the device's results topic."""

    def __init__(
        self,
        broker: str,
        *,
        fleet: str,
        device_id: str,
        qos: int = 0,
        connect_timeout: float = 10.0,
    ):
        if qos not in (0, 1):
            raise EdgeError(f"--results-qos must be 0 or 1, got {qos}")
        self.topic = topics.results(fleet, device_id)
        self.qos = qos
        addr = Broker.parse(broker)
        self._connected = threading.Event()
        self._client = new_client(f"{device_id}-results")
        self._client.on_connect = self._on_connect
        self._client.max_queued_messages_set(10000)
        try:
            self._client.connect(addr.host, addr.port, keepalive=30)
        except OSError as e:
            raise EdgeError(f"results sink: cannot reach broker {broker} ({e})") from e
        self._client.loop_start()
        if not self._connected.wait(connect_timeout):
            self.close()
            raise EdgeError(f"results sink: no connection to {broker} within {connect_timeout}s")

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if not getattr(reason, "is_failure", False):
            self._connected.set()

    def emit(self, result: Result) -> None:
        info = self._client.publish(self.topic, result.to_payload(), qos=self.qos)
        if info.rc != 0:
            log.warning("results sink: publish failed (rc=%s); result %s dropped", info.rc, result.seq)
        self._last = info

    def close(self, *, flush_timeout: float = 5.0) -> None:
        """Wait (bounded) for the last message to leave, then disconnect."""
        last = getattr(self, "_last", None)
        if last is not None and self._connected.is_set():
            try:
                last.wait_for_publish(timeout=flush_timeout)
            except (RuntimeError, ValueError) as e:
                log.warning("results sink: last result not confirmed: %s", e)
        self._client.disconnect()
        self._client.loop_stop()
