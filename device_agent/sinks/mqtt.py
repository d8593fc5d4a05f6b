"""Results on MQTT: ``edge/v1/{fleet}/{device_id}/results``, one JSON message per result.

``--sink mqtt`` (or the agent's own broker URL) publishes on the agent's one connection;
``--sink mqtt://HOST:PORT`` naming another broker opens a connection of its own.
"""

from __future__ import annotations

import logging
from typing import Any

from device_agent.errors import EdgeError
from device_agent.mqtt import BrokerOptions, MqttClient
from device_agent.protocol import topics
from device_agent.sinks.base import Result

log = logging.getLogger(__name__)


class MqttSink:
    """Publishes each result (QoS 0 or 1) to the device's results topic."""

    def __init__(
        self,
        broker: str | None,
        *,
        fleet: str,
        device_id: str,
        qos: int = 0,
        connection: MqttClient | None = None,
        connect_timeout: float = 10.0,
    ):
        if qos not in (0, 1):
            raise EdgeError(f"--results-qos must be 0 or 1, got {qos}")
        self.topic = topics.results(fleet, device_id)
        self.qos = qos
        self._last: Any = None
        if connection is not None and broker in (None, connection.options.url):
            self._client, self._owns = connection, False
            return
        if broker is None:
            raise EdgeError("--sink mqtt: no broker; give --broker URL or --sink mqtt://HOST:PORT")
        self._client = MqttClient(BrokerOptions(url=broker, client_id=f"{device_id}-results").check())
        self._owns = True
        self._client.start()
        if not self._client.wait_connected(connect_timeout):
            why = self._client.last_error or "no answer"
            self.close()
            raise EdgeError(f"results sink: no connection to {broker} within {connect_timeout:g} s ({why})")

    def emit(self, result: Result) -> None:
        """Publish one result; a refused publish is logged and the result dropped, never raised."""
        info = self._client.publish(self.topic, result.to_payload(), qos=self.qos)
        if info.rc != 0:
            log.warning("results sink: publish failed (rc=%s); result %s dropped", info.rc, result.seq)
        self._last = info

    def close(self, *, flush_timeout: float = 5.0) -> None:
        """Wait (bounded) for the last message to leave, then disconnect."""
        last = self._last
        if last is not None and self._client.connected:
            try:
                last.wait_for_publish(timeout=flush_timeout)
            except (RuntimeError, ValueError) as e:
                log.warning("results sink: last result not confirmed: %s", e)
        if self._owns:
            self._client.stop()
