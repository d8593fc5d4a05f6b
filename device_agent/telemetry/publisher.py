r"""The agent's telemetry: windows of the serve loop's statistics, published over MQTT.

Flow: the serve loop counts into its :class:`~device_agent.stats.RunStats` (the publisher
:meth:`~TelemetryPublisher.watch`\ es it; nothing runs per inference) → every
``interval_s`` what it gained becomes a window, written to
the :class:`Outbox` → a worker thread hands outbox rows to paho in order (at most
``max_inflight`` unacknowledged) → a row is deleted once paho reports its PUBACK.
paho resends unacknowledged messages after a reconnect; after a process restart the
outbox is replayed from the oldest row. Birth (retained, QoS 1) is published on every
connect, the Will says ``offline`` for an unclean loss (with no time: only its arrival
tells when), :meth:`close` says it cleanly.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import paho.mqtt.client as paho

from device_agent.mqtt import BrokerOptions, MqttClient, Will
from device_agent.protocol import topics
from device_agent.protocol.messages import State, Status
from device_agent.stats import RunStats, StatsCursor
from device_agent.telemetry.outbox import Outbox
from device_agent.telemetry.system import SystemSampler
from device_agent.telemetry.window import WindowAggregator

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TelemetryOptions:
    """What the agent reports and how. ``outbox`` defaults to :func:`default_outbox`."""

    fleet: str
    device_id: str
    interval_s: float = 10.0
    qos: int = 1
    outbox: Path | None = None
    outbox_cap: int = 10_000
    agent_version: str = ""
    model_name: str = ""
    model_version: str = ""
    model_hash: str = ""
    boot_id: str = ""  # the agent process's identity; a new one when empty
    accelerator: str = ""


def default_outbox(options: TelemetryOptions) -> Path:
    """``$XDG_STATE_HOME/edge-agent/outbox-FLEET-DEVICE.db`` (not /tmp: it must survive reboots)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    root = base / "edge-agent"
    root.mkdir(parents=True, exist_ok=True)
    return root / f"outbox-{options.fleet}-{options.device_id}.db"


