"""Sinks: one file per kind, one small interface (``emit``, ``close``).

``stdout`` (JSON lines) and ``mqtt`` or ``mqtt://host:port`` (the device's ``results``
topic; bare ``mqtt`` uses the agent's own connection).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from device_agent.errors import EdgeError
from device_agent.sinks.base import Result, Sink
from device_agent.sinks.stdout import StdoutSink

if TYPE_CHECKING:
    from device_agent.mqtt import MqttClient


def _mqtt(uri: str, *, fleet: str, device_id: str, qos: int, connection: MqttClient | None) -> Sink:
    from device_agent.sinks.mqtt import MqttSink

    broker = None if uri == "mqtt" else uri
    return MqttSink(broker, fleet=fleet, device_id=device_id, qos=qos, connection=connection)


def _stdout(uri: str, *, fleet: str, device_id: str, qos: int, connection: MqttClient | None) -> Sink:
    return StdoutSink()


REGISTRY: dict[str, Callable[..., Sink]] = {"stdout": _stdout, "mqtt": _mqtt}


def open_sink(uri: str, *, fleet: str = "default", device_id: str = "device", qos: int = 0,
              connection: MqttClient | None = None) -> Sink:
    """``"stdout"``, ``"mqtt"`` (on ``connection``) or ``"mqtt://host:port"`` → a sink."""
    scheme = uri.split(":", 1)[0]
    if scheme not in REGISTRY:
        raise EdgeError(f"unknown sink {uri!r}; expected stdout, mqtt or mqtt://HOST:PORT")
    return REGISTRY[scheme](uri, fleet=fleet, device_id=device_id, qos=qos, connection=connection)


__all__ = ["REGISTRY", "Result", "Sink", "StdoutSink", "open_sink"]
