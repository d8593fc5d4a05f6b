"""Over-the-air deployments through MQTT (paho): the device listener and the host sender.

The protocol lives in :mod:`device_agent.protocol.chunks`; this module only moves its
messages. The device keeps received chunks under ``STORE/transfers/<rollout>/`` (each
written atomically after its hash is checked), so a transfer resumes after a dropped
connection or a restart of the agent: it reports the indices it still misses and the
sender resends exactly those.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from device_agent.bundle import SignatureCheck, atomic_write
from device_agent.errors import BundleError, EdgeError
from device_agent.mqtt import BrokerOptions, MqttClient
from device_agent.protocol.chunks import (
    Assembly,
    Chunk,
    Offer,
    RollbackRequest,
    deploy_topic,
    split,
    status_topic,
)
from device_agent.protocol.messages import DeployPhase, DeployStatus, MessageError
from device_agent.update.flow import Checkpoint, FlowStep, UpdateFlow, UpdatePolicy, UpdateResult
from device_agent.update.store import ModelStore

log = logging.getLogger(__name__)
TRANSFERS = "transfers"
_STEP_STATUS = {FlowStep.VERIFY: DeployPhase.VERIFYING, FlowStep.HEALTH: DeployPhase.HEALTH_CHECK}


class DeployListener:
    """The agent's side: receive offers and chunks, run the update flow, report status."""

    def __init__(self, *, store: ModelStore, mqtt: MqttClient, fleet: str, device: str,
                 trust: SignatureCheck, policy: UpdatePolicy, checkpoint: Checkpoint | None = None,
                 boot_id: str | None = None):
        """``mqtt``: the agent's one connection (started by the caller, before or after
        this registers its subscription); its session should persist (``clean_session``
        off) so the broker keeps QoS 1 deploy messages while the agent restarts.
        ``boot_id`` names this process in every report (the telemetry's, when it has one;
        a new one otherwise); it may be set until :meth:`run` starts."""
        self.store, self.mqtt, self.fleet, self.device = store, mqtt, fleet, device
        self.boot_id = boot_id or uuid.uuid4().hex[:16]
        self.trust, self.policy, self.checkpoint = trust, policy, checkpoint
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.assemblies: dict[str, Assembly] = {}
        # Which rollout brought a version; set before the switch, since probation may
        # roll the new model back before the flow has even returned.
        self.rollout_of_version: dict[str, str] = {}
        self._ready = threading.Event()
        mqtt.add_connect_hook(self._on_connect)
        mqtt.subscribe(deploy_topic(fleet, device), qos=1,
                       handler=lambda msg: self.inbox.put((msg.topic, bytes(msg.payload))))

    @property
    def transfers(self) -> Path:
        """The folder holding partial transfers (resumed after a restart)."""
        return self.store.root / TRANSFERS

    def run(self, stop: threading.Event) -> None:
        """Serve deployments until ``stop`` is set (messages queue up while it starts)."""
        self.store.recover()
        self._resume_from_disk()
        self._ready.set()
        if self.mqtt.connected:
            self._on_connect()
        while not stop.is_set():
            try:
                _topic, payload = self.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            self._handle(payload)

    def _on_connect(self) -> None:
        if not self._ready.is_set():
            return  # run() asks for what is missing once it has read the disk
        for a in list(self.assemblies.values()):  # ask again for what a dropped link lost
            self._publish(DeployStatus(a.offer.rollout, DeployPhase.DOWNLOADING, version=a.offer.version,
                                       missing=a.missing()))

    def _publish(self, s: DeployStatus) -> None:
        s = DeployStatus(s.rollout, s.status, s.reason, s.version, s.missing, self.device, time.time(),
                         self.boot_id)
        self.mqtt.publish(status_topic(self.fleet, self.device), s.to_payload(), qos=1)

    # messages -----------------------------------------------------------------------
    def _handle(self, payload: bytes) -> None:
        try:
            kind = json.loads(payload).get("type")
        except (ValueError, AttributeError, UnicodeDecodeError):
            log.warning("deploy: ignoring a message that is not JSON")
            return
        try:
            if kind == "offer":
                self._offer(Offer.from_payload(payload))
            elif kind == "chunk":
                self._chunk(Chunk.from_payload(payload))
            elif kind == "rollback":
                self._rollback(RollbackRequest.from_payload(payload))
        except (BundleError, MessageError) as e:
            log.warning("deploy: %s", e)

    def _offer(self, offer: Offer) -> None:
        a = self.assemblies.get(offer.rollout)
        if a is None or a.offer != offer:
            try:
                a = Assembly(offer, self.policy.max_bytes)
            except (BundleError, MessageError) as e:
                self._publish(DeployStatus(offer.rollout, DeployPhase.REJECTED, f"transfer: {e}", offer.version))
                return
            self.assemblies[offer.rollout] = a
            d = self.transfers / offer.rollout
            d.mkdir(parents=True, exist_ok=True)
            atomic_write(d / "offer.json", offer.to_payload())
        self._progress(a)

    def report(self, result: UpdateResult) -> None:
        """Publish an outcome decided outside a transfer (a probation rollback)."""
        rollout = self.rollout_of_version.get(result.version or "", "local")
        self._publish(DeployStatus(rollout, result.status, result.reason, result.version))

    def _rollback(self, req: RollbackRequest) -> None:
        cur = self.store.current()
        if req.version and (cur is None or cur.manifest.version != req.version):
            # This device never switched (or already went back): nothing to undo.
            have = cur.manifest.version if cur else "nothing"
            self._publish(DeployStatus(req.rollout, DeployPhase.ROLLED_BACK,
                                       f"rollback requested: {req.reason}; already serving {have}", have))
            return
        try:
            slot = self.store.rollback()
        except EdgeError as e:
            self._publish(DeployStatus(req.rollout, DeployPhase.REJECTED, f"rollback: {e}"))
            return
        self._publish(DeployStatus(req.rollout, DeployPhase.ROLLED_BACK, f"rollback requested: {req.reason}",
                                   slot.manifest.version))

    def _chunk(self, c: Chunk) -> None:
        a = self.assemblies.get(c.rollout)
        if a is None or c.index in a.parts:
            return
        a.check(c)
        atomic_write(self.transfers / c.rollout / f"{c.index}.chunk", c.data)
        a.add(c)
        if self.checkpoint:
            self.checkpoint(FlowStep.TRANSFER, len(a.parts))
        if not a.missing():
            self._progress(a)

    def _progress(self, a: Assembly) -> None:
        missing = a.missing()
        if missing:
            self._publish(DeployStatus(a.offer.rollout, DeployPhase.DOWNLOADING, version=a.offer.version,
                                       missing=missing))
            return
        self.rollout_of_version[a.offer.version] = a.offer.rollout
        result = self._install(a)
        # Clean up before reporting: once the sender hears the outcome, the device holds
        # no leftovers of this transfer (the store already has the result).
        shutil.rmtree(self.transfers / a.offer.rollout, ignore_errors=True)
        self.assemblies.pop(a.offer.rollout, None)
        self._publish(DeployStatus(a.offer.rollout, result.status, result.reason, a.offer.version))

    def _install(self, a: Assembly) -> UpdateResult:
        d = self.transfers / a.offer.rollout
        try:
            atomic_write(d / "bundle.edgepkg", a.assemble())
        except (BundleError, MessageError, OSError) as e:
            return UpdateResult(DeployPhase.REJECTED, f"transfer: {e}", FlowStep.TRANSFER)
        rollout, version = a.offer.rollout, a.offer.version

        def report(step: FlowStep, i: int) -> None:
            if i == 0 and step in _STEP_STATUS:
                self._publish(DeployStatus(rollout, _STEP_STATUS[step], version=version))
            if self.checkpoint:
                self.checkpoint(step, i)

        flow = UpdateFlow(self.store, self.trust, self.policy, checkpoint=report)
        return flow.run(d / "bundle.edgepkg")

    def _resume_from_disk(self) -> None:
        """Reload partial transfers an earlier run of the agent left behind."""
        if not self.transfers.is_dir():
            return
        for d in self.transfers.iterdir():
            try:
                a = Assembly(Offer.from_payload((d / "offer.json").read_bytes()), self.policy.max_bytes)
            except (OSError, BundleError, MessageError):
                shutil.rmtree(d, ignore_errors=True)
                continue
            for f in d.glob("*.chunk"):
                data = f.read_bytes()
                idx = int(f.stem)
                expected = Chunk(a.offer.rollout, idx, _sha(data), data)
                try:
                    a.check(expected)
                except (BundleError, MessageError):
                    f.unlink()
                    continue
                a.parts[idx] = data
            self.assemblies[a.offer.rollout] = a


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


