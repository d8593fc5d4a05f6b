"""The agent's side of ``bench``: verify, time in a child process, answer on ``bench/result``.

A request is timed only when its spec is addressed to this device and signed by a key
the agent trusts (the same keys as bundles), and the model bytes are the ones the spec
names. The model runs in ``python -m device_agent.bench.child``: a separate process at
lower priority with a memory and CPU-time limit and a wall-clock timeout, so the model
the agent serves is never touched and a model that crashes its runtime costs only that
process. One request is timed at a time; a few more wait, the rest are answered busy.
Every outcome, refusals included, is one :class:`BenchResult` naming the request.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device_agent.errors import BundleError, EdgeError
from device_agent.protocol import topics
from device_agent.protocol.messages import MAX_BENCH_MODEL, BenchRequest, BenchResult, BenchSpec, MessageError

if TYPE_CHECKING:
    from device_agent.mqtt import MqttClient
    from device_agent.trust import TrustStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class BenchLimits:
    """What one request may cost the device (a request asking more is clipped or refused)."""

    max_model_bytes: int = MAX_BENCH_MODEL
    max_runs: int = 500
    max_seconds: float = 30.0  # the timed loop; loading gets load_grace_s on top
    load_grace_s: float = 30.0
    memory_limit_mb: int = 1024  # RLIMIT_AS of the child
    nice: int = 10  # below the serving process
    threads: int | None = None  # the runtime's threads (the agent's serve setting)
    waiting: int = 2  # requests queued behind the one being timed


class BenchListener:
    """Answers benchmark requests on the device's ``bench`` topic (``mqtt``: the agent's
    one connection; :meth:`start` runs the worker thread until ``stop`` is set)."""

    def __init__(self, *, mqtt: MqttClient, fleet: str, device: str, trust: TrustStore,
                 limits: BenchLimits = BenchLimits()):
        self.mqtt, self.fleet, self.device, self.trust, self.limits = mqtt, fleet, device, trust, limits
        self.inbox: queue.Queue[bytes] = queue.Queue(maxsize=limits.waiting)
        mqtt.subscribe(topics.bench(fleet, device), qos=1, handler=lambda msg: self._received(bytes(msg.payload)))

    def start(self, stop: threading.Event) -> threading.Thread:
        """Time requests on a daemon thread until ``stop`` is set."""
        t = threading.Thread(target=self.run, args=(stop,), name="bench", daemon=True)
        t.start()
        return t

    def run(self, stop: threading.Event) -> None:
        """Time requests one at a time until ``stop`` is set."""
        while not stop.is_set():
            try:
                payload = self.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                result = self.answer(payload)
            except Exception as e:  # a bug must not end the agent's benchmarks for good
                log.exception("bench: failed")
                result = self._error(_request_id_of(payload), f"the device failed: {type(e).__name__}: {e}")
            if result is not None:
                self._publish(result)

    def _received(self, payload: bytes) -> None:  # paho's thread: never block it
        try:
            self.inbox.put_nowait(payload)
        except queue.Full:
            self._publish(self._error(_request_id_of(payload), "busy: other benchmark requests are "
                                      "being timed on this device; send one at a time"))

    def _publish(self, result: BenchResult | None) -> None:
        if result is None:
            return
        result = replace(result, ts=time.time())
        self.mqtt.publish(topics.bench_result(self.fleet, self.device), result.to_payload(), qos=1)

    def _error(self, request_id: str | None, why: str) -> BenchResult | None:
        if request_id is None:  # nothing to correlate an answer with: the sender cannot be told
            log.warning("bench: ignoring a request without a readable request id: %s", why)
            return None
        log.warning("bench %s: %s", request_id, why)
        return BenchResult(request_id=request_id, device=self.device, ok=False, error=why)

    # the decision -----------------------------------------------------------------------
    def answer(self, payload: bytes) -> BenchResult | None:
        """The answer to one request payload (``None``: not even a request id to answer)."""
        try:
            req = BenchRequest.from_payload(payload)
            spec = req.spec
        except MessageError as e:
            return self._error(_request_id_of(payload), f"malformed request: {e}")
        refusal = self._refusal(req, spec)
        if refusal is not None:
            return self._error(spec.request_id, refusal)
        log.info("bench %s: timing %d bytes of %s (%d runs)", spec.request_id, spec.size, spec.format, spec.runs)
        return self._time(req.model, spec)

    def _refusal(self, req: BenchRequest, spec: BenchSpec) -> str | None:
        if (spec.fleet, spec.device) != (self.fleet, self.device):
            return f"refused: the request is addressed to {spec.fleet}/{spec.device}, not {self.fleet}/{self.device}"
        if not self.trust.keys:
            return ("refused: this device trusts no signing key (edge-agent --key PUB or STORE/keys), "
                    "so it times no model")
        if not req.signature:
            return "refused: the request is unsigned; this device times only requests signed by a key it trusts"
        try:
            self.trust.verify(req.spec_bytes, req.signature)
        except BundleError:
            return (f"refused: the request's signature does not verify with any key this device trusts "
                    f"({', '.join(sorted(self.trust.keys))}); sign with the key whose .pub it has")
        try:
            req.check_model()
        except MessageError as e:
            return f"refused: {e}"
        if spec.size > self.limits.max_model_bytes:
            return f"refused: the model is {spec.size} bytes, over this device's {self.limits.max_model_bytes}"
        return None

    # the IO: one child process -----------------------------------------------------------
    def _time(self, model: bytes, spec: BenchSpec) -> BenchResult:
        lim = self.limits
        seconds = min(spec.max_seconds, lim.max_seconds)
        with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
            path = Path(tmp) / f"candidate.{spec.format}"
            path.write_bytes(model)
            cmd = [sys.executable, "-m", "device_agent.bench.child", str(path), str(min(spec.runs, lim.max_runs)),
                   str(seconds), str(lim.threads or 0)]
            timeout = seconds + lim.load_grace_s
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_child_env(),
                                      preexec_fn=_lowered(lim.memory_limit_mb, int(timeout) + 1, lim.nice))
            except subprocess.TimeoutExpired:
                return BenchResult(request_id=spec.request_id, device=self.device, ok=False,
                                   error=f"the benchmark did not finish within {timeout:g} s")
        return self._parsed(spec.request_id, proc)

    def _parsed(self, request_id: str, proc: subprocess.CompletedProcess[str]) -> BenchResult:
        try:
            if proc.returncode == 0:
                return BenchResult(request_id=request_id, device=self.device, ok=True,
                                   **json.loads(proc.stdout.strip().splitlines()[-1]))
        except (IndexError, ValueError, TypeError):
            pass
        if proc.returncode < 0:
            why = f"the benchmark process was killed by signal {-proc.returncode} (memory or CPU limit, or a crash)"
        else:
            why = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1].removeprefix("error: ")
            why = f"the model did not run: {why}"
        return BenchResult(request_id=request_id, device=self.device, ok=False, error=why)


def _request_id_of(payload: bytes) -> str | None:
    """The request id of a payload too broken to parse in full, if it has a readable one."""
    try:
        spec = json.loads(payload).get("spec")
        rid = json.loads(spec).get("request_id") if isinstance(spec, str) else None
    except (ValueError, AttributeError, TypeError, RecursionError):
        return None
    try:
        return topics.check_id(rid, "request id") if isinstance(rid, str) else None
    except EdgeError:
        return None


def _lowered(memory_mb: int, cpu_s: int, nice: int) -> Callable[[], None]:
    from device_agent.update.health import _limits

    limits = _limits(memory_mb, cpu_s)

    def apply() -> None:
        limits()
        os.nice(nice)

    return apply


def _child_env() -> dict[str, Any]:
    from device_agent.update.health import _child_env as env

    return env()
