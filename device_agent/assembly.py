"""The agent's composition root: one :class:`AgentConfig` → the parts, wired once.

``edge-agent run``, ``daemon`` and ``listen`` are thin front ends over :func:`run_agent`;
they differ only in :class:`Mode`: what is served (a bundle or the store's current
model, or nothing) and whether updates are taken. Everything else (source, cache,
batching, telemetry, broker, trust, store) is assembled here, the same way for all; the
model is opened and served by :class:`~device_agent.agent.Agent`, the class a Python
caller uses too.

One process holds one :class:`~device_agent.mqtt.MqttClient` (one client id: the device
id unless configured) shared by telemetry, the update listener, ``mqtt:`` sources and
the ``mqtt`` sink and the benchmark listener (``bench``: the host times a candidate
model on this device's CPU, in a separate process). A fatal error in the update listener stops the process with exit
code 1 so systemd (``Restart=on-failure``) starts it again.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from device_agent.agent import Agent, engine_options_of, runtime_options_of, trust_store
from device_agent.config import AgentConfig
from device_agent.errors import EdgeError
from device_agent.trust import TrustStore

if TYPE_CHECKING:  # imported where used: a plain `run` needs neither (cold start)
    from device_agent.mqtt import MqttClient
    from device_agent.update.store import ModelStore

log = logging.getLogger(__name__)


class Mode(enum.Enum):
    """What a front end runs."""

    RUN = "run"  # serve a bundle or the store's current model
    DAEMON = "daemon"  # serve the store's current model and take updates (probation, rollback)
    LISTEN = "listen"  # take updates only

    @property
    def serves(self) -> bool:
        """Whether this mode serves a model."""
        return self is not Mode.LISTEN

    @property
    def updates(self) -> bool:
        """Whether this mode takes updates."""
        return self is not Mode.RUN


Echo = Callable[[str], None]


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


@dataclass
class _Parts:
    """What :func:`run_agent` assembled; closed in reverse order."""

    stop: threading.Event = field(default_factory=threading.Event)
    fatal: list[str] = field(default_factory=list)
    mqtt: MqttClient | None = None
    listener: Any = None
    bench: Any = None
    telemetry: Any = None
    source: Any = None
    sinks: list[Any] = field(default_factory=list)
    # One identity per agent process, shared by telemetry and deploy/status, so the
    # collector can tie a deployment report to the boot whose windows it stores.
    boot_id: str = field(default_factory=lambda: os.urandom(8).hex())  # as uuid4's 16 hex digits, without uuid


def check(config: AgentConfig, mode: Mode, bundle: Path | None) -> None:
    """Refuse a configuration the mode cannot run, naming the missing option."""
    if mode is Mode.RUN and (bundle is None) == (config.store is None):
        raise EdgeError("run: give either a BUNDLE or --store DIR (exactly one)")
    if mode.updates and config.store is None:
        raise EdgeError(f"{mode.value}: --store: expected the model store directory "
                        "(flag, [agent] store or EDGE_AGENT_STORE), found nothing")
    if mode is Mode.LISTEN and config.broker is None:
        raise EdgeError("listen: --broker: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], found nothing")
    if mode.serves and not config.serve.source:
        raise EdgeError(f"{mode.value}: --source: expected a source (flag, [serve] source or "
                        "EDGE_AGENT_SERVE_SOURCE), found nothing")
    if (config.broker is not None or config.serve.sink != "stdout") and not config.device_id:
        raise EdgeError("--device-id: expected an id with --broker or an mqtt sink, found nothing")
    if config.telemetry.qos not in (0, 1):
        raise EdgeError(f"--qos: expected 0 or 1, found {config.telemetry.qos}")
    if config.telemetry.interval <= 0:
        raise EdgeError(f"--telemetry-interval: expected seconds > 0, found {config.telemetry.interval}")


def run_agent(config: AgentConfig, mode: Mode, *, bundle: Path | None = None, echo: Echo = _stderr) -> int:
    """Assemble and run the agent until its source ends or it is stopped; the exit code."""
    check(config, mode, bundle)
    parts = _Parts()
    _stop_on_sigterm(parts)
    store = None
    if config.store is not None:
        from device_agent.update.store import ModelStore

        store = ModelStore(config.store).init()
    trust = trust_store(config, store)
    if store is not None:
        store.trust = trust if trust.keys else None
    try:
        with _assembled(config, mode, parts, store, trust, bundle, echo) as serve_it:
            serve_it()
    except KeyboardInterrupt:
        echo("stopped")
    except EdgeError:
        raise
    except Exception as e:  # a bug or a broken disk: logged in full, exit 1 (systemd restarts)
        log.exception("the agent failed")
        parts.fatal.append(f"{type(e).__name__}: {e}")
    if parts.fatal:
        echo(f"error: {parts.fatal[0]}")
        return 1
    return 0


@contextlib.contextmanager
def _assembled(config: AgentConfig, mode: Mode, parts: _Parts, store: ModelStore | None, trust: TrustStore,
               bundle: Path | None, echo: Echo) -> Iterator[Callable[[], None]]:
    try:
        if config.broker is not None:
            from device_agent.mqtt import MqttClient

            # Persistent when it takes updates: the broker keeps QoS 1 deploy messages
            # for the agent while it restarts.
            parts.mqtt = MqttClient(replace(config.broker, clean_session=not mode.updates))
        if parts.mqtt is not None and config.device_id is not None:
            parts.bench = _bench(config, parts.mqtt, trust)
            parts.bench.start(parts.stop)
        if mode.updates:
            assert store is not None
            parts.listener = _listener(config, parts, store, trust)
        if not mode.serves:
            yield lambda: _listen(config, parts, echo)
            return
        with Agent.open(config, bundle=bundle, store=store, trust=trust) as agent:
            yield lambda: _serve(config, mode, parts, store, bundle, agent, echo)
    finally:
        _close(parts)


def _listener(config: AgentConfig, parts: _Parts, store: ModelStore, trust: TrustStore) -> Any:
    from device_agent import __version__
    from device_agent.update.agent import env_checkpoint
    from device_agent.update.flow import UpdatePolicy

    if parts.mqtt is None or config.device_id is None:
        return None
    from device_agent.update.transport import DeployListener

    policy = UpdatePolicy(agent_version=__version__, isolate=config.update.isolate,
                          allow_downgrade=config.update.allow_downgrade)
    return DeployListener(store=store, mqtt=parts.mqtt, fleet=config.fleet, device=config.device_id,
                          trust=trust, policy=policy, checkpoint=env_checkpoint(), boot_id=parts.boot_id)


def _bench(config: AgentConfig, mqtt: MqttClient, trust: TrustStore) -> Any:
    from device_agent.bench.listener import BenchLimits, BenchListener

    assert config.device_id is not None
    return BenchListener(mqtt=mqtt, fleet=config.fleet, device=config.device_id, trust=trust,
                         limits=BenchLimits(threads=config.serve.threads))


def _listen(config: AgentConfig, parts: _Parts, echo: Echo) -> None:
    assert parts.mqtt is not None and config.broker is not None
    parts.mqtt.start()
    echo(f"listening on {config.broker.url} as {config.fleet}/{config.device_id}")
    parts.listener.run(parts.stop)


def _run_listener(parts: _Parts) -> None:
    """The update thread: any unexpected error is fatal for the process (systemd restarts it)."""
    try:
        parts.listener.run(parts.stop)
    except Exception as e:  # reported, then the process exits 1
        log.exception("the update listener failed")
        parts.fatal.append(f"update listener: {type(e).__name__}: {e}")
        parts.stop.set()
        if parts.source is not None:
            parts.source.close()


def _serve(config: AgentConfig, mode: Mode, parts: _Parts, store: ModelStore | None, bundle: Path | None,
           agent: Agent, echo: Echo) -> None:
    from device_agent.stats import RunStats

    served = bundle if bundle is not None else (store.current_dir() if store else None)
    if parts.mqtt is not None:
        parts.telemetry = _telemetry(config, parts.mqtt, served, agent.engine, parts.boot_id)
        parts.mqtt.start()
    if parts.listener is not None:
        threading.Thread(target=_run_listener, args=(parts,), name="updates", daemon=True).start()
    parts.source = _source(config, parts.mqtt)
    parts.sinks = _sinks(config, parts.mqtt)
    stats = RunStats()
    if parts.telemetry is not None:
        parts.telemetry.watch(stats)
    observers: list[Any] = []
    if mode is Mode.DAEMON:
        assert store is not None
        observers.append(_live_updates(config, parts, store, agent.swappable(), echo))
        echo(f"serving {store.current_id()} from {store.root}")
    agent.serve(parts.source, parts.sinks, observers=observers, stats=stats)
    if mode is Mode.RUN and not parts.fatal:
        import json

        print(json.dumps({"summary": stats.summary()}), flush=True)
        if stats.count == 0 and stats.errors > 0:
            # Each bad reading was skipped (and logged); a run that served none is an error.
            raise EdgeError(f"no reading was served: all {stats.errors} failed (reasons logged above)")


def _telemetry(config: AgentConfig, mqtt: MqttClient, served: Path | None, engine: Any, boot_id: str) -> Any:
    from device_agent import __version__
    from device_agent.telemetry.agent import model_hash
    from device_agent.telemetry.publisher import TelemetryOptions, TelemetryPublisher

    assert config.device_id is not None
    m, t = engine.manifest, config.telemetry
    options = TelemetryOptions(
        fleet=config.fleet, device_id=config.device_id, interval_s=t.interval, qos=t.qos, outbox=t.outbox,
        agent_version=__version__, model_name=m.name if m else (served.stem if served else "unknown"),
        model_version=m.version if m else "", model_hash=model_hash(served) if served is not None else "",
        boot_id=boot_id, accelerator=engine.model.accelerator,
    )
    return TelemetryPublisher(mqtt, options).start()


def _source(config: AgentConfig, mqtt: MqttClient | None) -> Any:
    from device_agent.sources import open_source

    s = config.serve
    assert s.source is not None
    return open_source(s.source, connection=mqtt, **({"rate": str(s.rate)} if s.rate else {}))


def _sinks(config: AgentConfig, mqtt: MqttClient | None) -> list[Any]:
    from device_agent.sinks import open_sink

    s = config.serve
    if s.sink == "stdout":
        return [] if s.quiet else [open_sink("stdout")]
    assert config.device_id is not None
    return [open_sink(s.sink, fleet=config.fleet, device_id=config.device_id, qos=s.results_qos,
                      connection=mqtt)]


def _live_updates(config: AgentConfig, parts: _Parts, store: ModelStore, ref: Any, echo: Echo) -> Any:
    import json

    from device_agent.update.flow import UpdateResult
    from device_agent.update.live import LiveUpdates
    from device_agent.update.probation import ProbationPolicy

    def report(result: UpdateResult) -> None:
        echo(json.dumps({"update": result.to_dict()}))
        if parts.listener is not None:
            parts.listener.report(result)

    def swapped(engine: Any) -> None:
        # On the serve thread: the slot LiveUpdates now serves, by id (s.current() would
        # re-hash every member, and a later deploy may have moved `current`).
        m = engine.manifest
        if parts.telemetry is not None and m is not None and live.serving is not None:
            from device_agent.telemetry.agent import model_hash

            parts.telemetry.set_model(name=m.name, version=m.version,
                                      model_hash=model_hash(store.slots / live.serving))

    s = config.serve
    live = LiveUpdates(store, ref, policy=ProbationPolicy(min_samples=config.update.probation_samples),
                       report=report, on_swap=swapped, runtime=s.runtime,
                       options=runtime_options_of(s), engine_options=engine_options_of(s))
    return live


def _close(parts: _Parts) -> None:
    parts.stop.set()
    for sink in parts.sinks:
        _quietly(sink.close)
    if parts.source is not None:
        _quietly(parts.source.close)
    if parts.telemetry is not None:
        _quietly(parts.telemetry.close)
    if parts.mqtt is not None:
        _quietly(parts.mqtt.stop)


def _quietly(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:  # shutting down: log, and close the rest
        log.exception("while shutting down")


def _stop_on_sigterm(parts: _Parts) -> None:
    """SIGTERM (systemd stop) ends the agent like Ctrl-C: telemetry says ``offline`` cleanly."""

    def handler(signum: int, frame: FrameType | None) -> None:
        parts.stop.set()
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
