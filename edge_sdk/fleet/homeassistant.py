"""Home Assistant MQTT discovery for the fleet (pure: topics and payloads, no IO).

For every device the collector publishes, retained:

- one discovery config per entity under ``{prefix}/{component}/edge_{fleet}_{device}/{key}/config``
  (Home Assistant's documented schema: ``unique_id``, ``state_topic``, ``value_template``,
  ``availability_topic``, ``unit_of_measurement``, ``device_class``, ``state_class`` and a
  shared ``device`` entry with ``identifiers``, ``name``, ``model``, ``sw_version``);
- the values on the collector's own topics, ``edge/ha/{fleet}/{device}/state`` (one JSON
  object the configs pick from) and ``.../availability`` (``online``/``offline``, from the
  device's status). Values that are no raw telemetry field (cache hit rate, status) are
  computed here, from the device's latest window.

An empty retained payload on a config topic removes the entity; :func:`removal` lists
every topic to clear when a device is retired.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from device_agent.errors import EdgeError
from device_agent.protocol import topics

DEFAULT_PREFIX = "homeassistant"
_LEVEL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
STATE_PREFIX = "edge/ha"  # the collector's own topics (outside edge/v1: devices never write here)
ORIGIN = {"name": "edge-sdk collector"}


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity of a device: a field of the state JSON."""

    key: str
    name: str
    component: str = "sensor"
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = "measurement"
    icon: str | None = None
    diagnostic: bool = False
    precision: int | None = None


ENTITIES = (
    Entity("status", "Status", component="binary_sensor", device_class="connectivity", state_class=None),
    Entity("latency_p95_ms", "p95 latency", unit="ms", device_class="duration", precision=2),
    Entity("throughput_per_s", "Throughput", unit="inferences/s", icon="mdi:speedometer", precision=1),
    Entity("errors", "Errors", unit="errors", icon="mdi:alert-circle-outline"),
    Entity("cache_hit_rate", "Cache hit rate", unit="%", icon="mdi:cached", precision=1),
    Entity("model_version", "Model version", state_class=None, icon="mdi:tag-outline", diagnostic=True),
    Entity("temperature_c", "CPU temperature", unit="°C", device_class="temperature", precision=1),
)


def check_prefix(prefix: str) -> str:
    """A discovery prefix: topic levels of ``[A-Za-z0-9_-]`` (no wildcard, no empty level)."""
    if not prefix or any(not part or not _LEVEL.match(part) for part in prefix.split("/")):
        raise EdgeError(
            f"--homeassistant-prefix: expected topic levels of [A-Za-z0-9_-] such as homeassistant, found {prefix!r}"
        )
    return prefix


def node_id(fleet: str, device: str) -> str:
    """The device's id in discovery topics and ``unique_id`` s (``[A-Za-z0-9_-]`` only)."""
    return f"edge_{topics.check_id(fleet, 'fleet')}_{topics.check_id(device)}"


def state_topic(fleet: str, device: str) -> str:
    """Where the collector publishes a device's values, one JSON object its entities pick from."""
    return f"{STATE_PREFIX}/{topics.check_id(fleet, 'fleet')}/{topics.check_id(device)}/state"


def availability_topic(fleet: str, device: str) -> str:
    """Where the collector publishes ``online``/``offline`` for a device's entities."""
    return f"{STATE_PREFIX}/{topics.check_id(fleet, 'fleet')}/{topics.check_id(device)}/availability"


def config_topic(prefix: str, fleet: str, device: str, e: Entity) -> str:
    """The discovery topic of one entity of a device, under Home Assistant's ``prefix``."""
    return f"{prefix}/{e.component}/{node_id(fleet, device)}/{e.key}/config"


def device_entry(d: dict[str, Any]) -> dict[str, Any]:
    """The ``device`` block every entity of one device shares (HA groups them by it)."""
    entry = {
        "identifiers": [node_id(d["fleet"], d["device"])],
        "name": d["device"],
        "manufacturer": "Edge SDK",
        "model": d["model_name"] or "edge-agent",
        "sw_version": d["model_version"] or None,
        "hw_version": d["agent_version"] or None,
    }
    return {k: v for k, v in entry.items() if v is not None}


