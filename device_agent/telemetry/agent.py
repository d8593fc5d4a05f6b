"""Wiring for ``edge-agent run --broker ...``: options → a started :class:`TelemetryPublisher`."""

from __future__ import annotations

import hashlib
import signal
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from device_agent.bundle import read_manifest_bytes
from device_agent.engine import Engine
from device_agent.errors import EdgeError
from device_agent.mqtt import BrokerOptions
from device_agent.telemetry.publisher import TelemetryOptions, TelemetryPublisher


@dataclass(frozen=True, kw_only=True)
class AgentTelemetryArgs:
    """The ``edge-agent run`` broker options, as given on the command line."""

    broker: str
    device_id: str
    fleet: str = "default"
    interval_s: float = 10.0
    qos: int = 1
    keepalive: int = 30
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    outbox: Path | None = None
    outbox_cap: int = 10_000


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def start_telemetry(args: AgentTelemetryArgs, bundle: Path | None, engine: Engine) -> TelemetryPublisher:
    """Connect (in the background) and start publishing; births carry the model identity.
    ``bundle``: what is served (a bundle file, a model file, or a store slot's directory)."""
    from device_agent import __version__

    if args.qos not in (0, 1):
        raise EdgeError(f"--qos: expected 0 or 1, found {args.qos}")
    if args.interval_s <= 0:
        raise EdgeError(f"--telemetry-interval: expected seconds > 0, found {args.interval_s}")
    m = engine.manifest
    broker = BrokerOptions(
        url=args.broker,
        client_id=args.device_id,  # = the id the broker ACL patterns (%c) check
        keepalive=args.keepalive,
        username=args.username,
        password=args.password,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
    )
    options = TelemetryOptions(
        fleet=args.fleet,
        device_id=args.device_id,
        interval_s=args.interval_s,
        qos=args.qos,
        outbox=args.outbox,
        outbox_cap=args.outbox_cap,
        agent_version=__version__,
        model_name=m.name if m else (bundle.stem if bundle else "unknown"),
        model_version=m.version if m else "",
        model_hash=model_hash(bundle) if bundle is not None else "",
        accelerator=engine.model.accelerator,
    )
    return TelemetryPublisher(broker, options).start()


def model_hash(path: Path) -> str:
    """The served model's identity: the sha256 of its manifest as shipped, which lists
    every member's sha256 (a store slot is named after it), whether it is served from a
    bundle file or from a store slot; a bare model file's own sha256 otherwise."""
    if path.is_dir():
        manifest_file = path / "manifest.json"
        return hashlib.sha256(manifest_file.read_bytes()).hexdigest() if manifest_file.is_file() else ""
    manifest = read_manifest_bytes(path) if path.suffix.lower() == ".edgepkg" else None
    return hashlib.sha256(manifest).hexdigest() if manifest is not None else file_sha256(path)


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so ``finally`` blocks publish ``offline``."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
