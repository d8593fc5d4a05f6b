"""``edge-agent install``, ``status`` and ``healthcheck``: the update flow from the shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from device_agent.errors import EdgeError


def register(app: typer.Typer) -> None:
    app.command("install")(install)
    app.command("status")(status)
    app.command("healthcheck")(healthcheck)
    app.command("listen")(listen)
    app.command("daemon")(daemon)


def install(
    bundle: Path = typer.Argument(..., help="A signed .edgepkg bundle"),
    store: Path = typer.Option(..., "--store", help="The agent's model store directory"),
    key: list[Path] = typer.Option([], "--key", help="Extra trusted public key (file or dir)"),
    device_type: str = typer.Option(None, "--device-type", help="Override STORE/device.json"),
    allow_downgrade: bool = typer.Option(False, "--allow-downgrade", help="Accept an older version"),
    isolate: bool = typer.Option(False, "--isolate", help="Health-check in a child process"),
    latency_budget_ms: float = typer.Option(1000.0, "--latency-budget-ms"),
) -> None:
    """Verify, stage, health-check and atomically switch to BUNDLE; print the result as JSON."""
    from device_agent import __version__
    from device_agent.cli_support import check_output_dir
    from device_agent.update.agent import env_checkpoint, trust_for
    from device_agent.update.flow import Status, UpdateFlow, UpdatePolicy
    from device_agent.update.health import HealthOptions
    from device_agent.update.store import ModelStore

    try:
        check_output_dir(store, "model store")
        s = ModelStore(store)
        s.recover()
        policy = UpdatePolicy(
            agent_version=__version__, device_type=device_type, allow_downgrade=allow_downgrade,
            isolate=isolate, health=HealthOptions(latency_budget_ms=latency_budget_ms),
        )
        flow = UpdateFlow(s, trust_for(s, key), policy, checkpoint=env_checkpoint())
        result = flow.run(bundle)
    except EdgeError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result.to_dict()))
    if result.status != Status.ACTIVE:
        raise typer.Exit(1)


def status(store: Path = typer.Option(..., "--store", help="The agent's model store")) -> None:
    """Recover the store and print what it serves, as JSON."""
    from device_agent.update.store import ModelStore

    try:
        if not store.is_dir():
            # A read-only look: never create a store by asking about one.
            raise EdgeError(f"--store {store}: no model store there (install a bundle first: "
                            f"edge-agent install BUNDLE --store {store})")
        s = ModelStore(store)
        rec = s.recover()
        slot = s.current()
    except EdgeError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps({
        "current": rec.current,
        "previous": s.previous_id(),
        "floor": s.floor(),
        "name": slot.manifest.name if slot else None,
        "version": slot.manifest.version if slot else None,
        "staging_removed": rec.staging_removed,
        "fell_back": rec.fell_back,
    }))


def healthcheck(
    slot: Path = typer.Argument(..., help="An unpacked bundle directory (a store slot)"),
    rtol: float = typer.Option(1e-3, "--rtol"),
    atol: float = typer.Option(1e-3, "--atol"),
    latency_budget_ms: float = typer.Option(1000.0, "--latency-budget-ms"),
) -> None:
    """Load, warm up and validate one slot; print a JSON HealthReport (used by --isolate)."""
    from device_agent.manifest import MANIFEST_NAME, Manifest
    from device_agent.update.health import HealthOptions, HealthReport, check_slot

    opts = HealthOptions(rtol=rtol, atol=atol, latency_budget_ms=latency_budget_ms)
    try:
        manifest = Manifest.from_json((slot / MANIFEST_NAME).read_bytes())
        report = check_slot(slot, manifest, opts)
    except (EdgeError, OSError) as e:
        report = HealthReport(False, str(e))
    typer.echo(report.to_json())
    if not report.ok:
        raise typer.Exit(1)


def listen(
    store: Path = typer.Option(..., "--store", help="The agent's model store directory"),
    broker: str = typer.Option(..., "--broker", help="mqtt://HOST[:PORT]"),
    device_id: str = typer.Option(..., "--device-id"),
    fleet: str = typer.Option("default", "--fleet"),
    isolate: bool = typer.Option(False, "--isolate", help="Health-check in a child process"),
    allow_downgrade: bool = typer.Option(False, "--allow-downgrade"),
) -> None:
    """Receive deployments on the device's deploy topic and apply them (until Ctrl-C)."""
    import signal
    import threading

    from device_agent import __version__
    from device_agent.update.agent import env_checkpoint, trust_for
    from device_agent.update.flow import UpdatePolicy
    from device_agent.update.store import ModelStore
    from device_agent.update.transport import Broker, DeployListener

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        s = ModelStore(store).init()
        policy = UpdatePolicy(agent_version=__version__, isolate=isolate, allow_downgrade=allow_downgrade)
        listener = DeployListener(store=s, broker=Broker.parse(broker), fleet=fleet, device=device_id,
                                  trust=trust_for(s), policy=policy, checkpoint=env_checkpoint())
        typer.echo(f"listening on {broker} as {fleet}/{device_id}", err=True)
        listener.run(stop)
    except KeyboardInterrupt:
        stop.set()
    except EdgeError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def daemon(
    store: Path = typer.Option(..., "--store", help="The agent's model store directory"),
    source: str = typer.Option(..., "--source", help="Input: file:DATA.npz[?rate=HZ&loop=1]"),
    broker: str = typer.Option(None, "--broker", help="mqtt://HOST[:PORT]: also receive deployments"),
    device_id: str = typer.Option(None, "--device-id"),
    fleet: str = typer.Option("default", "--fleet"),
    isolate: bool = typer.Option(False, "--isolate", help="Health-check new models in a child process"),
    probation_samples: int = typer.Option(200, "--probation-samples", help="Results before judging"),
    telemetry_interval: float = typer.Option(10.0, "--telemetry-interval", help="Telemetry window seconds"),
    outbox: Path = typer.Option(None, "--outbox", help="Telemetry outbox (SQLite) path"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only update events"),
) -> None:
    """Serve STORE's current model, take updates as they land, and roll back on regression.

    With --broker it also publishes telemetry and births (re-published after a swap).
    """
    import signal
    import threading

    from device_agent import __version__
    from device_agent.serve import EngineRef, serve
    from device_agent.sinks import StdoutSink
    from device_agent.sources import open_source
    from device_agent.stats import RunStats
    from device_agent.update.agent import engine_for_store, env_checkpoint, trust_for
    from device_agent.update.flow import UpdatePolicy, UpdateResult
    from device_agent.update.live import LiveUpdates
    from device_agent.update.probation import ProbationPolicy
    from device_agent.update.store import ModelStore
    from device_agent.update.transport import Broker, DeployListener

    stop = threading.Event()
    try:
        s = ModelStore(store).init()
        src = open_source(source)

        def on_term(*_: object) -> None:
            stop.set()
            src.close()

        signal.signal(signal.SIGTERM, on_term)
        listener = None
        if broker:
            if not device_id:
                raise EdgeError("daemon: --broker needs --device-id")
            policy = UpdatePolicy(agent_version=__version__, isolate=isolate)
            listener = DeployListener(store=s, broker=Broker.parse(broker), fleet=fleet, device=device_id,
                                      trust=trust_for(s), policy=policy, checkpoint=env_checkpoint())
            threading.Thread(target=listener.run, args=(stop,), daemon=True).start()

        telemetry: Any = None

        def report(result: UpdateResult) -> None:
            typer.echo(json.dumps({"update": result.to_dict()}), err=True)
            if listener is not None:
                listener.report(result)

        def swapped(engine: Any) -> None:
            # On the serve thread: the slot LiveUpdates now serves, by id (s.current()
            # would re-hash every member, and a later deploy may have moved `current`).
            m = engine.manifest
            if telemetry is not None and m is not None and live.serving is not None:
                from device_agent.telemetry.agent import model_hash

                telemetry.set_model(name=m.name, version=m.version,
                                    model_hash=model_hash(s.slots / live.serving))

        with engine_for_store(store) as engine:
            ref = EngineRef(engine)
            live = LiveUpdates(s, ref, policy=ProbationPolicy(min_samples=probation_samples), report=report,
                               on_swap=swapped)
            if broker:
                from device_agent.telemetry import agent as tm

                args = tm.AgentTelemetryArgs(broker=broker, device_id=device_id, fleet=fleet,
                                             interval_s=telemetry_interval, outbox=outbox)
                telemetry = tm.start_telemetry(args, s.current_dir(), engine)
            typer.echo(f"serving {s.current_id()} from {store}", err=True)
            stats = RunStats()
            if telemetry is not None:
                telemetry.watch(stats)
            try:
                serve(src, ref, sinks=[] if quiet else [StdoutSink()], observers=[live], stats=stats)
            finally:
                if telemetry is not None:
                    telemetry.close()
    except EdgeError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    finally:
        stop.set()
