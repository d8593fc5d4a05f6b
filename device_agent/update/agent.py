"""The IO around the update flow: trust from the store, crash-test pauses, serving ``current``."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from device_agent.bundle import SignatureCheck
from device_agent.engine import Engine, EngineOptions
from device_agent.errors import EdgeError
from device_agent.protocol.messages import DeployPhase
from device_agent.runtimes import RuntimeOptions
from device_agent.trust import TrustStore
from device_agent.update.flow import Checkpoint, FlowStep, UpdateResult
from device_agent.update.probation import ProbationPolicy, ProbationWindow, Verdict, judge
from device_agent.update.store import ModelStore

PAUSE_ENV = "EDGE_AGENT_PAUSE_AT"


def trust_for(store: ModelStore, extra: list[Path] | None = None) -> TrustStore:
    """The keys in ``STORE/keys`` plus any extra key files or directories."""
    paths = [store.keys_dir] if store.keys_dir.is_dir() else []
    return TrustStore.from_paths(paths + list(extra or []))


def keep_keys(keys: list[Path], store: ModelStore) -> list[Path]:
    """Copy trusted public keys (files, or directories of ``*.pub``) into ``STORE/keys``,
    so the agent trusts the same signer from then on (``install --key``, ``flash --key``)."""
    import shutil

    store.keys_dir.mkdir(parents=True, exist_ok=True)
    kept = []
    for k in keys:
        for f in sorted(k.glob("*.pub")) if k.is_dir() else [k]:
            TrustStore.from_paths([f])  # refuse what is not an Ed25519 public key
            dest = store.keys_dir / (f.name if f.name.endswith(".pub") else f.name + ".pub")
            if not dest.exists() or dest.read_bytes() != f.read_bytes():
                shutil.copyfile(f, dest)
            kept.append(dest)
    return kept


def env_checkpoint() -> Checkpoint | None:
    """Honour ``EDGE_AGENT_PAUSE_AT=step:index`` (crash tests): announce and wait there.

    The process prints ``PAUSED step:index`` on stderr and sleeps until it is killed.
    """
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return None
    want_step, _, want_index = spec.partition(":")
    index = int(want_index or 0)

    def pause(step: FlowStep, i: int) -> None:
        if step.value == want_step and i == index:
            sys.stderr.write(f"PAUSED {step.value}:{i}\n")
            sys.stderr.flush()
            while True:
                time.sleep(3600)

    return pause


@contextlib.contextmanager
def engine_for_store(
    root: Path, *, runtime: str | None = None, options: RuntimeOptions | None = None,
    engine_options: EngineOptions | None = None, trust: SignatureCheck | None = None,
) -> Iterator[Engine]:
    """Recover the store, then an :class:`Engine` for the slot ``current`` names (its
    files checked against its manifest, its signature against ``trust`` when given)."""
    store = ModelStore(root, trust=trust)
    store.recover()
    slot = store.current()
    if slot is None:
        raise EdgeError(f"{root}: the model store has no current model; flash or install one first")
    yield Engine.from_bundle_dir(
        slot.root, slot.manifest, runtime=runtime, options=options, engine_options=engine_options
    )


def end_probation(
    store: ModelStore, previous: ProbationWindow, new: ProbationWindow, policy: ProbationPolicy
) -> UpdateResult | None:
    """Roll back when the new model regressed; ``None`` while probation is undecided or passed."""
    verdict = judge(previous, new, policy)
    if verdict.verdict != Verdict.REGRESSED:
        return None
    bad = store.current()
    restored = store.rollback()
    return UpdateResult(
        DeployPhase.ROLLED_BACK,
        f"probation: {verdict.reason}; restored {restored.manifest.version}",
        FlowStep.REPORT,
        bad.manifest.name if bad else None,
        bad.manifest.version if bad else None,
        bad.id if bad else None,
    )
