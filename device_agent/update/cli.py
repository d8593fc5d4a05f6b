"""``edge-agent install``, ``status`` and ``healthcheck``: the model store from the shell."""

from __future__ import annotations

import json
from pathlib import Path

from device_agent.cli_options import Argument, Option
from device_agent.cli_parser import Command
from device_agent.errors import EdgeError

LATENCY_BUDGET = Option(name="latency_budget_ms", flags=("--latency-budget-ms",), type=float, default=1000.0,
                        help="Refuse a model slower than this many ms per call")


def install(*, bundle: Path, store: Path, key: list[Path] | None, device_type: str | None,
            allow_downgrade: bool, isolate: bool, latency_budget_ms: float) -> int:
    """Verify, stage, health-check and atomically switch to BUNDLE; print the result as JSON."""
    from device_agent import __version__
    from device_agent.cli_support import check_output_dir
    from device_agent.protocol.messages import DeployPhase
    from device_agent.update.agent import env_checkpoint, keep_keys, trust_for
    from device_agent.update.flow import UpdateFlow, UpdatePolicy
    from device_agent.update.health import HealthOptions
    from device_agent.update.store import first_install

    keys = key or []
    check_output_dir(store, "model store")
    with first_install(store) as s:
        s.recover()
        policy = UpdatePolicy(
            agent_version=__version__, device_type=device_type, allow_downgrade=allow_downgrade,
            isolate=isolate, health=HealthOptions(latency_budget_ms=latency_budget_ms),
        )
        flow = UpdateFlow(s, trust_for(s, keys), policy, checkpoint=env_checkpoint())
        result = flow.run(bundle)
        if result.status == DeployPhase.ACTIVE:
            keep_keys(keys, s)  # the next update (OTA included) trusts the same signer
    print(json.dumps(result.to_dict()))
    return 0 if result.status == DeployPhase.ACTIVE else 1


def status(*, store: Path) -> int:
    """Recover the store and print what it serves, as JSON."""
    from device_agent.update.store import ModelStore

    if not store.is_dir():
        # A read-only look: never create a store by asking about one.
        raise EdgeError(f"--store {store}: no model store there (install a bundle first: "
                        f"edge-agent install BUNDLE --store {store})")
    s = ModelStore(store)
    rec = s.recover()
    slot = s.current()
    print(json.dumps({
        "current": rec.current,
        "previous": s.previous_id(),
        "floor": s.floor(),
        "name": slot.manifest.name if slot else None,
        "version": slot.manifest.version if slot else None,
        "staging_removed": rec.staging_removed,
        "fell_back": rec.fell_back,
    }))
    return 0


def healthcheck(*, slot: Path, rtol: float, atol: float, latency_budget_ms: float) -> int:
    """Load, warm up and validate one slot; print a JSON HealthReport (used by --isolate)."""
    from device_agent.protocol.manifest import MANIFEST_NAME, Manifest
    from device_agent.update.health import HealthOptions, HealthReport, check_slot

    opts = HealthOptions(rtol=rtol, atol=atol, latency_budget_ms=latency_budget_ms)
    try:
        manifest = Manifest.from_json((slot / MANIFEST_NAME).read_bytes())
        report = check_slot(slot, manifest, opts)
    except (EdgeError, OSError) as e:
        report = HealthReport(False, str(e))
    print(report.to_json())
    return 0 if report.ok else 1


INSTALL = Command("install", install, (
    Argument(name="bundle", metavar="BUNDLE", type=Path, help="A signed .edgepkg bundle"),
    Option(name="store", flags=("--store",), type=Path, metavar="DIR", required=True,
           help="The agent's model store directory"),
    Option(name="key", flags=("--key",), type=Path, repeat=True,
           help="Trusted public key (file or dir of *.pub), kept in STORE/keys for later updates"),
    Option(name="device_type", flags=("--device-type",), help="Override STORE/device.json"),
    Option(name="allow_downgrade", flags=("--allow-downgrade",), type=bool, help="Accept an older version"),
    Option(name="isolate", flags=("--isolate",), type=bool, help="Health-check in a child process"),
    LATENCY_BUDGET,
))  # fmt: skip
STATUS = Command("status", status, (
    Option(name="store", flags=("--store",), type=Path, metavar="DIR", required=True,
           help="The agent's model store"),
))  # fmt: skip
HEALTHCHECK = Command("healthcheck", healthcheck, (
    Argument(name="slot", metavar="SLOT", type=Path, help="An unpacked bundle directory (a store slot)"),
    Option(name="rtol", flags=("--rtol",), type=float, default=1e-3,
           help="Relative tolerance against the recorded outputs"),
    Option(name="atol", flags=("--atol",), type=float, default=1e-3,
           help="Absolute tolerance against the recorded outputs"),
    LATENCY_BUDGET,
))  # fmt: skip
