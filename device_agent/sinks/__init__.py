"""Sinks: one file per kind, one small interface (``emit``, ``close``).

``stdout`` (JSON lines) and ``mqtt://host:port`` (the device's ``results`` topic).
"""

from __future__ import annotations

from collections.abc import Callable

from device_agent.errors import EdgeError
from device_agent.sinks.base import Result, Sink
from device_agent.sinks.stdout import StdoutSink


def _mqtt(uri: str, *, fleet: str, device_id: str, qos: int) -> Sink:
    from device_agent.sinks.mqtt import MqttSink

    return MqttSink(uri, fleet=fleet, device_id=device_id, qos=qos)


def _stdout(uri: str, *, fleet: str, device_id: str, qos: int) -> Sink:
    return StdoutSink()


REGISTRY: dict[str, Callable[..., Sink]] = {"stdout": _stdout, "mqtt": _mqtt}


def open_sink(uri: str, *, fleet: str = "default", device_id: str = "device", qos: int = 0) -> Sink:
    """``"stdout"`` or ``"mqtt://host:port"`` → a sink."""
    scheme = uri.split(":", 1)[0]
    if scheme not in REGISTRY:
        raise EdgeError(f"unknown sink {uri!r}; expected stdout or mqtt://HOST:PORT")
    return REGISTRY[scheme](uri, fleet=fleet, device_id=device_id, qos=qos)


__all__ = ["REGISTRY", "Result", "Sink", "StdoutSink", "open_sink"]
