"""Chunked bundle transfer over MQTT: the messages and the reassembly, with no IO.

The sender publishes an :class:`Offer` on the device's ``deploy`` topic, then the
:class:`Chunk` messages the device asks for. Each chunk carries its own sha256, the
offer carries the whole bundle's sha256 and size. The device answers on
``deploy/status`` with a :class:`DeployStatus`; while downloading it lists the chunk
indices it still misses, which is how a transfer resumes after a dropped connection or
a restart: the sender resends exactly those.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from device_agent.errors import BundleError, EdgeError
from device_agent.telemetry import topics
from device_agent.telemetry.messages import DeployPhase
from device_agent.telemetry.messages import DeployStatus as StatusMessage

PROTOCOL = 1
DEFAULT_CHUNK = 64 * 1024
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


def deploy_topic(fleet: str, device: str) -> str:
    return topics.deploy(fleet, device)


def status_topic(fleet: str, device: str) -> str:
    return topics.deploy_status(fleet, device)


def _checked_id(v: str) -> str:
    if not _ID.match(v):
        raise BundleError(f"id {v!r} must match [A-Za-z0-9_-]{{1,64}}")
    return v


def _load(payload: bytes, kind: str) -> dict[str, Any]:
    try:
        d = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(f"{kind} message is not JSON ({e})") from e
    if not isinstance(d, dict) or d.get("v") != PROTOCOL or d.get("type") != kind:
        raise BundleError(f"expected a v{PROTOCOL} {kind} message")
    return d


@dataclass(frozen=True)
class Offer:
    """A deployment: which bundle is coming, how big, in how many chunks."""

    rollout: str
    name: str
    version: str
    size: int
    sha256: str
    chunk_size: int
    chunks: int

    def to_payload(self) -> bytes:
        return json.dumps({"v": PROTOCOL, "type": "offer", **asdict(self)}).encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> Offer:
        d = _load(payload, "offer")
        try:
            o = cls(str(d["rollout"]), str(d["name"]), str(d["version"]), int(d["size"]),
                    str(d["sha256"]), int(d["chunk_size"]), int(d["chunks"]))
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"offer: missing or invalid field ({e!r})") from e
        o.validate()
        return o

    def validate(self) -> None:
        _checked_id(self.rollout)
        if not _HEX.match(self.sha256):
            raise BundleError("offer: sha256 must be 64 hex digits")
        if self.size < 0 or self.chunk_size <= 0:
            raise BundleError(f"offer: invalid size {self.size} or chunk size {self.chunk_size}")
        if self.chunks != -(-self.size // self.chunk_size):
            raise BundleError(f"offer: {self.chunks} chunks cannot hold {self.size} bytes")


@dataclass(frozen=True)
class Chunk:
    """One piece of the bundle with its own hash."""

    rollout: str
    index: int
    sha256: str
    data: bytes

    def to_payload(self) -> bytes:
        return json.dumps({
            "v": PROTOCOL, "type": "chunk", "rollout": self.rollout, "index": self.index,
            "sha256": self.sha256, "data": base64.b64encode(self.data).decode(),
        }).encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> Chunk:
        d = _load(payload, "chunk")
        try:
            data = base64.b64decode(str(d["data"]), validate=True)
            return cls(str(d["rollout"]), int(d["index"]), str(d["sha256"]), data)
        except (KeyError, TypeError, ValueError, binascii.Error) as e:
            raise BundleError(f"chunk: missing or invalid field ({e!r})") from e


@dataclass(frozen=True)
class DeployStatus:
    """What the device reports on ``deploy/status``.

    On the wire this is the fleet's ``deploy_status`` message (so the collector records
    it) plus two fields of the transfer protocol: ``missing`` and ``device``.
    """

    rollout: str
    status: str  # a DeployPhase value: downloading / verifying / health-check / active / ...
    reason: str = ""
    version: str | None = None
    missing: tuple[int, ...] = ()
    device: str = ""
    ts: float = 0.0  # set by the adapter that publishes it (this module reads no clock)
    boot_id: str = ""  # the agent process's, as in its telemetry; set by the same adapter

    def to_payload(self) -> bytes:
        msg = StatusMessage(rollout_id=self.rollout, version=self.version or "", phase=DeployPhase(self.status),
                            ts=self.ts, reason=_short(self.reason), boot_id=self.boot_id)
        d = json.loads(msg.to_payload())
        d["missing"], d["device"] = list(self.missing), self.device
        return json.dumps(d, separators=(",", ":")).encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> DeployStatus:
        try:
            msg = StatusMessage.from_payload(payload)
            extra = json.loads(payload)
            missing = tuple(int(i) for i in extra.get("missing", []))
        except EdgeError as e:
            raise BundleError(f"deploy-status: {e}") from e
        except (TypeError, ValueError) as e:
            raise BundleError(f"deploy-status: invalid missing list ({e!r})") from e
        return cls(msg.rollout_id, msg.phase.value, msg.reason, msg.version or None, missing,
                   str(extra.get("device", "")), msg.ts, msg.boot_id)

    @property
    def final(self) -> bool:
        """The update flow is over (``active`` may still be judged by probation)."""
        return self.status in ("active", "rolled-back", "rejected")

    @property
    def settled(self) -> bool:
        """Probation is over too: the new model stays, or the device is on its old one."""
        return self.status in ("probation-passed", "rolled-back", "rejected")


def _short(reason: str) -> str:
    # The fleet schema caps strings at 256 characters; keep the cause, which comes last.
    return reason if len(reason) <= 256 else "…" + reason[-255:]


def split(bundle: bytes, *, rollout: str, name: str, version: str,
          chunk_size: int = DEFAULT_CHUNK) -> tuple[Offer, list[Chunk]]:
    """The offer and the chunks for one bundle."""
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
        self.check(c)
        self.parts[c.index] = c.data

    def missing(self) -> tuple[int, ...]:
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

    rollout: str
    reason: str = ""
    version: str = ""  # roll back only while serving this version ("" = whatever it serves)

    def to_payload(self) -> bytes:
        return json.dumps({"v": PROTOCOL, "type": "rollback", **asdict(self)}).encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> RollbackRequest:
        d = _load(payload, "rollback")
        return cls(_checked_id(str(d.get("rollout", ""))), str(d.get("reason", "")),
                   str(d.get("version", "")))
