"""Typed, versioned MQTT messages (DESIGN.md: JSON payloads, ``to_payload``/``from_payload``).

Every payload is a JSON object with ``"v"`` (schema version) and ``"type"``. Parsing is
hostile-input code: the collector receives bytes from any client the broker lets in,
so every field is type-checked and a bad payload raises :class:`MessageError` naming
the field, what was expected and what was found.
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, ClassVar, TypeVar

from device_agent.errors import EdgeError

VERSION = 1
MAX_PAYLOAD = 64 * 1024  # bytes; a telemetry window is well under 1 KiB
LIMIT = 2**63  # |number| must stay below: the databases bind integers as 64-bit


class MessageError(EdgeError):
    """A payload that is not valid JSON, has the wrong version/type, or a bad field.

    ``reason`` is one of ``malformed``, ``oversized``, ``version`` (for counters).
    """

    def __init__(self, message: str, reason: str = "malformed"):
        super().__init__(message)
        self.reason = reason


class Status(str, Enum):
    ONLINE = "online"
    OFFLINE = "offline"


class DeployPhase(str, Enum):
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    HEALTH_CHECK = "health-check"
    ACTIVE = "active"
    PROBATION_PASSED = "probation-passed"  # after active: the new model did not regress
    ROLLED_BACK = "rolled-back"
    REJECTED = "rejected"


class AlertKind(str, Enum):
    OFFLINE = "offline"
    LATENCY_REGRESSION = "latency-regression"
    ERROR_REGRESSION = "error-regression"
    TELEMETRY_GAP = "telemetry-gap"
    OUTBOX_DROPS = "outbox-drops"
    ROLLOUT_FAILED = "rollout-failed"


class Severity(str, Enum):
    WARNING = "warning"
    CRITICAL = "critical"


def _decode(payload: bytes | str, type_: str) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD:
        raise MessageError(
            f"payload: expected at most {MAX_PAYLOAD} bytes, found {len(payload)}", "oversized"
        )
    try:
        obj = json.loads(payload)
    # A payload nested a few thousand levels deep exhausts the parser's recursion limit.
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise MessageError(f"payload: expected a JSON object, found invalid JSON ({e})") from None
    return check_envelope(obj, type_)


def check_envelope(obj: Any, type_: str) -> dict[str, Any]:
    """``obj`` (a decoded payload) if it is a JSON object of schema ``VERSION`` and ``type_``."""
    if type(obj) is not dict:
        raise MessageError(f"payload: expected a JSON object, found {type(obj).__name__}")
    if obj.get("v") != VERSION or type(obj.get("v")) is not int:
        raise MessageError(
            f"v: expected schema version {VERSION}, found {obj.get('v')!r}", "version"
        )
    if obj.get("type") != type_:
        raise MessageError(f"type: expected {type_!r}, found {obj.get('type')!r}")
    return obj


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if key not in obj or obj[key] is None:
        if default is ...:
            raise MessageError(f"{key}: expected a value, found nothing")
        return default
    value = obj[key]
    # bool is an int subclass; a flag is never a count or a measurement.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise MessageError(f"{key}: expected {_names(kind)}, found bool")
    if not isinstance(value, kind):
        raise MessageError(f"{key}: expected {_names(kind)}, found {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise MessageError(f"{key}: expected a finite number, found {value}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) >= LIMIT:
        raise MessageError(f"{key}: expected a number of magnitude below 2**63, found {value}")
    if isinstance(value, str) and len(value) > 256:
        raise MessageError(f"{key}: expected at most 256 characters, found {len(value)}")
    if isinstance(value, str) and not storable(value):
        raise MessageError(f"{key}: expected text without NUL or lone surrogates, found {value!r}")
    return value


def storable(s: str) -> bool:
    """Text both databases can store: PostgreSQL refuses NUL in text, and a lone surrogate
    (which JSON escapes can carry) cannot be encoded as UTF-8 at all."""
    if "\x00" in s:
        return False
    if s.isascii():
        return True
    try:
        s.encode()
    except UnicodeEncodeError:
        return False
    return True


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _count(obj: dict[str, Any], key: str, default: Any = ...) -> Any:
    value = _get(obj, key, int, default)
    if value is not None and value < 0:
        raise MessageError(f"{key}: expected a count >= 0, found {value}")
    return value


def _num(obj: dict[str, Any], key: str, default: Any = ...) -> float | None:
    value = _get(obj, key, (int, float), default)
    return None if value is None else float(value)


def _enum(obj: dict[str, Any], key: str, enum: type[Enum]) -> Any:
    raw = _get(obj, key, str)
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum)  # type: ignore[attr-defined]
        raise MessageError(f"{key}: expected one of {allowed}, found {raw!r}") from None


def _encode(type_: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"v": VERSION, "type": type_, **body}, separators=(",", ":")).encode()


M = TypeVar("M")


@dataclass(frozen=True, kw_only=True)
class State:
    """Retained device state: birth (``online``) or ``offline`` (Will or clean stop)."""

    TYPE: ClassVar[str] = "state"
    status: Status
    boot_id: str
    ts: float
    agent_version: str = ""
    model_name: str = ""
    model_version: str = ""
    model_hash: str = ""
    accelerator: str = ""  # what runs the model: cpu, xnnpack, cuda, tensorrt, delegate:NAME
    clean: bool = False  # offline published by the agent itself (not the Will)

    def to_payload(self) -> bytes:
        d = asdict(self)
        d["status"] = self.status.value
        return _encode(self.TYPE, d)

    @classmethod
    def from_payload(cls, payload: bytes | str) -> State:
        o = _decode(payload, cls.TYPE)
        return cls(
            status=_enum(o, "status", Status),
            boot_id=_get(o, "boot_id", str),
            ts=float(_num(o, "ts") or 0.0),
            agent_version=_get(o, "agent_version", str, ""),
            model_name=_get(o, "model_name", str, ""),
            model_version=_get(o, "model_version", str, ""),
            model_hash=_get(o, "model_hash", str, ""),
            accelerator=_get(o, "accelerator", str, ""),
            clean=_get(o, "clean", bool, False),
        )


@dataclass(frozen=True, kw_only=True)
class TelemetryWindow:
    """One window of metrics. ``(device, boot_id, seq)`` identifies it for deduplication.

    ``dropped`` counts windows the device's outbox discarded (cap reached) since the
    last window that made it out, so a loss is always visible to the fleet.
    """

    TYPE: ClassVar[str] = "telemetry"
    seq: int
    boot_id: str
    start: float
    end: float
    inferences: int = 0
    errors: int = 0
    throughput: float = 0.0
    latency_p50: float = 0.0
    latency_p95: float = 0.0
    latency_p99: float = 0.0
    cache_hits: int = 0
    exits: dict[str, int] = field(default_factory=dict)
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    temperature_c: float | None = None
    dropped: int = 0
    model_version: str = ""

    def to_payload(self) -> bytes:
        return _encode(self.TYPE, asdict(self))

    @classmethod
    def from_payload(cls, payload: bytes | str) -> TelemetryWindow:
        o = _decode(payload, cls.TYPE)
        f = dict(zip(WINDOW_FIELDS, window_values(o), strict=True))
        for key in _NUM_KEYS:
            if f[key] is not None:
                f[key] = float(f[key])
        return cls(**f, exits=window_exits(o))


class _Kind(Enum):
    COUNT = "count"
    NUM = "num"
    STR = "str"


# TelemetryWindow fields (all but exits): kind and default (... = required). Checked in
# one tight loop because the collector parses every window of the fleet; any failure
# re-checks that field with the precise helpers to name what was wrong.
_WINDOW_SPEC: dict[str, tuple[_Kind, Any]] = {
    "seq": (_Kind.COUNT, ...), "boot_id": (_Kind.STR, ...), "start": (_Kind.NUM, ...),
    "end": (_Kind.NUM, ...), "inferences": (_Kind.COUNT, 0), "errors": (_Kind.COUNT, 0),
    "throughput": (_Kind.NUM, 0.0), "latency_p50": (_Kind.NUM, 0.0),
    "latency_p95": (_Kind.NUM, 0.0), "latency_p99": (_Kind.NUM, 0.0),
    "cache_hits": (_Kind.COUNT, 0), "cpu_percent": (_Kind.NUM, None),
    "rss_bytes": (_Kind.COUNT, None), "temperature_c": (_Kind.NUM, None),
    "dropped": (_Kind.COUNT, 0), "model_version": (_Kind.STR, ""),
}  # fmt: skip
_SLOW = {
    _Kind.COUNT: _count,
    _Kind.NUM: _num,
    _Kind.STR: lambda o, k, d: _get(o, k, str, d),
}
WINDOW_FIELDS = tuple(_WINDOW_SPEC)  # the order of :func:`window_values`
# The same spec for other validators of windows (the collector's compiled decoder):
# field → ("count" | "num" | "str", default; ... when required).
WINDOW_KINDS: dict[str, tuple[str, Any]] = {k: (kind.value, d) for k, (kind, d) in _WINDOW_SPEC.items()}
_NUM_KEYS = tuple(k for k, (kind, _) in _WINDOW_SPEC.items() if kind is _Kind.NUM)
_NONE: type = type(None)
_TYPES: dict[_Kind, set[type]] = {_Kind.COUNT: {int}, _Kind.NUM: {int, float}, _Kind.STR: {str}}
# Exact types (a decoded JSON value is exactly one of them, and bool is not int here).
_ALLOWED = tuple(
    frozenset(_TYPES[kind] | (set() if default is ... else {_NONE}))
    for kind, default in _WINDOW_SPEC.values()
)
# (index, lowest value) of every number; all stay below LIMIT.
_RANGES = tuple(
    (i, 0 if kind is _Kind.COUNT else 1 - LIMIT)
    for i, (kind, _) in enumerate(_WINDOW_SPEC.values())
    if kind is not _Kind.STR
)
_STR_AT = tuple(i for i, (kind, _) in enumerate(_WINDOW_SPEC.values()) if kind is _Kind.STR)
_DEFAULT_AT = tuple(
    (i, d) for i, (_, d) in enumerate(_WINDOW_SPEC.values()) if d is not ... and d is not None
)
_START_AT, _END_AT = WINDOW_FIELDS.index("start"), WINDOW_FIELDS.index("end")


def window_values(o: dict[str, Any]) -> list[Any]:
    """The validated window fields of a decoded payload, in :data:`WINDOW_FIELDS` order.

    The collector runs this for every window of the fleet, so the common case is a
    C-level pass over the types (set lookups) and one loop over the ranges (~2.5 µs);
    any failure re-checks the fields one by one to raise a :class:`MessageError` naming
    the field. Numbers may stay ``int``; defaults fill absent optional fields.
    """
    vals: list[Any] = list(map(o.get, WINDOW_FIELDS))
    if not _plausible(vals):
        f = _fields(o, _WINDOW_SPEC)  # raises MessageError naming the field
        vals = [f[k] for k in WINDOW_FIELDS]
    for i, default in _DEFAULT_AT:
        if vals[i] is None:
            vals[i] = default
    if vals[_END_AT] < vals[_START_AT]:
        raise MessageError(f"end: expected >= start ({vals[_START_AT]}), found {vals[_END_AT]}")
    return vals


def _plausible(vals: list[Any]) -> bool:
    if not all(map(operator.contains, _ALLOWED, map(type, vals))):
        return False
    for i, lowest in _RANGES:
        v = vals[i]  # NaN fails both comparisons, ±inf one
        if v is not None and not lowest <= v < LIMIT:
            return False
    return all(vals[i] is None or (len(vals[i]) <= 256 and storable(vals[i])) for i in _STR_AT)


def _fields(o: dict[str, Any], spec: dict[str, tuple[_Kind, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (kind, default) in spec.items():
        out[key] = _SLOW[kind](o, key, default)
    return out


def window_exits(o: dict[str, Any]) -> dict[str, int]:
    """The validated ``exits`` (stage → count) of a decoded telemetry payload."""
    raw = o.get("exits")
    if (
        type(raw) is dict
        and len(raw) <= 32
        and all(type(v) is int and 0 <= v < LIMIT for v in raw.values())
    ):
        return raw  # keys of a decoded JSON object are always str
    raw = _get(o, "exits", dict, {})
    if len(raw) > 32:
        raise MessageError(f"exits: expected at most 32 stages, found {len(raw)}")
    return {str(k): _count(raw, k) for k in raw}


@dataclass(frozen=True, kw_only=True)
class DeployStatus:
    """A device's progress on one rollout (``deploy/status``)."""

    TYPE: ClassVar[str] = "deploy_status"
    rollout_id: str
    version: str
    phase: DeployPhase
    ts: float
    reason: str = ""
    boot_id: str = ""

    def to_payload(self) -> bytes:
        d = asdict(self)
        d["phase"] = self.phase.value
        return _encode(self.TYPE, d)

    @classmethod
    def from_payload(cls, payload: bytes | str) -> DeployStatus:
        o = _decode(payload, cls.TYPE)
        return cls(
            rollout_id=_get(o, "rollout_id", str),
            version=_get(o, "version", str),
            phase=_enum(o, "phase", DeployPhase),
            ts=float(_num(o, "ts") or 0.0),
            reason=_get(o, "reason", str, ""),
            boot_id=_get(o, "boot_id", str, ""),
        )


@dataclass(frozen=True, kw_only=True)
class Alert:
    """Something an operator should look at, raised by the fleet rules."""

    TYPE: ClassVar[str] = "alert"
    fleet: str
    device: str
    kind: AlertKind
    severity: Severity
    message: str
    ts: float
    value: float | None = None
    baseline: float | None = None

    def to_payload(self) -> bytes:
        d = asdict(self)
        d["kind"], d["severity"] = self.kind.value, self.severity.value
        return _encode(self.TYPE, d)

    @classmethod
    def from_payload(cls, payload: bytes | str) -> Alert:
        o = _decode(payload, cls.TYPE)
        return cls(
            fleet=_get(o, "fleet", str),
            device=_get(o, "device", str),
            kind=_enum(o, "kind", AlertKind),
            severity=_enum(o, "severity", Severity),
            message=_get(o, "message", str),
            ts=float(_num(o, "ts") or 0.0),
            value=_num(o, "value", None),
            baseline=_num(o, "baseline", None),
        )
