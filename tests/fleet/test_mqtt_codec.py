"""The collector's MQTT 3.1.1 codec: pure, so tested on bytes (and against Mosquitto in
test_collector.py / test_reliability.py through the collector)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sdk.fleet import mqtt_codec as codec
from edge_sdk.fleet.mqtt_codec import ConnAck, Decoder, PingResp, ProtocolError, PubAck, Publish, SubAck

topics_ = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=40)
publishes = st.builds(
    lambda t, p, q, m, r: Publish(t, p, q, m if q else 0, r),
    topics_, st.binary(max_size=3000), st.sampled_from([0, 1]),
    st.integers(1, 0xFFFF), st.booleans(),
)  # fmt: skip


def encode(p: Publish) -> bytes:
    return codec.publish(p.topic, p.payload, qos=p.qos, mid=p.mid, retain=p.retain)


@settings(max_examples=200, deadline=None)
@given(st.lists(publishes, min_size=1, max_size=12), st.lists(st.integers(1, 4000), max_size=20))
def test_any_split_of_a_stream_decodes_to_the_same_packets(msgs: list[Publish], cuts: list[int]) -> None:
    stream = b"".join(map(encode, msgs)) + b"\x90\x03\x00\x07\x01" + b"\xd0\x00"
    d, out, i = Decoder(), [], 0
    for n in [*cuts, len(stream)]:
        out += d.feed(stream[i : i + n])
        i += n
    out += d.feed(stream[i:])
    assert out == [*msgs, SubAck(7, (1,)), PingResp()]


def test_remaining_length_boundaries() -> None:
    for size in (0, 127 - 7, 128 - 7, 16383 - 7, 16384 - 7, 2_097_152):
        p = Publish("a/b", b"x" * size, 1, 9, False)
        wire = encode(p)
        assert Decoder(max_packet=1 << 22).feed(wire) == [p]
        assert Decoder(max_packet=1 << 22).feed(wire[:-1]) == []


def test_oversized_publish_is_reported_and_its_body_skipped_across_feeds() -> None:
    big = Publish("edge/v1/f/d/telemetry", b"y" * 5000, 1, 42, False)
    small = Publish("edge/v1/f/d/state", b"{}", 1, 43, True)
    wire = encode(big) + encode(small)
    d = Decoder(max_packet=1000)
    got = d.feed(wire[:30]) + d.feed(wire[30:2000]) + d.feed(wire[2000:4000]) + d.feed(wire[4000:])
    assert got == [big._replace(payload=b"", oversize=5000), small]


def test_control_packets_and_connack_codes() -> None:
    assert Decoder().feed(b"\x20\x02\x01\x00") == [ConnAck(True, 0)]
    assert Decoder().feed(b"\x20\x02\x00\x05") == [ConnAck(False, 5)]
    assert Decoder().feed(b"\x40\x02\x12\x34") == [PubAck(0x1234)]
    assert codec.CONNACK_REASONS[4] == "bad user name or password"


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "more than 4 bytes"),
        (b"\x36\x05\x00\x01a\x00\x01", "QoS 3"),
        (b"\x30\x03\x00\x09a", "topic longer than the packet"),
        (b"\x10\x00", "unexpected packet type 1"),
        (b"\x20\x03\x00\x00\x00", "unexpected packet type 2"),
    ],
)
def test_malformed_input_raises_protocol_error(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        Decoder().feed(wire)


def test_a_topic_that_is_not_utf8_decodes_to_empty() -> None:
    wire = b"\x32\x07\x00\x02\xff\xfe\x00\x05!"
    assert Decoder().feed(wire) == [Publish("", b"!", 1, 5, False)]


def test_encoders() -> None:
    assert codec.connect("c", clean_session=False, keepalive=30, username="u", password="p") == (
        b"\x10\x13\x00\x04MQTT\x04\xc0\x00\x1e\x00\x01c\x00\x01u\x00\x01p"
    )
    assert codec.subscribe(1, "a/#", 1) == b"\x82\x08\x00\x01\x00\x03a/#\x01"
    assert codec.pubacks([1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"
    assert codec.publish("t", b"x", qos=1, mid=2, dup=True) == b"\x3a\x06\x00\x01t\x00\x02x"


@pytest.mark.parametrize("wire", [b"\x30\x01\x00", b"\x32\x03\x00\x01a"])
def test_publish_too_short_for_its_header_is_a_protocol_error(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        Decoder().feed(wire)
