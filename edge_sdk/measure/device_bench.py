"""Latency measured where the model will run: a candidate timed by a device's agent.

``edge optimize --latency-on DEVICE`` sends each search candidate (its shipped model
file) to that device as a signed benchmark request on ``edge/v1/{fleet}/{device}/bench``
and reads the answer on ``.../bench/result`` (:mod:`device_agent.bench.listener`). The
request is signed with the bundle-signing key, so a device times only what a key it
trusts asked for. :class:`DeviceBench` holds one broker connection for a whole search;
every wait is bounded, and a device that is offline or silent is one :class:`EdgeError`
naming the device and what to check.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from device_agent.errors import EdgeError
from device_agent.protocol import topics
from device_agent.protocol.messages import BenchRequest, BenchResult, BenchSpec, MessageError, State, Status

if TYPE_CHECKING:
    from device_agent.mqtt import BrokerOptions, MqttClient

CONNECT_TIMEOUT_S = 10.0
STATE_WAIT_S = 1.0  # a retained state arrives right after the subscription is granted


@dataclass(frozen=True, kw_only=True)
class DeviceTarget:
    """Which device times the candidates, through which broker, signed with which key."""

    fleet: str
    device: str
    broker: BrokerOptions
    key: Path  # the Ed25519 private key that signs bundles (edge keys new)
    timeout_s: float = 120.0  # per candidate: transfer, load and timing on the device
    runs: int = 50
    max_seconds: float = 20.0  # the device's timed loop, at most

    def __post_init__(self) -> None:
        topics.check_id(self.fleet, "--fleet")
        topics.check_id(self.device, "--latency-on")
        if self.timeout_s <= 0:
            raise EdgeError(f"--latency-timeout: expected seconds > 0, found {self.timeout_s}")

    @property
    def name(self) -> str:
        """``fleet/device``, as the report names where latency was measured."""
        return f"{self.fleet}/{self.device}"


@dataclass(frozen=True)
class DeviceLatency:
    """What the device measured for one candidate (single-sample calls, milliseconds)."""

    p50_ms: float
    p95_ms: float
    runs: int
    runtime: str
    device: str


class DeviceBench:
    """One connection to the broker for a search; :meth:`measure` times one model file."""

    def __init__(self, target: DeviceTarget):
        self.target = target
        self._results: dict[str, BenchResult] = {}
        self._state: State | None = None
        self._arrived = threading.Condition()
        self._client: MqttClient | None = None
        self._sign: Any = None

    def __enter__(self) -> DeviceBench:
        self.open()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def open(self) -> None:
        """Connect, subscribe to the device's answers and state; refuse an offline device."""
        from device_agent.mqtt import MqttClient
        from edge_sdk.bundle.signing import load_signer

        t = self.target
        self._sign = load_signer(t.key)
        options = replace(t.broker, client_id=t.broker.client_id or f"edge-bench-{uuid.uuid4().hex[:12]}")
        client = self._client = MqttClient(options, log_outages=False)
        results, state = topics.bench_result(t.fleet, t.device), topics.state(t.fleet, t.device)
        client.subscribe(results, qos=1, handler=lambda m: self._on_result(bytes(m.payload)))
        client.subscribe(state, qos=1, handler=lambda m: self._on_state(bytes(m.payload)))
        client.start()
        client.require_connected(CONNECT_TIMEOUT_S)
        if not client.wait_subscribed(results, CONNECT_TIMEOUT_S):
            self.close()
            raise EdgeError(f"broker {options.url}: no subscription to {results}; check that this broker "
                            "user may read it (the deployer role of edge fleet add-user)")
        client.wait_subscribed(state, STATE_WAIT_S)
        self._check_online()

    def _check_online(self) -> None:
        with self._arrived:
            self._arrived.wait_for(lambda: self._state is not None, STATE_WAIT_S)
            s = self._state
        if s is not None and s.status is Status.OFFLINE:
            self.close()
            raise EdgeError(f"--latency-on {self.target.name}: the device is offline (its last state); start "
                            "its agent (edge-agent daemon or listen, with --broker) and try again")

    def close(self) -> None:
        """Disconnect (idempotent)."""
        if self._client is not None:
            self._client.stop()
            self._client = None

    def _on_result(self, payload: bytes) -> None:
        try:
            r = BenchResult.from_payload(payload)
        except MessageError:
            return  # not an answer this host can read; the wait names the device if none comes
        with self._arrived:
            self._results[r.request_id] = r
            self._arrived.notify_all()

    def _on_state(self, payload: bytes) -> None:
        try:
            s = State.from_payload(payload) if payload else None
        except MessageError:
            return
        with self._arrived:
            self._state = s
            self._arrived.notify_all()

    def measure(self, model: bytes, fmt: str) -> DeviceLatency:
        """Time ``model`` (a .tflite or .onnx file's bytes) on the device; bounded wait."""
        import hashlib

        t = self.target
        if self._client is None:
            raise EdgeError("device benchmark: not connected (use DeviceBench as a context manager)")
        rid = uuid.uuid4().hex
        spec = BenchSpec(request_id=rid, fleet=t.fleet, device=t.device, format=fmt,
                         sha256=hashlib.sha256(model).hexdigest(), size=len(model), runs=t.runs,
                         max_seconds=t.max_seconds, ts=time.time())
        body = spec.to_bytes()
        self._client.publish(topics.bench(t.fleet, t.device), BenchRequest(body, self._sign(body), model).to_payload(),
                             qos=1)
        r = self._wait(rid)
        if not r.ok:
            raise EdgeError(f"--latency-on {t.name}: the device did not time the candidate: {r.error}")
        return DeviceLatency(r.p50_ms, r.p95_ms, r.runs, r.runtime, t.name)

    def _wait(self, rid: str) -> BenchResult:
        t = self.target
        with self._arrived:
            self._arrived.wait_for(lambda: rid in self._results, t.timeout_s)
            r = self._results.pop(rid, None)
        if r is None:
            raise EdgeError(
                f"--latency-on {t.name}: no answer to a benchmark request within {t.timeout_s:g} s; check that "
                f"the device's agent runs (edge-agent daemon or listen) on {t.broker.url} with --fleet {t.fleet} "
                f"--device-id {t.device}, and that this broker user may write {topics.bench(t.fleet, t.device)}")
        return r
