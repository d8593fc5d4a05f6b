"""Model updates on the device: the store, the update flow, health checks and probation."""

from __future__ import annotations

from device_agent.update.flow import Status, Step, UpdateFlow, UpdatePolicy, UpdateResult
from device_agent.update.health import HealthOptions, HealthReport
from device_agent.update.probation import ProbationPolicy, Verdict, Window
from device_agent.update.store import ModelStore, Slot

__all__ = [
    "HealthOptions",
    "HealthReport",
    "ModelStore",
    "ProbationPolicy",
    "Slot",
    "Status",
    "Step",
    "UpdateFlow",
    "UpdatePolicy",
    "UpdateResult",
    "Verdict",
    "Window",
]
