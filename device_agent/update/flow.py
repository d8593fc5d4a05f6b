"""The update flow: verify → extract → health-check → switch → report.

A small state machine: each :class:`FlowStep` is one method, run in order. Any failure stops
the flow, removes the staging directory and returns ``rejected`` with a reason that
names the step and the cause; the slot ``current`` points at is untouched until the
single atomic switch. ``checkpoint`` is called at fixed points inside each step (the
crash tests pause and SIGKILL the process there).
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

from device_agent.bundle import (
    DEFAULT_MAX_BYTES,
    SignatureCheck,
    VerifiedBundle,
    atomic_write,
    verify_bundle,
)
from device_agent.errors import BundleError, EdgeError
from device_agent.protocol.manifest import parse_semver
from device_agent.protocol.messages import DeployPhase
from device_agent.update.health import HealthOptions, check_slot, check_slot_isolated
from device_agent.update.store import LAST_UPDATE, ModelStore, slot_id, write_slot_files

# Disk space the store keeps free beyond the unpacked bundle (pointers, logs, fs slack).
SPACE_MARGIN = 64 * 1024


class FlowStep(str, Enum):
    """The steps of an update, in order (a rejection names the one that failed)."""
    TRANSFER = "transfer"  # over the air only (device_agent.update.transport)
    VERIFY = "verify"
    EXTRACT = "extract"
    HEALTH = "health-check"
    SWITCH = "switch"
    REPORT = "report"


@dataclass(frozen=True, kw_only=True)
class UpdatePolicy:
    """What the device accepts and how it checks a new model."""

    agent_version: str
    device_type: str | None = None
    allow_downgrade: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    isolate: bool = False  # health-check in a child process (untrusted models)
    health_check: bool = True
    health: HealthOptions = field(default_factory=HealthOptions)


@dataclass(frozen=True)
class UpdateResult:
    """The outcome of one update, as reported."""

    status: DeployPhase
    reason: str
    step: FlowStep
    name: str | None = None
    version: str | None = None
    slot: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The result as JSON-ready values (what ``edge-agent install`` prints)."""
        d = asdict(self)
        d["status"], d["step"] = self.status.value, self.step.value
        return d


Checkpoint = Callable[[FlowStep, int], None]


def _no_checkpoint(step: FlowStep, index: int) -> None:
    return None


@dataclass
class _State:
    bundle: Path
    verified: VerifiedBundle | None = None
    sid: str | None = None
    staged: Path | None = None