class DeployLink:
    """The host's one MQTT connection for a deploy command, shared by every device's session
    (deploy topic out, deploy/status in): one client id for the ACL to name, and a broker
    that names clients after their user (``use_username_as_clientid``) sees one client.

    Connecting is the first thing it does: an unreachable broker or refused credentials
    raise :class:`EdgeError` naming the URL before anything is sent."""

    def __init__(self, broker: BrokerOptions, *, connect_timeout_s: float = 15.0):
        options = replace(broker, client_id=broker.client_id or f"edge-deploy-{uuid.uuid4().hex[:8]}",
                          clean_session=True)
        self.url = broker.url
        self.client = MqttClient(options, log_outages=False)
        self._sessions: dict[str, list[_HostSession]] = {}
        self._lock = threading.Lock()
        self.client.start()
        self.client.require_connected(connect_timeout_s)

    def attach(self, session: _HostSession) -> None:
        """Route ``session``'s device's deploy/status to it (subscribing once per device)."""
        topic = status_topic(session.fleet, session.device)
        with self._lock:
            if topic not in self._sessions:
                self._sessions[topic] = []
                self.client.subscribe(topic, qos=1, handler=self._route)
            self._sessions[topic].append(session)
        if not self.client.wait_subscribed(topic, 10):
            raise EdgeError(f"broker {self.url}: no subscription acknowledgement for {topic}")

    def detach(self, session: _HostSession) -> None:
        """Stop routing status messages to ``session``."""
        with self._lock:
            peers = self._sessions.get(status_topic(session.fleet, session.device), [])
            if session in peers:
                peers.remove(session)

    def _route(self, msg: Any) -> None:
        try:
            s = DeployStatus.from_payload(msg.payload)
        except MessageError:
            return
        with self._lock:
            targets = list(self._sessions.get(msg.topic, ()))
        for t in targets:
            if s.rollout == t.rollout:
                t.inbox.put(s)

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish ``payload`` on ``topic`` with QoS 1."""
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        """Disconnect from the broker."""
        self.client.stop()


LinkOrOptions = BrokerOptions | DeployLink  # a link to share, or options to open one for one call


class _HostSession:
    """One device's deployment traffic, on a :class:`DeployLink` (its own one when given options)."""

    def __init__(self, broker: LinkOrOptions, fleet: str, device: str, rollout: str):
        self.fleet, self.device, self.rollout = fleet, device, rollout
        self.inbox: queue.Queue[DeployStatus] = queue.Queue()
        self._owns = isinstance(broker, BrokerOptions)
        self.link = DeployLink(broker) if isinstance(broker, BrokerOptions) else broker
        try:
            self.link.attach(self)
        except EdgeError:
            self.close()
            raise

    def publish(self, payload: bytes) -> None:
        self.link.publish(deploy_topic(self.fleet, self.device), payload)

    def close(self) -> None:
        self.link.detach(self)
        if self._owns:
            self.link.close()


