"""Telemetry over MQTT: topics, typed messages, window aggregation, outbox, publisher."""

from __future__ import annotations

from device_agent.telemetry.messages import (
    Alert,
    AlertKind,
    DeployPhase,
    DeployStatus,
    MessageError,
    Severity,
    State,
    Status,
    TelemetryWindow,
)

__all__ = [
    "Alert",
    "AlertKind",
    "DeployPhase",
    "DeployStatus",
    "MessageError",
    "Severity",
    "State",
    "Status",
    "TelemetryWindow",
]
