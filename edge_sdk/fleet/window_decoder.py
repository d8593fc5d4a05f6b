"""Telemetry payload → validated row values in one C pass (msgspec), for the collector.

The rules are :mod:`device_agent.protocol.messages`' (the struct below is built from
its ``WINDOW_KINDS``); msgspec only runs them faster. Anything it refuses goes through
the reference path (orjson and the Python checks), which either accepts it — msgspec is
stricter in a few corners, such as ``1.0`` for an integer — or raises the
:class:`MessageError` that names the field, so a device sees the same errors either way.
Then both paths apply the same cross-field rules (``check_window``: percentiles in order,
counts that add up, end after start) and the receiver's clock (``check_window_end``).
"""

from __future__ import annotations

import math
import operator
from typing import Annotated, Any, Literal

import msgspec
import orjson

from device_agent.protocol.messages import (
    LIMIT,
    VERSION,
    WINDOW_FIELDS,
    WINDOW_KINDS,
    MessageError,
    TelemetryWindow,
    check_envelope,
    check_window,
    check_window_end,
    window_exits,
    window_values,
)

_Count = Annotated[int, msgspec.Meta(ge=0, le=LIMIT - 1)]
_TYPES: dict[str, Any] = {
    "count": _Count,
    "num": Annotated[float, msgspec.Meta(gt=-float(LIMIT), lt=float(LIMIT))],
    "amount": Annotated[float, msgspec.Meta(ge=0.0, lt=float(LIMIT))],
    "str": Annotated[str, msgspec.Meta(max_length=256)],
}


def _field(name: str, kind: str, default: Any) -> tuple[Any, ...]:
    if default is ...:
        return (name, _TYPES[kind])
    return (name, _TYPES[kind] | None, None)  # null and absent both mean the default


_Window = msgspec.defstruct(
    "_Window",
    [
        ("v", Literal[VERSION]),
        ("type", Literal["telemetry"]),
        *[_field(k, kind, d) for k, (kind, d) in WINDOW_KINDS.items()],
        ("exits", Annotated[dict[str, _Count], msgspec.Meta(max_length=32)] | None, None),
    ],
)
_decoder = msgspec.json.Decoder(_Window)
_values = operator.attrgetter(*WINDOW_FIELDS)
_DEFAULT_AT = tuple(
    (i, d) for i, (_, d) in enumerate(WINDOW_KINDS.values()) if d is not ... and d is not None
)
_END_AT = WINDOW_FIELDS.index("end")
_RULE_VALUES = operator.itemgetter(*(WINDOW_FIELDS.index(k) for k in (
    "start", "end", "latency_p50", "latency_p95", "latency_p99", "inferences", "cache_hits"
)))  # fmt: skip
_STR_AT = tuple(i for i, (kind, _) in enumerate(WINDOW_KINDS.values()) if kind == "str")


def decode_window(payload: bytes, *, not_after: float = math.inf) -> tuple[list[Any], dict[str, int]]:
    """(values in ``WINDOW_FIELDS`` order, exits) of a telemetry payload, or MessageError;
    a window ending after ``not_after`` (the receiver's clock plus its skew allowance) too."""
    try:
        w = _decoder.decode(payload)
    except Exception:  # refused, or a corner msgspec handles differently: the reference decides
        return _checked(*_reference(payload), not_after)
    vals = list(_values(w))
    for i, default in _DEFAULT_AT:
        if vals[i] is None:
            vals[i] = default
    if any("\x00" in vals[i] for i in _STR_AT):
        return _checked(*_reference(payload), not_after)  # raises, naming the field
    exits = w.exits or {}  # type: ignore[attr-defined]  # a defstruct field
    # The cross-field rules in one expression (the common case); any failure goes
    # through check_window, which names the rule.
    start, end, p50, p95, p99, inferences, hits = _RULE_VALUES(vals)
    if start <= end <= not_after and p50 <= p95 <= p99 and hits <= inferences >= sum(exits.values()):
        return vals, exits
    return _checked(vals, exits, not_after)


def _checked(vals: list[Any], exits: dict[str, int], not_after: float) -> tuple[list[Any], dict[str, int]]:
    check_window(vals, exits)
    check_window_end(vals[_END_AT], not_after)
    return vals, exits


def _reference(payload: bytes) -> tuple[list[Any], dict[str, int]]:
    o = check_envelope(loads(payload), TelemetryWindow.TYPE)
    return window_values(o), window_exits(o)


def loads(payload: bytes) -> Any:
    """JSON → Python with orjson: strict (no NaN or Infinity, no float that overflows;
    nesting capped, never a crash)."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise MessageError(f"payload: expected a JSON object, found invalid JSON ({e})") from None
