"""Model updates on the device: the store, the update flow, health checks and probation.

The names below are imported on first use (PEP 562), so a command that needs one part
(``edge-agent status`` needs only the store) does not pay for the others at start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from device_agent.update.flow import FlowStep, UpdateFlow, UpdatePolicy, UpdateResult
    from device_agent.update.health import HealthOptions, HealthReport
    from device_agent.update.probation import ProbationPolicy, ProbationWindow, Verdict
    from device_agent.update.store import ModelStore, Slot

_WHERE = {
    "FlowStep": "flow", "UpdateFlow": "flow", "UpdatePolicy": "flow", "UpdateResult": "flow",
    "HealthOptions": "health", "HealthReport": "health",
    "ProbationPolicy": "probation", "Verdict": "probation", "ProbationWindow": "probation",
    "ModelStore": "store", "Slot": "store",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


__all__ = [
    "FlowStep",
    "HealthOptions",
    "HealthReport",
    "ModelStore",
    "ProbationPolicy",
    "ProbationWindow",
    "Slot",
    "UpdateFlow",
    "UpdatePolicy",
    "UpdateResult",
    "Verdict",
]
