"""``edge-agent install``, ``status`` and ``healthcheck``: the model store from the shell."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from device_agent.errors import EdgeError


def install(
    bundle: Path = typer.Argument(..., help="A signed .edgepkg bundle"),
    store: Path = typer.Option(..., "--store", help="The agent's model store directory"),
    key: list[Path] = typer.Option(
        [], "--key", help="Trusted public key (file or dir of *.pub), kept in STORE/keys for later updates"),
    device_type: str = typer.Option(None, "--device-type", help="Override STORE/device.json"),
    allow_downgrade: bool = typer.Option(False, "--allow-downgrade", help="Accept an older version"),
    isolate: bool = typer.Option(False, "--isolate", help="Health-check in a child process"),
    latency_budget_ms: float = typer.Option(1000.0, "--latency-budget-ms"),
) -> None:
    """Verify, stage, health-check and atomically switch to BUNDLE; print the result as JSON."""
    from device_agent import __version__
    from device_agent.cli_support import check_output_dir
    from device_agent.protocol.messages import DeployPhase
    from device_agent.update.agent import env_checkpoint, keep_keys, trust_for
    from device_agent.update.flow import UpdateFlow, UpdatePolicy
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
        if result.status == DeployPhase.ACTIVE:
            keep_keys(key, s)  # the next update (OTA included) trusts the same signer
    except EdgeError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result.to_dict()))
    if result.status != DeployPhase.ACTIVE:
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
    from device_agent.protocol.manifest import MANIFEST_NAME, Manifest
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
