"""Typed, versioned MQTT messages (DESIGN.md: JSON payloads, ``to_payload``/``from_payload``).

Every payload is a JSON object with ``"v"`` (schema version) and ``"type"``. Parsing is
hostile-input code: the collector receives bytes from any client the broker lets in,
so every field is type-checked and a bad payload raises :class:`MessageError` naming
the field, what was expected and what was found.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import operator
import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, ClassVar, TypeVar

from device_agent.errors import EdgeError

VERSION = 1  # the schema version of every message that does not declare its own
MAX_PAYLOAD = 64 * 1024  # bytes; a telemetry window is well under 1 KiB
LIMIT = 2**63  # |number| must stay below: the databases bind integers as 64-bit


class MessageError(EdgeError):
    """A payload that is not valid JSON, has the wrong version/type, or a bad field.

    ``reason`` (for counters) is ``malformed``, ``oversized`` or ``version``; for a
    telemetry window whose fields are each well-formed but impossible: ``negative`` (a
    latency, throughput or CPU below zero), ``percentiles`` (not p50 <= p95 <= p99),
    ``window`` (end before start), ``future`` (end past the receiver's clock-skew
    allowance) or ``counts`` (exits or cache hits adding up to more than the inferences).
    """

    def __init__(self, message: str, reason: str = "malformed"):
        super().__init__(message)
        self.reason = reason


class Status(str, Enum):
    """A device's retained state: online or offline."""
    ONLINE = "online"
    OFFLINE = "offline"


class DeployPhase(str, Enum):
    """Where a deployment is on a device (the ``deploy/status`` phases, in order)."""
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    HEALTH_CHECK = "health-check"
    ACTIVE = "active"
    PROBATION_PASSED = "probation-passed"  # after active: the new model did not regress
    ROLLED_BACK = "rolled-back"
    REJECTED = "rejected"


class AlertKind(str, Enum):
    """What an alert is about."""
    OFFLINE = "offline"
    LATENCY_REGRESSION = "latency-regression"
    ERROR_REGRESSION = "error-regression"
    TELEMETRY_GAP = "telemetry-gap"
    OUTBOX_DROPS = "outbox-drops"
    ROLLOUT_FAILED = "rollout-failed"


class Severity(str, Enum):
    """How urgent an alert is."""
    WARNING = "warning"
    CRITICAL = "critical"


def _decode(payload: bytes | str, type_: str, versions: tuple[int, ...] = (VERSION,),
            limit: int = MAX_PAYLOAD) -> dict[str, Any]:
    if len(payload) > limit:
        raise MessageError(
            f"payload: expected at most {limit} bytes, found {len(payload)}", "oversized"
        )
    try:
        obj = json.loads(payload)
    # A payload nested a few thousand levels deep exhausts the parser's recursion limit.
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise MessageError(f"payload: expected a JSON object, found invalid JSON ({e})") from None
    return check_envelope(obj, type_, versions)


def check_envelope(obj: Any, type_: str, versions: tuple[int, ...] = (VERSION,)) -> dict[str, Any]:
    """``obj`` (a decoded payload) if it is a JSON object of type ``type_`` and one of the
    schema ``versions`` the caller reads."""
    if type(obj) is not dict:
        raise MessageError(f"payload: expected a JSON object, found {type(obj).__name__}")
    if obj.get("v") not in versions or type(obj.get("v")) is not int:
        expected = " or ".join(map(str, versions))
        raise MessageError(
            f"v: expected schema version {expected}, found {obj.get('v')!r}", "version"
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


def _amount(obj: dict[str, Any], key: str, default: Any = ...) -> float | None:
    value = _num(obj, key, default)
    if value is not None and value < 0:
        raise MessageError(f"{key}: expected a measurement >= 0, found {value}", "negative")
    return value


def _enum(obj: dict[str, Any], key: str, enum: type[Enum]) -> Any:
    raw = _get(obj, key, str)
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum)  # type: ignore[attr-defined]
        raise MessageError(f"{key}: expected one of {allowed}, found {raw!r}") from None


def _encode(type_: str, body: dict[str, Any], version: int = VERSION) -> bytes:
    return json.dumps({"v": version, "type": type_, **body}, separators=(",", ":")).encode()


M = TypeVar("M")


