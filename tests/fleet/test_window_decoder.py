"""The collector's compiled window decoder agrees with the reference rules in messages.py
on every payload: the same values, or the same error naming the same field."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from device_agent.telemetry.messages import WINDOW_KINDS, MessageError, check_envelope, window_exits, window_values
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
        return window_values(o), window_exits(o)
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