class UpdateFlow:
    """Apply one bundle to a :class:`ModelStore` under an :class:`UpdatePolicy`."""

    def __init__(
        self, store: ModelStore, trust: SignatureCheck, policy: UpdatePolicy,
        *, checkpoint: Checkpoint | None = None,
    ):
        self.store = store.init()
        self.trust = trust
        self.policy = policy
        self.checkpoint = checkpoint or _no_checkpoint
        self._steps: list[tuple[FlowStep, Callable[[_State], None]]] = [
            (FlowStep.VERIFY, self._verify),
            (FlowStep.EXTRACT, self._extract),
            (FlowStep.HEALTH, self._health),
            (FlowStep.SWITCH, self._switch),
        ]

    def run(self, bundle: str | Path) -> UpdateResult:
        """Verify, stage, health-check and switch to ``bundle``; never raises for a bad bundle."""
        state = _State(Path(bundle))
        for step, fn in self._steps:
            try:
                fn(state)
            except (EdgeError, OSError) as e:
                self._discard(state)
                return self._report(state, DeployPhase.REJECTED, step, f"{step.value}: {_reason(e)}")
        return self._report(state, DeployPhase.ACTIVE, FlowStep.REPORT, "ok")

    # steps --------------------------------------------------------------------------
    def _verify(self, s: _State) -> None:
        self.checkpoint(FlowStep.VERIFY, 0)
        v = verify_bundle(s.bundle, check_signature=self.trust, max_bytes=self.policy.max_bytes)
        self.checkpoint(FlowStep.VERIFY, 1)
        self._check_compatible(v)
        s.verified, s.sid = v, slot_id(v.manifest, v.manifest_bytes)

    def _check_compatible(self, v: VerifiedBundle) -> None:
        m, p = v.manifest, self.policy
        device = p.device_type or self.store.device_type()
        if m.device_types and device not in m.device_types:
            raise BundleError(
                f"wrong device type: bundle is for {', '.join(m.device_types)}, this device is {device}"
            )
        if parse_semver(m.min_agent_version) > parse_semver(p.agent_version):
            raise BundleError(
                f"bundle needs agent >= {m.min_agent_version}, this agent is {p.agent_version}"
            )
        floor = self.store.floor()
        if floor and parse_semver(m.version) < parse_semver(floor) and not p.allow_downgrade:
            raise BundleError(
                f"downgrade refused: version {m.version} is older than the floor {floor} "
                "(pass --allow-downgrade to permit it)"
            )

    def _extract(self, s: _State) -> None:
        assert s.verified is not None and s.sid is not None
        need = s.verified.size + len(s.verified.manifest_bytes) + SPACE_MARGIN
        free = shutil.disk_usage(self.store.root).free
        if free < need:
            raise BundleError(
                f"not enough disk space in {self.store.root}: need {need} bytes, {free} free"
            )
        s.staged = self.store.new_staging(s.sid)
        self.checkpoint(FlowStep.EXTRACT, 0)
        for i, (rel, data) in enumerate(sorted(s.verified.payload.items()), start=1):
            _write_member(s.staged, rel, data)
            self.checkpoint(FlowStep.EXTRACT, i)
        write_slot_files(s.staged, s.verified.manifest_bytes, s.verified.signature)
        self.checkpoint(FlowStep.EXTRACT, len(s.verified.payload) + 1)

    def _health(self, s: _State) -> None:
        assert s.verified is not None and s.staged is not None
        self.checkpoint(FlowStep.HEALTH, 0)
        if not self.policy.health_check:
            return
        opts = self.policy.health
        if self.policy.isolate:
            report = check_slot_isolated(s.staged, opts)
        else:
            report = check_slot(s.staged, s.verified.manifest, opts)
        self.checkpoint(FlowStep.HEALTH, 1)
        if not report.ok:
            raise BundleError(f"health check failed: {report.reason}")

    def _switch(self, s: _State) -> None:
        assert s.verified is not None and s.staged is not None and s.sid is not None
        self.checkpoint(FlowStep.SWITCH, 0)
        self.store.commit(
            s.staged, s.sid, s.verified.manifest.version,
            checkpoint=lambda _step, i: self.checkpoint(FlowStep.SWITCH, i),
        )
        s.staged = None

    # outcome ------------------------------------------------------------------------
    def _discard(self, s: _State) -> None:
        if s.staged is not None:
            shutil.rmtree(s.staged, ignore_errors=True)

    def _report(self, s: _State, status: DeployPhase, step: FlowStep, reason: str) -> UpdateResult:
        m = s.verified.manifest if s.verified else None
        result = UpdateResult(
            status, reason, step, m.name if m else None, m.version if m else None, s.sid
        )
        # A full disk must not turn a clean rejection into a crash.
        with contextlib.suppress(OSError):
            atomic_write(self.store.root / LAST_UPDATE, json.dumps(result.to_dict()).encode())
        return result


def _write_member(root: Path, rel: str, data: bytes) -> None:
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, data)


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return f"disk full while writing the new model ({e.filename or 'store'}): no space left on device"
    if isinstance(e, OSError):
        return f"{e.strerror or e} ({e.filename})"
    return str(e)


__all__ = ["Checkpoint", "FlowStep", "UpdateFlow", "UpdatePolicy", "UpdateResult"]