@dataclass(frozen=True, kw_only=True)
class State:
    """Retained device state: birth (``online``) or ``offline`` (Will or clean stop).

    Schema version 2: ``ts`` is when the agent published this state itself, and ``None``
    in the Will, which the agent writes when it connects and the broker publishes once it
    notices the loss: no time in it would be the time of death, only its arrival is.
    ``booted`` (when this boot began) orders the states of different boots. Version 1
    (``ts`` always set, the Will's being its connect time, no ``booted``) is still read.
    """

    TYPE: ClassVar[str] = "state"
    VERSION: ClassVar[int] = 2
    status: Status
    boot_id: str
    ts: float | None
    booted: float = 0.0
    agent_version: str = ""
    model_name: str = ""
    model_version: str = ""
    model_hash: str = ""
    accelerator: str = ""  # what runs the model: cpu, xnnpack, cuda, tensorrt, delegate:NAME
    clean: bool = False  # offline published by the agent itself (not the Will)

    @property
    def order_ts(self) -> float:
        """What orders this state against another boot's: ``ts``, or for a Will ``booted``."""
        return self.booted if self.ts is None else self.ts

    def to_payload(self) -> bytes:
        """The JSON payload (versioned envelope)."""
        d = asdict(self)
        d["status"] = self.status.value
        return _encode(self.TYPE, d, self.VERSION)

    @classmethod
    def from_payload(cls, payload: bytes | str) -> State:
        """Parse and check a state payload."""
        o = _decode(payload, cls.TYPE, (1, cls.VERSION))
        ts: float | None
        if o["v"] == 1:  # no booted: a v1 Will's ts (its connect time) is the nearest
            ts = booted = float(_num(o, "ts") or 0.0)
        else:
            ts, booted = _num(o, "ts", None), float(_num(o, "booted", 0.0) or 0.0)
        return cls(
            status=_enum(o, "status", Status),
            boot_id=_get(o, "boot_id", str),
            ts=ts,
            booted=booted,
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
        """The JSON payload (versioned envelope)."""
        return _encode(self.TYPE, asdict(self))

    @classmethod
    def from_payload(cls, payload: bytes | str) -> TelemetryWindow:
        """Parse and check a telemetry window (hostile input)."""
        o = _decode(payload, cls.TYPE)
        vals, exits = window_values(o), window_exits(o)
        check_window(vals, exits)
        f = dict(zip(WINDOW_FIELDS, vals, strict=True))
        for key in _NUM_KEYS:
            if f[key] is not None:
                f[key] = float(f[key])
        return cls(**f, exits=exits)


class _Kind(Enum):
    COUNT = "count"  # an integer >= 0
    NUM = "num"  # any finite number
    AMOUNT = "amount"  # a finite number >= 0 (a duration, a rate, a share of CPU)
    STR = "str"


# TelemetryWindow fields (all but exits): kind and default (... = required). Checked in
# one tight loop because the collector parses every window of the fleet; any failure
# re-checks that field with the precise helpers to name what was wrong.
_WINDOW_SPEC: dict[str, tuple[_Kind, Any]] = {
    "seq": (_Kind.COUNT, ...), "boot_id": (_Kind.STR, ...), "start": (_Kind.NUM, ...),
    "end": (_Kind.NUM, ...), "inferences": (_Kind.COUNT, 0), "errors": (_Kind.COUNT, 0),
    "throughput": (_Kind.AMOUNT, 0.0), "latency_p50": (_Kind.AMOUNT, 0.0),
    "latency_p95": (_Kind.AMOUNT, 0.0), "latency_p99": (_Kind.AMOUNT, 0.0),
    "cache_hits": (_Kind.COUNT, 0), "cpu_percent": (_Kind.AMOUNT, None),
    "rss_bytes": (_Kind.COUNT, None), "temperature_c": (_Kind.NUM, None),
    "dropped": (_Kind.COUNT, 0), "model_version": (_Kind.STR, ""),
}  # fmt: skip
_SLOW = {
    _Kind.COUNT: _count,
    _Kind.NUM: _num,
    _Kind.AMOUNT: _amount,
    _Kind.STR: lambda o, k, d: _get(o, k, str, d),
}
WINDOW_FIELDS = tuple(_WINDOW_SPEC)  # the order of :func:`window_values`
# The same spec for other validators of windows (the collector's compiled decoder):
# field → ("count" | "num" | "amount" | "str", default; ... when required).
WINDOW_KINDS: dict[str, tuple[str, Any]] = {k: (kind.value, d) for k, (kind, d) in _WINDOW_SPEC.items()}
_NUM_KEYS = tuple(k for k, (kind, _) in _WINDOW_SPEC.items() if kind in (_Kind.NUM, _Kind.AMOUNT))
_NONE: type = type(None)
_TYPES: dict[_Kind, set[type]] = {
    _Kind.COUNT: {int}, _Kind.NUM: {int, float}, _Kind.AMOUNT: {int, float}, _Kind.STR: {str}
}
# Exact types (a decoded JSON value is exactly one of them, and bool is not int here).
_ALLOWED = tuple(
    frozenset(_TYPES[kind] | (set() if default is ... else {_NONE}))
    for kind, default in _WINDOW_SPEC.values()
)
# (index, lowest value) of every number; all stay below LIMIT.
_RANGES = tuple(
    (i, 1 - LIMIT if kind is _Kind.NUM else 0)
    for i, (kind, _) in enumerate(_WINDOW_SPEC.values())
    if kind is not _Kind.STR
)
_STR_AT = tuple(i for i, (kind, _) in enumerate(_WINDOW_SPEC.values()) if kind is _Kind.STR)
_DEFAULT_AT = tuple(
    (i, d) for i, (_, d) in enumerate(_WINDOW_SPEC.values()) if d is not ... and d is not None
)
_START_AT, _END_AT = WINDOW_FIELDS.index("start"), WINDOW_FIELDS.index("end")
_P50_AT, _P95_AT, _P99_AT = (WINDOW_FIELDS.index(f"latency_p{p}") for p in (50, 95, 99))
_INFERENCES_AT, _HITS_AT = WINDOW_FIELDS.index("inferences"), WINDOW_FIELDS.index("cache_hits")


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
    return vals


def check_window(vals: list[Any], exits: dict[str, int]) -> None:
    """Refuse a window whose fields are each valid but impossible together (``vals`` as
    :func:`window_values` returns them): :class:`MessageError` with the rule as reason."""
    # float(): numbers may still be int here (the reference path keeps them), and an
    # error must read the same whichever path found it.
    start, end = vals[_START_AT], vals[_END_AT]
    if end < start:
        raise MessageError(f"end: expected >= start ({float(start)}), found {float(end)}", "window")
    p50, p95, p99 = vals[_P50_AT], vals[_P95_AT], vals[_P99_AT]
    if not p50 <= p95 <= p99:
        raise MessageError(
            f"latency: expected p50 <= p95 <= p99, found {float(p50)}, {float(p95)}, {float(p99)}",
            "percentiles",
        )
    inferences = vals[_INFERENCES_AT]
    if vals[_HITS_AT] > inferences or (exits and sum(exits.values()) > inferences):
        raise MessageError(
            f"counts: expected exits and cache hits of at most {inferences} inferences, found "
            f"{sum(exits.values())} exits and {vals[_HITS_AT]} cache hits", "counts"
        )  # fmt: skip


def check_window_end(end: float, not_after: float) -> None:
    """Refuse a window that ends after ``not_after`` (the receiver's clock plus the clock
    skew it allows): a device whose clock runs ahead would otherwise sort before every
    real window, and pin the device's ``last window`` in the future."""
    if end > not_after:
        raise MessageError(
            f"end: expected at most {not_after:.3f} (now plus the allowed clock skew), "
            f"found {end}", "future"
        )  # fmt: skip


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
class InferenceResult:
    """One served reading on ``results`` (the agent's ``--sink mqtt``)."""

    TYPE: ClassVar[str] = "result"
    seq: int
    input_id: str
    index: int
    label: str
    confidence: float
    latency_ms: float
    stage: int = 0
    cached: bool = False
    truth: int | None = None

    def to_payload(self) -> bytes:
        """The JSON payload (versioned envelope)."""
        return result_payload(asdict(self))

    @classmethod
    def from_payload(cls, payload: bytes | str) -> InferenceResult:
        """Parse and check a result payload."""
        o = _decode(payload, cls.TYPE)
        return cls(
            seq=_count(o, "seq"),
            input_id=_get(o, "input_id", str),
            index=_get(o, "index", int),
            label=_get(o, "label", str, ""),
            confidence=float(_num(o, "confidence") or 0.0),
            latency_ms=float(_amount(o, "latency_ms") or 0.0),
            stage=_count(o, "stage", 0),
            cached=_get(o, "cached", bool, False),
            truth=_get(o, "truth", int, None),
        )


def result_payload(fields: dict[str, Any]) -> bytes:
    """A ``results`` payload from a result's JSON fields (the sink's per-inference path,
    which builds no :class:`InferenceResult`)."""
    return _encode(InferenceResult.TYPE, fields)


@dataclass(frozen=True)
class DeployStatus:
    """A device's progress on one rollout (``deploy/status``), one class for the device that
    sends it, the host that waits on it and the collector that stores it. On the wire
    ``rollout`` is ``rollout_id`` and ``status`` is ``phase``; ``missing`` lists the chunks
    a download still lacks (how a transfer resumes)."""

    TYPE: ClassVar[str] = "deploy_status"
    rollout: str
    status: DeployPhase
    reason: str = ""
    version: str | None = None
    missing: tuple[int, ...] = ()
    device: str = ""
    ts: float = 0.0  # set by the adapter that publishes it (this module reads no clock)
    boot_id: str = ""  # the agent process's, as in its telemetry; set by the same adapter

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", DeployPhase(self.status))  # a phase's value is accepted too

    def to_payload(self) -> bytes:
        """The JSON payload, the reason cut to the schema's 256 characters."""
        return _encode(self.TYPE, {
            "rollout_id": self.rollout, "version": self.version or "", "phase": self.status.value, "ts": self.ts,
            "reason": _short(self.reason), "boot_id": self.boot_id, "missing": list(self.missing),
            "device": self.device,
        })

    @classmethod
    def from_payload(cls, payload: bytes) -> DeployStatus:
        """Parse once; :class:`MessageError` names a bad field."""
        d = _decode(payload, cls.TYPE)
        missing = _get(d, "missing", list, [])
        if not all(type(i) is int and i >= 0 for i in missing):
            raise MessageError(f"missing: expected chunk indices >= 0, found {missing!r}")
        return cls(_get(d, "rollout_id", str), _enum(d, "phase", DeployPhase), _get(d, "reason", str, ""),
                   _get(d, "version", str, "") or None, tuple(missing), _get(d, "device", str, ""),
                   float(_num(d, "ts", 0.0) or 0.0), _get(d, "boot_id", str, ""))

    @property
    def final(self) -> bool:
        """The update flow is over (``active`` may still be judged by probation)."""
        return self.status in (DeployPhase.ACTIVE, DeployPhase.ROLLED_BACK, DeployPhase.REJECTED)

    @property
    def settled(self) -> bool:
        """Probation is over too: the new model stays, or the device is on its old one."""
        return self.status in (DeployPhase.PROBATION_PASSED, DeployPhase.ROLLED_BACK, DeployPhase.REJECTED)



def _short(reason: str) -> str:
    # The fleet schema caps strings at 256 characters; keep the cause, which comes last.
    return reason if len(reason) <= 256 else "…" + reason[-255:]



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
        """The JSON payload (versioned envelope)."""
        d = asdict(self)
        d["kind"], d["severity"] = self.kind.value, self.severity.value
        return _encode(self.TYPE, d)

    @classmethod
    def from_payload(cls, payload: bytes | str) -> Alert:
        """Parse and check an alert payload."""
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


# ---- benchmark requests (``bench``) and their answers (``bench/result``) ---------------
MAX_BENCH_MODEL = 16 * 1024 * 1024  # bytes of one model a device is asked to time
# base64 grows the model by 4/3; the signed spec and the envelope fit in the 64 KiB left.
MAX_BENCH_PAYLOAD = MAX_BENCH_MODEL * 4 // 3 + 4 + MAX_PAYLOAD
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BENCH_FORMATS = ("tflite", "onnx")


@dataclass(frozen=True, kw_only=True)
class BenchSpec:
    """What a benchmark request asks, and what its signature covers: which device, which
    model (by sha256 and size, so the signature binds the bytes), how many timed runs and
    how long at most. ``ts`` is when the host signed it."""

    TYPE: ClassVar[str] = "bench_spec"
    request_id: str
    fleet: str
    device: str
    format: str  # tflite or onnx: the model file's format
    sha256: str
    size: int
    runs: int = 50
    max_seconds: float = 30.0
    ts: float = 0.0

    def to_bytes(self) -> bytes:
        """The exact bytes the host signs (sent as they are; never re-serialized)."""
        return _encode(self.TYPE, asdict(self))

    @classmethod
    def from_bytes(cls, data: bytes) -> BenchSpec:
        """Parse and check the signed spec (hostile input)."""
        o = _decode(data, cls.TYPE)
        spec = cls(request_id=_get(o, "request_id", str), fleet=_get(o, "fleet", str),
                   device=_get(o, "device", str), format=_get(o, "format", str),
                   sha256=_get(o, "sha256", str), size=_count(o, "size"), runs=_count(o, "runs", 50),
                   max_seconds=float(_amount(o, "max_seconds", 30.0) or 0.0),
                   ts=float(_num(o, "ts", 0.0) or 0.0))
        spec.check()
        return spec

    def check(self) -> None:
        """Raise :class:`MessageError` naming the first field that cannot be right."""
        if not _REQUEST_ID.match(self.request_id):
            raise MessageError(f"request_id: expected [A-Za-z0-9_-]{{1,64}}, found {self.request_id!r}")
        if self.format not in _BENCH_FORMATS:
            raise MessageError(f"format: expected tflite or onnx, found {self.format!r}")
        if not _SHA256.match(self.sha256):
            raise MessageError(f"sha256: expected 64 lowercase hex digits, found {self.sha256!r}")
        if not 0 < self.size <= MAX_BENCH_MODEL:
            raise MessageError(f"size: expected 1 to {MAX_BENCH_MODEL} bytes, found {self.size}", "oversized")
        if self.runs < 1 or self.max_seconds <= 0:
            raise MessageError(f"runs/max_seconds: expected >= 1 and > 0, found {self.runs}/{self.max_seconds}")


@dataclass(frozen=True)
class BenchRequest:
    """A signed benchmark request (``bench``): the spec's exact bytes, an Ed25519 signature
    over them, and the model file, whose sha256 and size the spec names."""

    TYPE: ClassVar[str] = "bench_request"
    spec_bytes: bytes
    signature: bytes
    model: bytes = field(repr=False)

    @property
    def spec(self) -> BenchSpec:
        """The parsed spec (:class:`MessageError` when malformed)."""
        return BenchSpec.from_bytes(self.spec_bytes)

    def check_model(self) -> None:
        """Raise :class:`MessageError` unless the model bytes are the ones the spec names."""
        spec = self.spec
        if len(self.model) != spec.size or hashlib.sha256(self.model).hexdigest() != spec.sha256:
            raise MessageError(f"model: expected {spec.size} bytes with sha256 {spec.sha256[:16]}..., found "
                               f"{len(self.model)} bytes that do not match")

    def to_payload(self) -> bytes:
        """The JSON payload: the spec as text, signature and model in base64."""
        return _encode(self.TYPE, {"spec": self.spec_bytes.decode(),
                                   "signature": base64.b64encode(self.signature).decode(),
                                   "model": base64.b64encode(self.model).decode()})

    @classmethod
    def from_payload(cls, payload: bytes | str) -> BenchRequest:
        """Parse a request (the signature is checked by the receiver, against its keys)."""
        o = _decode(payload, cls.TYPE, limit=MAX_BENCH_PAYLOAD)
        spec = o.get("spec")
        if not isinstance(spec, str) or len(spec) > 4096:
            raise MessageError("spec: expected the signed spec as text of at most 4096 characters")
        return cls(spec.encode(), _base64(o, "signature"), _base64(o, "model"))


def _base64(o: dict[str, Any], key: str) -> bytes:
    raw = o.get(key)
    if not isinstance(raw, str):
        raise MessageError(f"{key}: expected base64 text, found {type(raw).__name__}")
    try:
        return base64.b64decode(raw, validate=True)
    except (ValueError, binascii.Error) as e:
        raise MessageError(f"{key}: expected base64 text, found invalid base64 ({e})") from None


@dataclass(frozen=True, kw_only=True)
class BenchResult:
    """A device's answer on ``bench/result``: latency percentiles of single-sample calls
    timed on its own CPU (``ok``), or why it refused or failed (``error``)."""

    TYPE: ClassVar[str] = "bench_result"
    request_id: str
    device: str
    ok: bool
    error: str = ""
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    runs: int = 0
    runtime: str = ""  # the backend that ran the model (litert, onnxruntime, ...)
    accelerator: str = ""
    load_ms: float = 0.0
    ts: float = 0.0

    def to_payload(self) -> bytes:
        """The JSON payload (versioned envelope); the error cut to 256 characters."""
        return _encode(self.TYPE, {**asdict(self), "error": self.error[:256]})

    @classmethod
    def from_payload(cls, payload: bytes | str) -> BenchResult:
        """Parse and check a result (p50 <= p95 when ``ok``)."""
        o = _decode(payload, cls.TYPE)
        r = cls(request_id=_get(o, "request_id", str), device=_get(o, "device", str), ok=_get(o, "ok", bool),
                error=_get(o, "error", str, ""), p50_ms=float(_amount(o, "p50_ms", 0.0) or 0.0),
                p95_ms=float(_amount(o, "p95_ms", 0.0) or 0.0), runs=_count(o, "runs", 0),
                runtime=_get(o, "runtime", str, ""), accelerator=_get(o, "accelerator", str, ""),
                load_ms=float(_amount(o, "load_ms", 0.0) or 0.0), ts=float(_num(o, "ts", 0.0) or 0.0))
        if r.ok and not (r.runs > 0 and r.p50_ms <= r.p95_ms):
            raise MessageError(f"latency: expected runs > 0 and p50 <= p95, found {r.runs} runs, "
                               f"{r.p50_ms}, {r.p95_ms}", "percentiles")
        return r
