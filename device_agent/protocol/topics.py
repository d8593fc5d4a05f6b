"""MQTT topic names, built in one place (DESIGN.md: ``edge/v1/{fleet}/{device_id}/...``).

Ids are restricted to ``[A-Za-z0-9_-]`` so an id can never inject a topic level
(``/``) or a wildcard (``+``, ``#``) into a topic or an ACL pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from device_agent.errors import EdgeError

PREFIX = "edge/v1"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Kind(str, Enum):
    """The last topic level(s) under a device prefix."""

    STATE = "state"
    TELEMETRY = "telemetry"
    RESULTS = "results"
    DEPLOY = "deploy"
    DEPLOY_STATUS = "deploy/status"
    BENCH = "bench"
    BENCH_RESULT = "bench/result"


def check_id(value: str, what: str = "device id") -> str:
    """Return ``value`` if it is a valid fleet or device id, else raise :class:`EdgeError`."""
    if not isinstance(value, str) or not _ID.match(value):
        raise EdgeError(f"{what}: expected 1-64 characters of [A-Za-z0-9_-], found {value!r}")
    return value


def device_topic(fleet: str, device: str, kind: Kind) -> str:
    """``edge/v1/{fleet}/{device}/{kind}``."""
    return f"{PREFIX}/{check_id(fleet, 'fleet')}/{check_id(device)}/{kind.value}"


def state(fleet: str, device: str) -> str:
    """The device's retained ``state`` topic."""
    return device_topic(fleet, device, Kind.STATE)


def telemetry(fleet: str, device: str) -> str:
    """The device's ``telemetry`` topic."""
    return device_topic(fleet, device, Kind.TELEMETRY)


def results(fleet: str, device: str) -> str:
    """The device's ``results`` topic."""
    return device_topic(fleet, device, Kind.RESULTS)


def deploy(fleet: str, device: str) -> str:
    """The device's ``deploy`` topic."""
    return device_topic(fleet, device, Kind.DEPLOY)


def deploy_status(fleet: str, device: str) -> str:
    """The device's ``deploy/status`` topic."""
    return device_topic(fleet, device, Kind.DEPLOY_STATUS)


def bench(fleet: str, device: str) -> str:
    """The device's ``bench`` topic: signed benchmark requests from the host."""
    return device_topic(fleet, device, Kind.BENCH)


def bench_result(fleet: str, device: str) -> str:
    """The device's ``bench/result`` topic: its answers to benchmark requests."""
    return device_topic(fleet, device, Kind.BENCH_RESULT)


def alerts(fleet: str) -> str:
    """``edge/v1/{fleet}/alerts``: alerts raised by ``edge fleet`` / the collector."""
    return f"{PREFIX}/{check_id(fleet, 'fleet')}/alerts"


def fleet_filter(fleet: str = "+") -> str:
    """Subscription filter for every device topic of one fleet (or all with ``+``)."""
    if fleet != "+":
        check_id(fleet, "fleet")
    return f"{PREFIX}/{fleet}/+/#"


def shared(filter_: str, group: str | None) -> str:
    """``$share/{group}/{filter}`` so several collectors split one fleet; plain when no group."""
    if not group:
        return filter_
    return f"$share/{check_id(group, 'share group')}/{filter_}"


@dataclass(frozen=True)
class Parsed:
    """A device topic split into its parts."""

    fleet: str
    device: str
    kind: Kind


_KINDS = {k.value: k for k in Kind}


def parse(topic: str) -> Parsed | None:
    """Split ``edge/v1/{fleet}/{device}/{kind}``; ``None`` for anything else."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[0] + "/" + parts[1] != PREFIX:
        return None
    fleet, device, kind = parts[2], parts[3], "/".join(parts[4:])
    if kind not in _KINDS or not _ID.match(fleet) or not _ID.match(device):
        return None
    return Parsed(fleet, device, _KINDS[kind])
