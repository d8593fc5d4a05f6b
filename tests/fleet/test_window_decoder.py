"""The collector's compiled window decoder agrees with the reference rules in messages.py
on every payload: the same values, or the same error naming the same field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from device_agent.protocol.messages import (
    WINDOW_KINDS,
    MessageError,
    TelemetryWindow,
    check_envelope,
    check_window,
    window_exits,
    window_values,
)
from edge_sdk.fleet.window_decoder import decode_window, loads

values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.integers(0, 10**6),
    st.floats(allow_nan=False, allow_infinity=False), st.floats(-1e3, 1e3),
    st.text(max_size=300), st.text(max_size=5), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(-5, 2**64), max_size=40),
)  # fmt: skip
good = {"v": 1, "type": "telemetry", "seq": 3, "boot_id": "b", "start": 1.0, "end": 2.0,
        "exits": {"0": 5, "1": 2}, "inferences": 7}  # fmt: skip
keys = st.sampled_from([*WINDOW_KINDS, "exits", "v", "type", "extra"])


def reference(payload: bytes) -> Any:
    try:
        o = check_envelope(loads(payload), "telemetry")
        vals, exits = window_values(o), window_exits(o)
        check_window(vals, exits)
        return vals, exits
    except MessageError as e:
        return ("error", str(e))


def fast(payload: bytes) -> Any:
    try:
        return decode_window(payload)
    except MessageError as e:
        return ("error", str(e))


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(keys, values, max_size=6), st.sets(keys, max_size=3))
@example({"v": True}, set())
@example({"seq": 1.0}, set())
@example({"end": 0.5}, set())
@example({"latency_p95": -1.0}, set())
@example({"latency_p50": 3.0, "latency_p95": 2.0, "latency_p99": 5}, set())
@example({"inferences": 6}, set())
@example({"cache_hits": 8}, set())
@example({"cpu_percent": -0.5, "seq": -1}, set())
@example({"exits": {str(i): 1 for i in range(33)}}, set())
@example({"start": 2**63}, set())
@example({"rss_bytes": 2**63 - 1, "temperature_c": None, "dropped": None}, set())
def test_fast_decoder_matches_the_reference(changes: dict[str, Any], removed: set[str]) -> None:
    obj = {k: v for k, v in {**good, **changes}.items() if k not in removed}
    payload = json.dumps(obj).encode()
    assert fast(payload) == reference(payload)


def test_non_json_payloads_fail_the_same_way() -> None:
    for payload in (b"", b"[" * 60000, b'{"v":1,"start":NaN}', b"\xff", b'{"seq": 1e400}', b"null"):
        assert fast(payload) == reference(payload)
        assert fast(payload)[0] == "error"


IMPOSSIBLE = [
    ({"latency_p50": -0.1}, "negative", "latency_p50: expected a measurement >= 0"),
    ({"throughput": -3}, "negative", "throughput: expected a measurement >= 0"),
    ({"cpu_percent": -1.0}, "negative", "cpu_percent: expected a measurement >= 0"),
    ({"latency_p50": 2.0, "latency_p95": 1.0, "latency_p99": 3.0}, "percentiles", "latency: expected p50 <= p95"),
    ({"latency_p95": 4.0, "latency_p99": 3.0}, "percentiles", "latency: expected p50 <= p95 <= p99"),
    ({"start": 5.0, "end": 4.0}, "window", "end: expected >= start"),
    ({"exits": {"0": 5, "1": 3}}, "counts", "counts: expected exits and cache hits of at most 7"),
    ({"cache_hits": 8}, "counts", "counts: expected exits and cache hits of at most 7"),
    ({"latency_p99": float("inf")}, "malformed", ""),  # invalid JSON or "expected a finite number"
]  # fmt: skip


@pytest.mark.parametrize(("changes", "reason", "message"), IMPOSSIBLE)
def test_impossible_windows_are_refused_by_reason(changes: dict[str, Any], reason: str, message: str) -> None:
    payload = json.dumps({**good, **changes}).encode()  # inf: json writes Infinity, not JSON
    for decode in (decode_window, TelemetryWindow.from_payload):
        with pytest.raises(MessageError) as e:
            decode(payload)
        assert (e.value.reason, str(e.value)[: len(message)]) == (reason, message)


def test_a_window_from_the_future_is_refused_beyond_the_allowed_skew() -> None:
    payload = json.dumps({**good, "start": 1000.0, "end": 1010.0}).encode()
    assert decode_window(payload, not_after=1010.0)[0][3] == 1010.0  # exactly at the limit
    with pytest.raises(MessageError) as e:
        decode_window(payload, not_after=1009.5)
    assert e.value.reason == "future" and str(e.value).startswith("end: expected at most 1009.500")


def test_a_real_window_passes_every_rule() -> None:
    from device_agent.stats import StatsDelta
    from device_agent.telemetry.window import WindowAggregator

    agg = WindowAggregator(boot_id="b", start=10.0)
    agg.add(StatsDelta(5, 1, 2, {0: 3, 1: 2}, [1.0, 2.0, 9.0, 4.0, 3.0]))
    w = agg.close(11.0)
    _, exits = decode_window(w.to_payload(), not_after=11.0)
    assert exits == {"0": 3, "1": 2} and TelemetryWindow.from_payload(w.to_payload()) == w
