"""MQTT 3.1.1 packets for the collector's subscriber: pure bytes in, bytes out (no IO).

Only what a subscriber that acknowledges after storing needs: CONNECT, SUBSCRIBE, PUBLISH
(QoS 0/1, both ways), PUBACK, PINGREQ and DISCONNECT out; CONNACK, SUBACK, PUBLISH, PUBACK
and PINGRESP in. The decoder is incremental (feed it whatever ``recv`` returned) and
parses a whole buffer of PUBLISH packets in one loop, which is why it exists: paho spends
about 70 µs of CPU per received message on this project's machines, this loop about 3.

A PUBLISH larger than ``max_packet`` is not buffered: its topic and packet id are
reported with ``oversize`` set to its length and the rest of its bytes are skipped as
they arrive, so one huge message can neither exhaust memory nor, by being refused
forever, block a persistent session's queue (it still gets its PUBACK).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14
MAX_REMAINING = 268_435_455  # the largest length the 4-byte varint can carry

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class ProtocolError(Exception):
    """The peer broke the protocol (or refused us); the connection must be dropped."""


class Publish(NamedTuple):
    """One received application message. ``oversize`` > 0: the payload, that many bytes
    long, was over the decoder's ``max_packet`` and was dropped."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    oversize: int = 0


class ConnAck(NamedTuple):
    """The broker's answer to CONNECT; a non-zero ``code`` is a refusal (see ``CONNACK_REASONS``)."""

    session_present: bool
    code: int


class SubAck(NamedTuple):
    """The broker's answer to SUBSCRIBE: the granted QoS per filter, 0x80 for a refused one."""

    mid: int
    codes: tuple[int, ...]


class PubAck(NamedTuple):
    """The broker's acknowledgement of one of our QoS 1 publishes."""

    mid: int


class PingResp(NamedTuple):
    """The broker's answer to PINGREQ: the connection is alive."""

    pass


Packet = Publish | ConnAck | SubAck | PubAck | PingResp


# ---- encoding -------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    if not 0 <= n <= MAX_REMAINING:
        raise ValueError(f"MQTT remaining length {n} out of range")
    out = bytearray()
    while True:
        digit, n = n & 0x7F, n >> 7
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    if len(b) > 0xFFFF:
        raise ValueError(f"MQTT string of {len(b)} bytes over 65535")
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connect(
    client_id: str,
    *,
    clean_session: bool,
    keepalive: int,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """A CONNECT packet (protocol level 4, no Will: a collector has nothing to announce)."""
    flags = (0x02 if clean_session else 0) | (0x80 if username is not None else 0)
    flags |= 0x40 if password is not None else 0
    body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + _str(client_id)
    if username is not None:
        body += _str(username)
    if password is not None:
        body += _str(password)
    return _packet(CONNECT << 4, body)


def subscribe(mid: int, topic_filter: str, qos: int) -> bytes:
    """A SUBSCRIBE packet for one filter at ``qos``."""
    return _packet(SUBSCRIBE << 4 | 0x02, struct.pack("!H", mid) + _str(topic_filter) + bytes([qos]))


def publish(topic: str, payload: bytes, *, qos: int, mid: int = 0, retain: bool = False,
            dup: bool = False) -> bytes:  # fmt: skip
    """A PUBLISH packet; the packet id is written only for QoS > 0, as the protocol requires."""
    first = PUBLISH << 4 | (0x08 if dup else 0) | qos << 1 | (0x01 if retain else 0)
    head = _str(topic) + (struct.pack("!H", mid) if qos else b"")
    return _packet(first, head + payload)


def puback(mid: int) -> bytes:
    """A PUBACK for packet ``mid``: sent only after the message is stored."""
    return b"\x40\x02" + mid.to_bytes(2, "big")


def pubacks(mids: list[int]) -> bytes:
    """Many PUBACKs in one buffer (one ``send`` for a whole stored batch)."""
    return b"".join([b"\x40\x02" + m.to_bytes(2, "big") for m in mids])


PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


# ---- decoding -------------------------------------------------------------------------
class Decoder:
    """Turns a byte stream from the broker into packets; keeps partial packets between feeds."""

    def __init__(self, *, max_packet: int = 1 << 20):
        self.max_packet = max_packet
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized PUBLISH still to discard

    def feed(self, data: bytes) -> list[Packet]:
        """Every complete packet in what has arrived so far, in order."""
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
        buf = self._buf
        buf += data
        out: list[Packet] = []
        i, end = 0, len(buf)
        while end - i >= 2:
            first = buf[i]
            length, j = _remaining(buf, i + 1, end)
            if j < 0:
                break
            if length > self.max_packet:
                if first >> 4 != PUBLISH:
                    raise ProtocolError(f"packet type {first >> 4} of {length} bytes")
                head_end = _publish_header_end(first, buf, j, end)
                if head_end < 0:
                    break
                out.append(_publish(first, buf, j, head_end)._replace(oversize=j + length - head_end))
                i = j + length
                if i > end:  # skip the rest of the body as it arrives
                    self._skip, i = i - end, end
                continue
            if j + length > end:
                break
            if first >> 4 == PUBLISH:
                out.append(_publish(first, buf, j, j + length))
            else:
                out.append(_control(first, bytes(buf[j : j + length])))
            i = j + length
        del buf[:i]
        return out


def _publish_header_end(first: int, buf: bytearray, j: int, end: int) -> int:
    """Index where a PUBLISH's payload starts, or -1 when the header is still incomplete."""
    if j + 2 > end:
        return -1
    head_end = j + 2 + (buf[j] << 8 | buf[j + 1]) + (2 if first & 0x06 else 0)
    return head_end if head_end <= end else -1


def _remaining(buf: bytearray, j: int, end: int) -> tuple[int, int]:
    """(remaining length, index after it), or (0, -1) when more bytes are needed."""
    length = shift = 0
    for _ in range(4):
        if j >= end:
            return 0, -1
        digit = buf[j]
        j += 1
        length |= (digit & 0x7F) << shift
        if not digit & 0x80:
            return length, j
        shift += 7
    raise ProtocolError("malformed remaining length (more than 4 bytes)")


def _publish(first: int, buf: bytearray, j: int, end: int) -> Publish:
    qos = (first >> 1) & 0x03
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    if j + 2 > end:
        raise ProtocolError("PUBLISH shorter than its topic length")
    k = j + 2 + (buf[j] << 8 | buf[j + 1])
    if k + (2 if qos else 0) > end:
        raise ProtocolError("PUBLISH topic longer than the packet")
    try:
        topic = buf[j + 2 : k].decode()
    except UnicodeDecodeError:
        topic = ""  # not a topic of ours; the collector counts and acknowledges it
    mid = 0
    if qos:
        mid = buf[k] << 8 | buf[k + 1]
        k += 2
    return Publish(topic, bytes(buf[k:end]), qos, mid, bool(first & 0x01))


def _control(first: int, body: bytes) -> Packet:
    kind = first >> 4
    if kind == CONNACK and len(body) == 2:
        return ConnAck(bool(body[0] & 0x01), body[1])
    if kind == SUBACK and len(body) >= 3:
        return SubAck(body[0] << 8 | body[1], tuple(body[2:]))
    if kind == PUBACK and len(body) == 2:
        return PubAck(body[0] << 8 | body[1])
    if kind == PINGRESP and not body:
        return PingResp()
    raise ProtocolError(f"unexpected packet type {kind} ({len(body)} bytes) from the broker")