StatusCallback = Callable[[DeployStatus], None]


def send_bundle(bundle: Path, *, broker: LinkOrOptions, fleet: str, device: str, rollout: str | None = None,
                chunk_size: int = 64 * 1024, timeout_s: float = 120.0, retry_s: float = 5.0,
                on_status: StatusCallback | None = None,
                probation_timeout_s: float | None = None) -> DeployStatus:
    """The host's side: offer ``bundle``, send the chunks the device asks for, return its
    final status (``active``, ``rejected``, ``rolled-back``).

    With ``probation_timeout_s`` an ``active`` device is also waited for until its
    probation verdict (``probation-passed`` or ``rolled-back``); EdgeError if none comes.
    """
    from device_agent.bundle import read_manifest

    m = read_manifest(bundle)
    rid = rollout or f"r{uuid.uuid4().hex[:12]}"
    offer, chunks = split(bundle.read_bytes(), rollout=rid, name=m.name, version=m.version,
                          chunk_size=chunk_size)
    session = _HostSession(broker, fleet, device, rid)
    try:
        s = _drive(session, offer, chunks, timeout_s, retry_s, on_status)
        if probation_timeout_s is None or s.status != "active":
            return s
        return _await_verdict(session, probation_timeout_s, on_status)
    finally:
        session.close()


def _await_verdict(session: _HostSession, timeout_s: float, on_status: StatusCallback | None) -> DeployStatus:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            s = session.inbox.get(timeout=left)
        except queue.Empty:
            break
        if on_status:
            on_status(s)
        if s.settled:
            return s
    raise EdgeError(f"deploy {session.rollout} to {session.device}: active, but no probation verdict "
                    f"within {timeout_s} s (is the agent serving with edge-agent daemon?)")


def send_rollback(*, broker: LinkOrOptions, fleet: str, device: str, rollout: str, reason: str,
                  timeout_s: float = 60.0, version: str = "") -> DeployStatus:
    """Ask ``device`` to return to its previous model (only if it serves ``version``, when
    given); its final status."""
    session = _HostSession(broker, fleet, device, rollout)
    try:
        session.publish(RollbackRequest(rollout, reason, version).to_payload())
        try:
            return session.inbox.get(timeout=timeout_s)
        except queue.Empty:
            raise EdgeError(f"rollback of {device}: no answer within {timeout_s} s") from None
    finally:
        session.close()


def _drive(session: _HostSession, offer: Offer, chunks: list[Chunk], timeout_s: float, retry_s: float,
           on_status: StatusCallback | None) -> DeployStatus:
    deadline = time.monotonic() + timeout_s
    session.publish(offer.to_payload())
    while time.monotonic() < deadline:
        try:
            s = session.inbox.get(timeout=retry_s)
        except queue.Empty:
            session.publish(offer.to_payload())  # device away or restarted: ask again
            continue
        if on_status:
            on_status(s)
        if s.final:
            return s
        for i in s.missing:
            session.publish(chunks[i].to_payload())
    raise EdgeError(f"deploy {offer.rollout} to {session.device}: no final status within {timeout_s} s")
