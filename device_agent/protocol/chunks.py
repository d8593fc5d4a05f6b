"""Chunked bundle transfer over MQTT: the deployment messages and the reassembly, with no IO.

The messages are built on :mod:`device_agent.protocol.messages` (one envelope, one
parser, :class:`~device_agent.protocol.messages.MessageError` for a bad payload);
a chunk that does not fit its offer is a :class:`BundleError`.

The sender publishes an :class:`Offer` on the device's ``deploy`` topic, then the
:class:`Chunk` messages the device asks for. Each chunk carries its own sha256, the
offer carries the whole bundle's sha256 and size. The device answers on
``deploy/status`` with a :class:`~device_agent.protocol.messages.DeployStatus`; while downloading it lists the chunk
indices it still misses, which is how a transfer resumes after a dropped connection or
a restart: the sender resends exactly those.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import ClassVar

from device_agent.errors import BundleError
from device_agent.protocol import topics
from device_agent.protocol.messages import (
    MAX_PAYLOAD,
    MessageError,
    _count,
    _decode,
    _encode,
    _get,
)

DEFAULT_CHUNK = 64 * 1024
MAX_CHUNK = 1024 * 1024  # bytes of bundle in one chunk (--chunk-size); base64 adds a third
MAX_CHUNK_PAYLOAD = MAX_CHUNK * 4 // 3 + MAX_PAYLOAD  # a chunk message, envelope included
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


def deploy_topic(fleet: str, device: str) -> str:
    """The device's ``deploy`` topic."""
    return topics.deploy(fleet, device)


def status_topic(fleet: str, device: str) -> str:
    """The device's ``deploy/status`` topic."""
    return topics.deploy_status(fleet, device)


def _checked_id(v: str) -> str:
    if not _ID.match(v):
        raise MessageError(f"rollout: expected an id matching [A-Za-z0-9_-]{{1,64}}, found {v!r}")
    return v


