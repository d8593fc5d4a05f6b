"""Topics and messages: the MQTT contract, parsed as hostile input."""

from __future__ import annotations

import json

import pytest

from device_agent.errors import EdgeError
from device_agent.protocol import topics
from device_agent.protocol.messages import (
    MAX_PAYLOAD,
    WINDOW_FIELDS,
    Alert,
    AlertKind,
    DeployPhase,
    DeployStatus,
    MessageError,
    Severity,
    State,
    Status,
    TelemetryWindow,
    window_values,
)

WINDOW = TelemetryWindow(
    seq=3,
    boot_id="b1",
    start=10.0,
    end=20.0,
    inferences=7,
    errors=1,
    throughput=0.7,
    latency_p50=1.5,
    latency_p95=2.5,
    latency_p99=3.0,
    cache_hits=2,
    exits={"0": 5, "1": 2},
    cpu_percent=12.5,
    rss_bytes=1000,
    temperature_c=None,
    dropped=4,
    model_version="1.2.0",
)


@pytest.mark.parametrize(
    "msg",
    [
        WINDOW,
        State(
            status=Status.ONLINE,
            boot_id="b",
            ts=1.0,
            agent_version="0.1.0",
            model_name="m",
            model_version="1.0.0",
            model_hash="ab",
        ),
        State(status=Status.OFFLINE, boot_id="b", ts=2.0, booted=1.0, clean=True),
        State(status=Status.OFFLINE, boot_id="b", ts=None, booted=1.0),  # a Will
        DeployStatus(
            rollout="r1",
            version="1.0.1",
            status=DeployPhase.ROLLED_BACK,
            ts=3.0,
            reason="health check failed",
        ),
        Alert(
            fleet="lab",
            device="pi-01",
            kind=AlertKind.TELEMETRY_GAP,
            severity=Severity.WARNING,
            message="gap",
            ts=4.0,
            value=2.0,
        ),
    ],
)
def test_round_trip(msg: object) -> None:
    assert type(msg).from_payload(msg.to_payload()) == msg  # type: ignore[attr-defined]


def test_state_is_version_2_and_version_1_is_still_read() -> None:
    will = State(status=Status.OFFLINE, boot_id="b", ts=None, booted=5.0)
    assert json.loads(will.to_payload())["v"] == 2 and json.loads(will.to_payload())["ts"] is None
    assert will.order_ts == 5.0
    old = b'{"v":1,"type":"state","status":"offline","boot_id":"b","ts":7.5,"clean":false}'
    parsed = State.from_payload(old)
    assert (parsed.ts, parsed.booted, parsed.order_ts) == (7.5, 7.5, 7.5)
    with pytest.raises(MessageError) as e:
        State.from_payload(old.replace(b'"v":1', b'"v":3'))
    assert (e.value.reason, str(e.value)) == ("version", "v: expected schema version 1 or 2, found 3")


def _with(**changes: object) -> bytes:
    d = json.loads(WINDOW.to_payload())
    d.update(changes)
    return json.dumps(d).encode()


@pytest.mark.parametrize(
    ("payload", "reason", "field"),
    [
        (b"{not json", "malformed", "payload"),
        (b"[1, 2]", "malformed", "payload"),
        (_with(v=2), "version", "v:"),
        (_with(v=None), "version", "v:"),
        (_with(type="state"), "malformed", "type:"),
        (_with(seq=-1), "malformed", "seq:"),
        (_with(seq="3"), "malformed", "seq:"),
        (_with(seq=True), "malformed", "seq:"),
        (_with(boot_id=None), "malformed", "boot_id:"),
        (_with(end=5.0), "window", "end:"),
        (_with(exits={"0": -1}), "malformed", "0:"),
        (_with(latency_p95="fast"), "malformed", "latency_p95:"),
        (
            b'{"v":1,"type":"telemetry","seq":1,"boot_id":"b","start":1,"end":NaN}',
            "malformed",
            "end",
        ),
        (b"x" * (MAX_PAYLOAD + 1), "oversized", "payload"),
        (_with(seq=2**63), "malformed", "seq:"),
        (_with(rss_bytes=2**64), "malformed", "rss_bytes:"),
        (_with(latency_p50=10**400), "malformed", "latency_p50:"),
        (_with(cpu_percent=-1e300), "malformed", "cpu_percent:"),
        (_with(model_version="v" * 257), "malformed", "model_version:"),
        (_with(exits={str(i): 1 for i in range(33)}), "malformed", "exits:"),
        (b"[" * 60000, "malformed", "payload"),
    ],
)
def test_bad_payloads_name_the_field(payload: bytes, reason: str, field: str) -> None:
    with pytest.raises(MessageError) as e:
        TelemetryWindow.from_payload(payload)
    assert e.value.reason == reason
    assert str(e.value).startswith(field)


def test_topics_are_built_in_one_place() -> None:
    assert topics.telemetry("lab", "pi-01") == "edge/v1/lab/pi-01/telemetry"
    assert topics.deploy_status("lab", "pi-01") == "edge/v1/lab/pi-01/deploy/status"
    assert topics.alerts("lab") == "edge/v1/lab/alerts"
    assert topics.shared(topics.fleet_filter(), "g1") == "$share/g1/edge/v1/+/+/#"
    p = topics.parse("edge/v1/lab/pi-01/deploy/status")
    assert p is not None and (p.fleet, p.device, p.kind) == (
        "lab",
        "pi-01",
        topics.Kind.DEPLOY_STATUS,
    )
    for bad in ("edge/v1/lab/pi-01/other", "edge/v2/lab/pi-01/state", "edge/v1/l+b/pi/state"):
        assert topics.parse(bad) is None


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "pi 01", "x" * 65, "pi.01"])
def test_ids_cannot_inject_topic_levels(bad: str) -> None:
    with pytest.raises(EdgeError, match="device id"):
        topics.state("lab", bad)


def test_window_values_fill_defaults_and_keep_field_order() -> None:
    o = json.loads(_with(cpu_percent=None, rss_bytes=None, dropped=None, model_version=None))
    del o["errors"]
    vals = dict(zip(WINDOW_FIELDS, window_values(o), strict=True))
    assert vals["errors"] == 0 and vals["dropped"] == 0 and vals["model_version"] == ""
    assert vals["cpu_percent"] is None and vals["rss_bytes"] is None
    assert vals["seq"] == WINDOW.seq and vals["boot_id"] == WINDOW.boot_id
    w = TelemetryWindow.from_payload(json.dumps(o))
    assert isinstance(w.latency_p50, float) and w.errors == 0