class TelemetryPublisher:
    """Publishes the windows of one serve loop's statistics and owns the MQTT connection."""

    def __init__(
        self,
        broker: BrokerOptions | MqttClient,
        options: TelemetryOptions,
        *,
        clock: Callable[[], float] = time.time,
    ):
        topics.check_id(options.fleet, "fleet")
        topics.check_id(options.device_id)
        self.options, self.clock = options, clock
        self.boot_id = options.boot_id or uuid.uuid4().hex[:16]
        self.booted = clock()
        self.state_topic = topics.state(options.fleet, options.device_id)
        self.telemetry_topic = topics.telemetry(options.fleet, options.device_id)
        self.outbox = Outbox(options.outbox or default_outbox(options), cap=options.outbox_cap)
        self._agg = WindowAggregator(boot_id=self.boot_id, start=clock())
        self._agg_lock = threading.Lock()
        self._cursor: StatsCursor | None = None
        self._sampler = SystemSampler()
        self._inflight: list[tuple[paho.MQTTMessageInfo, int]] = []
        self._sent_upto = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._run, name="telemetry", daemon=True)
        # Given options, the publisher owns its connection; given a client (the agent's
        # one connection), it registers its Will and hooks on it and the owner starts it.
        self._owns = isinstance(broker, BrokerOptions)
        self.mqtt = MqttClient(broker) if isinstance(broker, BrokerOptions) else broker
        self.mqtt.set_will(Will(topic=self.state_topic, payload=self._state(Status.OFFLINE).to_payload()))
        self.mqtt.add_connect_hook(self._on_connect)
        self.mqtt.add_publish_hook(lambda mid: self._wake.set())

    @property
    def windows_closed(self) -> int:
        """How many windows this process has closed (the next window's seq)."""
        return self._agg.seq

    def watch(self, stats: RunStats) -> None:
        """Report what ``stats`` gains from now on (the serve loop's, passed to ``serve``)."""
        with self._agg_lock:
            self._cursor = StatsCursor(stats)

    def start(self) -> TelemetryPublisher:
        """Start the window thread (and the connection, when the publisher owns it)."""
        if self._owns:
            self.mqtt.start()
        self._worker.start()
        return self

    def _state(self, status: Status, *, clean: bool = False) -> State:
        """``offline`` and not ``clean`` is the Will: it carries no ``ts``, since the broker
        publishes it later, when it notices the loss."""
        o = self.options
        will = status is Status.OFFLINE and not clean
        return State(
            status=status,
            boot_id=self.boot_id,
            ts=None if will else self.clock(),
            booted=self.booted,
            agent_version=o.agent_version,
            model_name=o.model_name,
            model_version=o.model_version,
            model_hash=o.model_hash,
            accelerator=o.accelerator,
            clean=clean,
        )

    def set_model(self, *, name: str, version: str, model_hash: str) -> None:
        """A model swap (update or rollback): a new retained birth names the model now served."""
        from dataclasses import replace

        self.options = replace(self.options, model_name=name, model_version=version, model_hash=model_hash)
        self.mqtt.publish(self.state_topic, self._state(Status.ONLINE).to_payload(), qos=1, retain=True)

    def _on_connect(self) -> None:  # paho thread
        self.mqtt.publish(
            self.state_topic, self._state(Status.ONLINE).to_payload(), qos=1, retain=True
        )
        self._wake.set()

    def close_window(self) -> None:
        """Close the current window now and queue it in the outbox."""
        sample = self._sampler.sample()
        with self._agg_lock:
            if self._cursor is not None:
                self._agg.add(self._cursor.read())
            window = self._agg.close(
                self.clock(), system=sample, model_version=self.options.model_version
            )
        self.outbox.put(
            self.telemetry_topic,
            lambda dropped: replace(window, dropped=dropped).to_payload(),
            qos=self.options.qos,
        )
        self._wake.set()

    def _run(self) -> None:
        next_close = time.monotonic() + self.options.interval_s
        while not self._stopping.is_set():
            # Sleeps until the window closes unless paho reports a PUBACK or a connect:
            # every other wake-up would take the GIL from the serve loop for nothing.
            self._wake.wait(timeout=max(0.0, next_close - time.monotonic()))
            self._wake.clear()
            if self._stopping.is_set():
                return  # close() closes the last window itself
            if time.monotonic() >= next_close:
                next_close += self.options.interval_s
                self._guard(self.close_window)
            self._guard(self._pump)

    def _guard(self, fn: Callable[[], None]) -> None:
        # Telemetry must never stop inference: log and carry on.
        try:
            fn()
        except Exception:
            log.exception("telemetry step failed")

    def _pump(self) -> None:
        """Delete acknowledged rows, then hand the next rows to paho (in id order)."""
        done = {rid for info, rid in self._inflight if info.is_published()}
        if done:
            self.outbox.delete(*sorted(done))
            self._inflight = [(i, r) for i, r in self._inflight if r not in done]
        if not self.mqtt.connected:
            return
        room = self.mqtt.options.max_inflight - len(self._inflight)
        for entry in self.outbox.pending(self._sent_upto, limit=max(room, 0)):
            info = self.mqtt.publish(entry.topic, entry.payload, qos=entry.qos)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                # The connection dropped under us: the row stays in the outbox and is sent
                # again (a copy paho may also resend is deduplicated by the collector).
                break
            if entry.qos == 0:
                self.outbox.delete(entry.id)
            else:
                self._inflight.append((info, entry.id))
            self._sent_upto = entry.id

    def close(self, *, grace_s: float = 3.0) -> None:
        """Clean shutdown: last window, deliver what we can, ``offline``, DISCONNECT (no Will)."""
        self._stopping.set()
        self._wake.set()
        self._worker.join(timeout=5)
        self._guard(self.close_window)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and self.mqtt.connected:
            self._pump()
            if not self._inflight and not self.outbox.pending(self._sent_upto, limit=1):
                break
            time.sleep(0.02)
        if self.mqtt.connected:
            info = self.mqtt.publish(
                self.state_topic,
                self._state(Status.OFFLINE, clean=True).to_payload(),
                qos=1,
                retain=True,
            )
            info.wait_for_publish(timeout=max(0.5, deadline - time.monotonic()))
        if self._owns:
            self.mqtt.stop()
        left = len(self.outbox)
        if left:
            log.warning("telemetry: %d window(s) not delivered to %s, kept in %s for the next run",
                        left, self.mqtt.options.url, self.outbox.path)
        self.outbox.close()
