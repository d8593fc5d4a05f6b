"""``edge verify``, ``edge sign`` and ``edge flash``: signed bundles on the host."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from device_agent.cli_support import check_output_dir, check_output_file
from device_agent.mqtt import BrokerOptions
from device_agent.update.store import first_install
from edge_sdk.cli._common import cli_errors
from edge_sdk.cli._options import broker_options


def register(app: typer.Typer) -> None:
    """Add ``edge verify``, ``sign``, ``flash``, ``deploy`` and ``edge fleet rollouts``."""
    app.command("verify")(verify)
    app.command("sign")(sign)
    app.command("flash")(flash)
    app.command("deploy")(deploy)
    # ``edge fleet rollouts`` reads the fleet database, so it lives in the fleet group.
    from edge_sdk.cli.fleet_cmd import fleet_app

    fleet_app.command("rollouts")(fleet_rollouts)


@cli_errors
def verify(
    bundle: Path = typer.Argument(..., help="A .edgepkg bundle"),
    key: list[Path] = typer.Option(..., "--key", help="Trusted public key file (or dir of *.pub)"),
) -> None:
    """Check the signature and every member's hash; exit 2 with the reason if any fails."""
    from device_agent.bundle import verify_bundle
    from device_agent.trust import TrustStore

    trust = TrustStore.from_paths(key)
    v = verify_bundle(bundle, check_signature=trust)
    assert v.signature is not None  # the trust check refuses unsigned bundles
    signer = trust.verify(v.manifest_bytes, v.signature)
    m = v.manifest
    typer.echo(f"ok: {m.name} {m.version}, {len(v.payload)} members verified, signed by key {signer}")


@cli_errors
def sign(
    bundle: Path = typer.Argument(..., help="A .edgepkg bundle"),
    key: Path = typer.Option(..., "--key", help="Ed25519 private key (from edge keys new)"),
    out: Path = typer.Option(..., "-o", "--out", help="The signed bundle to write"),
) -> None:
    """Sign a bundle's exact manifest bytes with KEY and write the result to OUT."""
    from edge_sdk.bundle.signing import sign_bundle

    check_output_file(out, "signed bundle")
    typer.echo(f"signed: {sign_bundle(bundle, key, out)}")


@cli_errors
def flash(
    bundle: Path = typer.Argument(..., help="A signed .edgepkg bundle"),
    to: Path = typer.Option(..., "--to", help="The agent's model store (e.g. a mounted SD card)"),
    key: list[Path] = typer.Option(..., "--key", help="Trusted public key (also installed in STORE/keys)"),
    allow_downgrade: bool = typer.Option(False, "--allow-downgrade", help="Accept an older version"),
    device_type: str = typer.Option(None, "--device-type", help="Record/check the device type"),
    health_check: bool = typer.Option(True, "--health-check/--no-health-check",
                                      help="Run the validation set here before switching"),
) -> None:
    """Verify BUNDLE and install it into a model store offline, with an atomic switch."""
    from device_agent import __version__
    from device_agent.errors import EdgeError
    from device_agent.protocol.messages import DeployPhase
    from device_agent.trust import TrustStore
    from device_agent.update.agent import keep_keys
    from device_agent.update.flow import UpdateFlow, UpdatePolicy

    check_output_dir(to, "model store")
    with first_install(to) as store:
        store.recover()
        if device_type:
            store.set_device_type(device_type)
        trust = TrustStore.from_paths([*key, store.keys_dir])
        policy = UpdatePolicy(
            agent_version=__version__, allow_downgrade=allow_downgrade, health_check=health_check,
        )
        result = UpdateFlow(store, trust, policy).run(bundle)
        typer.echo(json.dumps(result.to_dict()))
        if result.status != DeployPhase.ACTIVE:
            raise EdgeError(f"flash refused {bundle}: {result.reason}")
        keep_keys(key, store)


@cli_errors
@broker_options(required=True)
def deploy(
    bundle: Path = typer.Argument(..., help="A signed .edgepkg bundle"),
    broker: BrokerOptions = None,  # type: ignore[assignment]
    device: str = typer.Option(None, "--device", help="One device id"),
    group: str = typer.Option(
        None, "--group", help="A fleet: without --devices, every device the fleet database knows in it"),
    devices: str = typer.Option(None, "--devices", help="Only these device ids, comma-separated"),
    canary: float = typer.Option(0.0, "--canary", help="Percent of the group to update first"),
    fleet: str = typer.Option("default", "--fleet"),
    db: str = typer.Option("fleet.db", "--db", help="Fleet database (SQLite file or postgresql://...)"),
    chunk_size: int = typer.Option(64 * 1024, "--chunk-size", help="Bytes per MQTT message"),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait per device"),
    probation_timeout: float = typer.Option(
        300.0, "--probation-timeout", help="Seconds to wait for a canary's probation verdict"),
) -> None:
    """Send BUNDLE over MQTT in hashed chunks to one device or a group (canaries first).

    Canaries must become active and pass probation before the rest is updated; the
    rollout is recorded in the fleet database (see: edge fleet rollouts).
    """
    from device_agent.errors import EdgeError
    from edge_sdk.fleet.store import open_store
    from edge_sdk.ota.deploy import Deployment, deploy, targets

    if device and (group or devices):
        raise EdgeError("deploy: give --device ID, or --group FLEET [--devices ID,ID,...], not both")
    if group and fleet == "default":
        fleet = group
    store = open_store(db)
    try:
        d = Deployment(bundle=bundle, fleet=fleet, targets=tuple(targets(store, device, group, devices)),
                       group=group or device or "", canary_percent=canary if not device else 0,
                       chunk_size=chunk_size, timeout_s=timeout, probation_timeout_s=probation_timeout)
        rec = deploy(d, broker=broker, store=store, say=lambda msg: typer.echo(json.dumps(msg)))
    finally:
        store.close()
    typer.echo(json.dumps({"rollout": rec.rollout, "phase": rec.phase.value, "outcome": rec.outcome.value,
                           "devices": rec.devices}))
    if rec.outcome.value != "completed":
        bad = {dev: f"{s}: {rec.reasons.get(dev, '')}" for dev, s in rec.devices.items()
               if s not in ("active", "probation-passed")}
        raise EdgeError(f"rollout {rec.rollout} {rec.phase.value}: {bad}")


@cli_errors
def fleet_rollouts(
    db: str = typer.Option("fleet.db", "--db", help="SQLite file or postgresql://..."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    limit: int = typer.Option(20, "--limit", help="How many of the latest rollouts"),
) -> None:
    """Every recorded rollout: devices targeted, active / rejected / rolled-back / pending,
    phase (canary / promoted / direct / halted) and outcome."""
    from edge_sdk.fleet.store import open_store
    from edge_sdk.ota.rollout import summarize

    store = open_store(db, must_exist=True)
    try:
        rows = [summarize(r) for r in store.rollouts(limit)]
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from edge_sdk.report.tables import Column, Table, print_table

    cols = (Column("rollout"), Column("bundle"), Column("version"), Column("group"),
            *(Column(n, right=True) for n in ("canary %", "targeted", "active", "rejected",
                                              "rolled-back", "pending")),
            Column("phase"), Column("outcome"))
    out = [(r["rollout"], r["bundle"], r["version"], r["group"], f"{r['canary_percent']:g}",
            *(str(r[k]) for k in ("targeted", "active", "rejected", "rolled-back", "pending")),
            r["phase"], r["outcome"]) for r in rows]
    print_table(Table.of(f"rollouts: {len(rows)}", cols, out))