def config(prefix: str, d: dict[str, Any], e: Entity) -> tuple[str, bytes]:
    """(topic, retained payload) of one entity's discovery config."""
    fleet, device = d["fleet"], d["device"]
    avail = availability_topic(fleet, device)
    c: dict[str, Any] = {
        "name": e.name,
        "unique_id": f"{node_id(fleet, device)}_{e.key}",
        "state_topic": avail if e.key == "status" else state_topic(fleet, device),
        "device": device_entry(d),
        "origin": ORIGIN,
    }
    if e.key == "status":  # the connectivity sensor reads the availability topic itself
        c.update(payload_on="online", payload_off="offline")
    else:
        c.update(
            value_template=f"{{{{ value_json.{e.key} }}}}",
            availability_topic=avail, payload_available="online", payload_not_available="offline",
        )  # fmt: skip
    optional = {
        "unit_of_measurement": e.unit, "device_class": e.device_class, "state_class": e.state_class,
        "icon": e.icon, "entity_category": "diagnostic" if e.diagnostic else None,
        "suggested_display_precision": e.precision,
    }  # fmt: skip
    c.update({k: v for k, v in optional.items() if v is not None})
    return config_topic(prefix, fleet, device, e), orjson.dumps(c)


def configs(prefix: str, d: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Every discovery config of one device (a row of ``Store.devices()``)."""
    return [config(prefix, d, e) for e in ENTITIES]


def availability(d: dict[str, Any]) -> bytes:
    """``offline`` after the device's Will or clean stop, else ``online``."""
    return b"offline" if d["status"] == "offline" else b"online"


def state(d: dict[str, Any]) -> bytes:
    """The state JSON from the device's latest window: p95, throughput, errors, cache hit
    rate (percent of that window's inferences), model version, temperature."""
    n = d["inferences"] or 0
    values = {
        "latency_p95_ms": _round(d["latency_p95"], 3),
        "throughput_per_s": _round(d["throughput"], 2),
        "errors": d["errors"],
        "cache_hit_rate": round(100.0 * (d["cache_hits"] or 0) / n, 2) if n else None,
        "model_version": d["model_version"] or None,
        "temperature_c": _round(d["temperature_c"], 1),
    }
    return orjson.dumps(values, option=orjson.OPT_SORT_KEYS)


def _round(v: Any, digits: int) -> float | None:
    return None if v is None else round(float(v), digits)


def removal(prefix: str, fleet: str, device: str) -> list[str]:
    """The retained topics to clear (empty payload) when a device leaves the fleet."""
    return [
        *(config_topic(prefix, fleet, device, e) for e in ENTITIES),
        state_topic(fleet, device),
        availability_topic(fleet, device),
    ]


class Mirror:
    """What the collector last published per topic, so it sends only what changed."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self._sent: dict[str, bytes] = {}
        self._devices: dict[tuple[str, str], list[str]] = {}

    def updates(self, devices: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
        """(topic, retained payload) to publish so Home Assistant matches ``devices``.

        A device that left the store (``edge fleet retire``) is forgotten: retire clears
        its topics, and if it reports again it is configured afresh."""
        out: list[tuple[str, bytes]] = []
        seen = set()
        for d in devices:
            key = (d["fleet"], d["device"])
            seen.add(key)
            msgs = [*configs(self.prefix, d), (state_topic(*key), state(d)),
                    (availability_topic(*key), availability(d))]  # fmt: skip
            self._devices[key] = [t for t, _ in msgs]
            out += [(t, p) for t, p in msgs if self._sent.get(t) != p]
        for key in set(self._devices) - seen:
            for t in self._devices.pop(key):
                self._sent.pop(t, None)
        return out

    def sent(self, topic: str, payload: bytes) -> None:
        """Record what the broker accepted on ``topic``, so :meth:`updates` skips it until it changes."""
        self._sent[topic] = payload
