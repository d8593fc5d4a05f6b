"""``edge collector``: MQTT → batched, deduplicated rows in SQLite or PostgreSQL.

The MQTT thread (:class:`~edge_sdk.fleet.subscriber.Subscriber`) parses what each read
brought and enqueues it; one writer thread writes a batch of reads in one transaction and
only then acknowledges the batch, in the order received as MQTT 3.1.1 requires. A crash before the
commit therefore loses nothing: the broker redelivers to the persistent session
(clean_session=False) and the unique (fleet, device, boot_id, seq) constraint drops
what was already stored. A payload that fails validation is counted, logged and
acknowledged, never stored.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

from device_agent.mqtt import BrokerOptions
from device_agent.protocol import topics
from device_agent.protocol.messages import (
    MAX_PAYLOAD,
    DeployStatus,
    MessageError,
    State,
    TelemetryWindow,
)
from edge_sdk.fleet.homeassistant import Mirror
from edge_sdk.fleet.http_server import FleetHttpServer, HttpOptions, serve_http
from edge_sdk.fleet.metrics import Metrics
from edge_sdk.fleet.mqtt_codec import Publish
from edge_sdk.fleet.store import Batch, Store, WriteResult, exits_json, open_store
from edge_sdk.fleet.subscriber import Subscriber
from edge_sdk.fleet.window_decoder import decode_window

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class CollectorOptions:
    """Where to read, where to write, how to batch."""

    broker: BrokerOptions
    db: str
    share_group: str | None = None
    fleet: str = "+"
    # A batch takes what has arrived, up to this: a collector that falls behind writes bigger
    # batches, and the per-device upserts (rollups, exits, latest window, last seen) then
    # cost less per window (PostgreSQL, 1,000 devices: 5,000 → 20,000 cut the server's CPU
    # per window from 35 to 26 µs here); QoS 1 keeps the unacknowledged rest in the broker.
    batch_max: int = 20_000
    retention_days: float | None = None  # raw windows, deploy reports, alerts
    rollup_retention_days: float | None = None  # hourly rollups (kept for months, typically)
    metrics_port: int | None = None  # an alias: serve /metrics (and the dashboard) on loopback
    http: HttpOptions | None = None  # the dashboard and /metrics
    alert_interval_s: float = 30.0
    # A window may end this far past the collector's clock (device clocks drift, NTP may
    # not have synced yet after a boot); later than that it is refused as "future".
    max_clock_skew_s: float = 300.0
    homeassistant: str | None = None  # MQTT discovery prefix; None: no Home Assistant
    homeassistant_interval_s: float = 10.0

    def http_options(self) -> HttpOptions | None:
        """Where the one HTTP server listens, if anywhere (``http`` wins over ``metrics_port``)."""
        if self.http is None and self.metrics_port is not None:
            return HttpOptions(port=self.metrics_port)
        return self.http


class _Read(NamedTuple):
    """The messages of one socket read, parsed: what the writer stores and acknowledges."""

    generation: int  # the connection they came on (acknowledged only on that one)
    msgs: list[Publish]
    batch: Batch
    kinds: Counter[str]  # message kind → count ('' for those not stored)


_TELEMETRY = topics.Kind.TELEMETRY
_UNKNOWN = object()
_MAX_ROUTES = 100_000  # cached topic parses; cleared when a flood of odd topics fills it


def default_client_id(group: str | None) -> str:
    """A stable MQTT client id from the share group and host name (so the session persists)."""
    host = "".join(c if c.isalnum() or c in "_-" else "-" for c in socket.gethostname())
    return f"edge-collector-{group or 'solo'}-{host}"[:64]


_PARSERS = {
    topics.Kind.STATE: State.from_payload,
    topics.Kind.TELEMETRY: TelemetryWindow.from_payload,
    topics.Kind.DEPLOY_STATUS: DeployStatus.from_payload,
}


class Collector:
    """Run with :meth:`start` / :meth:`stop` (or ``edge collector``)."""

    def __init__(self, options: CollectorOptions, *, metrics: Metrics | None = None):
        self.options = options
        self.metrics = metrics or Metrics()
        self._queue: queue.SimpleQueue[_Read] = queue.SimpleQueue()
        self._routes: dict[str, topics.Parsed | None] = {}
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self.subscribed = threading.Event()  # set after the broker's SUBACK
        self._error: BaseException | None = None
        self.filter = topics.shared(topics.fleet_filter(options.fleet), options.share_group)
        self.mqtt = Subscriber(
            options.broker, self.filter, on_messages=self._on_messages,
            on_connect=self._on_connect,
            on_disconnect=lambda: self.metrics.set("edge_collector_connected", 0),
            on_subscribe=self.subscribed.set, max_packet=MAX_PAYLOAD + 4096,
        )  # fmt: skip
        self._writer = threading.Thread(
            target=self._write_loop, name="collector-writer", daemon=True
        )
        self.metrics_server: FleetHttpServer | None = None  # the dashboard and /metrics
        self._ha = Mirror(options.homeassistant) if options.homeassistant else None
        self._next_prune = 0.0

    def _on_connect(self) -> None:
        self.metrics.set("edge_collector_connected", 1, "1 while connected to the broker")

    def _on_messages(self, msgs: list[Publish], generation: int) -> None:  # MQTT thread
        # Parsed here, not on the writer: psycopg and sqlite3 release the GIL while the
        # database works, so parsing the next reads overlaps the write of the last batch
        # instead of adding to it (the writer is the collector's bottleneck).
        at = time.time()
        batch, kinds = Batch(), Counter[str]()
        for msg in msgs:
            kinds[self._parse_into(batch, msg, at)] += 1
        self._queue.put(_Read(generation, msgs, batch, kinds))

    def start(self, timeout: float = 30.0) -> Collector:
        """Open the database (migrating it), then connect and subscribe."""
        self._writer.start()
        if not self._ready.wait(timeout) or self._error:
            raise self._error or TimeoutError("collector store did not open")
        http = self.options.http_options()
        if http is not None:
            from edge_sdk.fleet.dashboard import DashboardData

            data = DashboardData(lambda: open_store(self.options.db))
            self.metrics_server = serve_http(http, data=data, metrics=self.metrics)
        self.mqtt.start()
        return self

    def stop(self) -> None:
        """Write what has arrived, then disconnect and stop the HTTP server."""
        self._stopping.set()
        self._writer.join(timeout=30)
        self.mqtt.stop()
        if self.metrics_server:
            self.metrics_server.stop()

    def _write_loop(self) -> None:
        try:
            store = open_store(self.options.db)
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        next_chores = next_ha = 0.0
        held: list[_Read] = []  # refused whole: retried with what comes next
        try:
            while not self._stopping.is_set() or not self._queue.empty():
                # Held messages wait for new ones to be written with; once a whole batch of
                # them is refused, the database refuses everything: retry them alone.
                room = sum(len(r.msgs) for r in held) < self.options.batch_max
                batch = held + (self._drain() if room else [])
                held = []
                if batch and not self._store(store, batch):
                    held = batch
                    time.sleep(1.0)
                if time.monotonic() >= next_chores:
                    next_chores = time.monotonic() + self.options.alert_interval_s
                    self._chores(store)
                if self._ha is not None and time.monotonic() >= next_ha:
                    next_ha = time.monotonic() + self.options.homeassistant_interval_s
                    self._homeassistant(store, self._ha)
        finally:
            store.close()

    def _drain(self) -> list[_Read]:
        """Whatever has arrived, as reads, up to ``batch_max`` messages."""
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        reads, n = [first], len(first.msgs)
        while n < self.options.batch_max:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            reads.append(item)
            n += len(item.msgs)
        return reads

    def _store(self, store: Store, reads: list[_Read]) -> bool:
        """Store and acknowledge ``reads``; ``False`` when the database refused every
        message: then nothing is acknowledged. A message is rejected as refused only when
        the database took others in the same batch; if it takes none, the problem is the
        database's (a new constraint, a full table), not the messages'."""
        batch, kinds = Batch(), Counter[str]()
        for r in reads:
            batch.extend(r.batch)
            kinds.update(r.kinds)
        t0 = time.perf_counter()
        refused: list[tuple[Batch, Exception]] = []
        result = self._write(store, batch, refused)
        m = self.metrics
        if refused and len(refused) == len(batch):
            m.inc("edge_collector_write_errors_total", 1, "failed batch writes")
            log.error("the database refused all %d messages of a batch (%s); not acknowledged, "
                      "retrying with the next messages", len(batch), refused[0][1])
            return False
        for one, error in refused:
            m.inc("edge_collector_rejected_total", 1, "invalid payloads", reason="database")
            log.error("rejected a message the database refused (%s): %s", error, _describe(one))
        for kind, n in kinds.items():
            if kind:
                m.inc("edge_collector_messages_total", n, "messages received", kind=kind)
        m.inc("edge_collector_batch_seconds_sum", time.perf_counter() - t0, "time in batch writes")
        m.inc("edge_collector_batches_total", 1, "batches written")
        m.inc("edge_collector_windows_stored_total", result.inserted, "telemetry windows stored")
        m.inc("edge_collector_duplicates_total", result.duplicates, "duplicate windows skipped")
        for r in reads:
            self.mqtt.ack(r.generation, [msg.mid for msg in r.msgs if msg.qos])
        return True

    def _write(self, store: Store, batch: Batch, refused: list[tuple[Batch, Exception]]) -> WriteResult:
        """Store ``batch``. While the database is away, retry (nothing is acknowledged, so
        nothing is lost); when it refuses the data, halve the batch until each refused
        message is alone and add it to ``refused``: one bad message must not stall the
        fleet's ingest."""
        while True:
            try:
                return store.write(batch)
            except Exception as e:
                if store.refused(e):
                    return self._split(store, batch, e, refused)
                log.exception("writing %d messages failed; retrying", len(batch))
                self.metrics.inc("edge_collector_write_errors_total", 1, "failed batch writes")
                time.sleep(1.0)
                try:
                    store.recover()
                except Exception:
                    log.exception("reconnecting to the database failed; retrying")

    def _split(
        self, store: Store, batch: Batch, error: Exception, refused: list[tuple[Batch, Exception]]
    ) -> WriteResult:
        if len(batch) <= 1:
            refused.append((batch, error))
            return WriteResult(0, 0)
        first, second = batch.halves()
        a, b = self._write(store, first, refused), self._write(store, second, refused)
        return WriteResult(a.inserted + b.inserted, a.duplicates + b.duplicates)

    def _route(self, topic: str) -> topics.Parsed | None:
        parsed = self._routes.get(topic, _UNKNOWN)
        if parsed is _UNKNOWN:
            if len(self._routes) >= _MAX_ROUTES:
                self._routes.clear()
            parsed = self._routes[topic] = topics.parse(topic)
        return parsed  # type: ignore[return-value]

    def _parse_into(self, batch: Batch, msg: Publish, at: float) -> str:
        """Add one message to ``batch``; returns its kind for the counters ('' if ignored)."""
        topic, payload = msg.topic, msg.payload
        parsed = self._route(topic)
        if parsed is None or parsed.kind not in _PARSERS:
            kind = "alerts" if topic.endswith("/alerts") else "other"
            self.metrics.inc("edge_collector_ignored_total", 1, "messages not stored", kind=kind)
            return ""
        if not payload and not msg.oversize and parsed.kind is topics.Kind.STATE:
            # An empty retained birth: ``edge fleet retire`` cleared it from the broker.
            self.metrics.inc("edge_collector_ignored_total", 1, "messages not stored", kind="cleared")
            return ""
        try:
            size = msg.oversize or len(payload)
            if size > MAX_PAYLOAD:
                raise MessageError(f"payload of {size} bytes over {MAX_PAYLOAD}", "oversized")
            if parsed.kind is _TELEMETRY:
                # The fleet's bulk: straight from the validated dict to a row, no object.
                row, exits = decode_window(payload, not_after=at + self.options.max_clock_skew_s)
                batch.rows.append((parsed.fleet, parsed.device, *row, exits_json(exits), at))
                return _TELEMETRY.value
            message = _PARSERS[parsed.kind](payload)
        except MessageError as e:
            self.metrics.inc(
                "edge_collector_rejected_total", 1, "invalid payloads", reason=e.reason
            )
            log.warning("rejected %s (%s): %s", topic, e.reason, e)
            return parsed.kind.value
        except Exception:  # a payload the checks did not foresee must not stop the writer
            self.metrics.inc("edge_collector_rejected_total", 1, "invalid payloads", reason="error")
            log.exception("rejected %s: unexpected error while parsing", topic)
            return parsed.kind.value
        item = (parsed.fleet, parsed.device, message, at)
        if isinstance(message, State):
            batch.states.append(item)  # type: ignore[arg-type]
        else:
            batch.deploys.append(item)  # type: ignore[arg-type]
        return parsed.kind.value

    def _prune(self, store: Store) -> None:
        raw, hourly, now = self.options.retention_days, self.options.rollup_retention_days, time.time()
        if raw or hourly:
            store.prune(now - raw * 86400 if raw else None,
                        rollups_older_than={3600: now - hourly * 86400} if hourly else None)  # fmt: skip

    def _homeassistant(self, store: Store, mirror: Mirror) -> None:
        """Publish (retained) the discovery configs and values that changed since last time."""
        if not self.mqtt.connected:
            return  # the next round sends everything still different
        try:
            updates = mirror.updates(store.devices())
        except Exception:
            log.exception("reading devices for Home Assistant failed")
            return
        for topic, payload in updates:
            self.mqtt.publish(topic, payload, retain=True)
            mirror.sent(topic, payload)
        self.metrics.inc("edge_collector_homeassistant_published_total", len(updates),
                         "Home Assistant discovery configs and states published")  # fmt: skip

    def _chores(self, store: Store) -> None:
        """Retention and alert evaluation, between batches on the writer thread."""
        from edge_sdk.fleet.alerts import AlertRules, evaluate_store

        try:
            if time.monotonic() >= self._next_prune:
                # Hourly at most: retention counts in days, and the raw table has no index
                # on time alone (one would slow every insert), so a prune reads it all.
                self._next_prune = time.monotonic() + 3600
                self._prune(store)
            new = evaluate_store(store, AlertRules(), now=time.time())
            for a in new:
                self.mqtt.publish(topics.alerts(a.fleet), a.to_payload())
            self.metrics.inc("edge_collector_alerts_total", len(new), "alerts raised")
        except Exception:
            log.exception("collector chores failed")


def _describe(batch: Batch) -> str:
    """fleet/device and what kind of message a one-item batch holds, for the log."""
    for kind, item in batch.items():
        return f"{item[0]}/{item[1]} ({'telemetry' if kind in ('rows', 'windows') else kind[:-1]})"
    return "nothing"