@dataclass(frozen=True)
class Offer:
    """A deployment: which bundle is coming, how big, in how many chunks."""

    TYPE: ClassVar[str] = "offer"
    rollout: str
    name: str
    version: str
    size: int
    sha256: str
    chunk_size: int
    chunks: int

    def to_payload(self) -> bytes:
        """The JSON payload (versioned envelope)."""
        return _encode(self.TYPE, asdict(self))

    @classmethod
    def from_payload(cls, payload: bytes) -> Offer:
        """Parse and check an offer; :class:`MessageError` names a bad field."""
        d = _decode(payload, cls.TYPE)
        o = cls(_get(d, "rollout", str), _get(d, "name", str), _get(d, "version", str), _count(d, "size"),
                _get(d, "sha256", str), _count(d, "chunk_size"), _count(d, "chunks"))
        o.validate()
        return o

    def validate(self) -> None:
        """Raise :class:`MessageError` unless the fields describe a possible transfer."""
        _checked_id(self.rollout)
        if not _HEX.match(self.sha256):
            raise MessageError(f"sha256: expected 64 hex digits, found {self.sha256!r}")
        if self.size < 0 or not 0 < self.chunk_size <= MAX_CHUNK:
            raise MessageError(f"offer: invalid size {self.size} or chunk size {self.chunk_size} "
                               f"(chunks hold 1..{MAX_CHUNK} bytes)")
        if self.chunks != -(-self.size // self.chunk_size):
            raise MessageError(f"chunks: {self.chunks} chunks cannot hold {self.size} bytes")


@dataclass(frozen=True)
class Chunk:
    """One piece of the bundle with its own hash."""

    TYPE: ClassVar[str] = "chunk"
    rollout: str
    index: int
    sha256: str
    data: bytes

    def to_payload(self) -> bytes:
        """The JSON payload; ``data`` in base64."""
        return _encode(self.TYPE, {"rollout": self.rollout, "index": self.index, "sha256": self.sha256,
                                   "data": base64.b64encode(self.data).decode()})

    @classmethod
    def from_payload(cls, payload: bytes) -> Chunk:
        """Parse a chunk (its hash is checked by :meth:`Assembly.check`)."""
        d = _decode(payload, cls.TYPE, limit=MAX_CHUNK_PAYLOAD)
        raw = d.get("data")
        if not isinstance(raw, str):
            raise MessageError(f"data: expected base64 text, found {type(raw).__name__}")
        try:
            data = base64.b64decode(raw, validate=True)
        except (ValueError, binascii.Error) as e:
            raise MessageError(f"data: expected base64 text, found invalid base64 ({e})") from None
        return cls(_get(d, "rollout", str), _count(d, "index"), _get(d, "sha256", str), data)


def split(bundle: bytes, *, rollout: str, name: str, version: str,
          chunk_size: int = DEFAULT_CHUNK) -> tuple[Offer, list[Chunk]]:
    """The offer and the chunks for one bundle."""
    if not 0 < chunk_size <= MAX_CHUNK:
        raise BundleError(f"--chunk-size {chunk_size}: expected 1..{MAX_CHUNK} bytes")
    pieces = [bundle[i : i + chunk_size] for i in range(0, len(bundle), chunk_size)]
    offer = Offer(rollout, name, version, len(bundle), hashlib.sha256(bundle).hexdigest(),
                  chunk_size, len(pieces))
    offer.validate()
    return offer, [Chunk(rollout, i, hashlib.sha256(p).hexdigest(), p) for i, p in enumerate(pieces)]


@dataclass
class Assembly:
    """Reassembles one offer's chunks; every chunk is checked before it is kept."""

    offer: Offer
    max_bytes: int
    parts: dict[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.offer.size > self.max_bytes:
            raise BundleError(
                f"offer {self.offer.rollout}: bundle of {self.offer.size} bytes exceeds the cap of {self.max_bytes}"
            )

    def check(self, c: Chunk) -> None:
        """Raise BundleError unless ``c`` is a correct chunk of this offer."""
        o = self.offer
        if c.rollout != o.rollout:
            raise BundleError(f"chunk for rollout {c.rollout!r}, expected {o.rollout!r}")
        if not 0 <= c.index < o.chunks:
            raise BundleError(f"chunk index {c.index} outside 0..{o.chunks - 1}")
        want = o.chunk_size if c.index < o.chunks - 1 else o.size - o.chunk_size * (o.chunks - 1)
        if len(c.data) != want:
            raise BundleError(f"chunk {c.index} is {len(c.data)} bytes, expected {want}")
        if hashlib.sha256(c.data).hexdigest() != c.sha256:
            raise BundleError(f"chunk {c.index} does not match its sha256 (corrupted in transit)")

    def add(self, c: Chunk) -> None:
        """Keep ``c`` once :meth:`check` accepts it."""
        self.check(c)
        self.parts[c.index] = c.data

    def missing(self) -> tuple[int, ...]:
        """The chunk indices not received yet (what the device asks the sender for)."""
        return tuple(i for i in range(self.offer.chunks) if i not in self.parts)

    def assemble(self) -> bytes:
        """The whole bundle, once complete and matching the offer's sha256."""
        if self.missing():
            raise BundleError(f"transfer {self.offer.rollout} is incomplete: {len(self.missing())} chunks missing")
        data = b"".join(self.parts[i] for i in range(self.offer.chunks))
        if len(data) != self.offer.size or hashlib.sha256(data).hexdigest() != self.offer.sha256:
            raise BundleError(f"transfer {self.offer.rollout}: reassembled bundle does not match the offer's sha256")
        return data


@dataclass(frozen=True)
class RollbackRequest:
    """Asks a device to go back to its previous model (a halted canary rollout)."""

    TYPE: ClassVar[str] = "rollback"
    rollout: str
    reason: str = ""
    version: str = ""  # roll back only while serving this version ("" = whatever it serves)

    def to_payload(self) -> bytes:
        """The JSON payload (versioned envelope)."""
        return _encode(self.TYPE, asdict(self))

    @classmethod
    def from_payload(cls, payload: bytes) -> RollbackRequest:
        """Parse a rollback request; :class:`MessageError` names a bad field."""
        d = _decode(payload, cls.TYPE)
        return cls(_checked_id(_get(d, "rollout", str, "")), _get(d, "reason", str, ""),
                   _get(d, "version", str, ""))
