"""The model store on a device: verified slots, a staging area, and atomic pointers.

Layout below the store root::

    slots/<version>-<hash>/   a verified, unpacked bundle (manifest.json, .sig, members)
    staging/                  work in progress; emptied on every start
    current                   the slot being served (one line), switched atomically
    previous                  the slot served before, for rollback
    floor                     the lowest version accepted (anti-rollback)
    device.json               optional: {"device_type": "..."} for compatibility checks
    keys/                     trusted public keys (*.pub)
    last_update.json          the outcome of the last update, for status reports

Every pointer is written with write-temp, fsync, rename, fsync-dir, so after a crash it
names either the old or the new slot. A slot directory only appears in ``slots/`` by a
rename of a fully written, fsynced staging directory, so a slot is never half-written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_agent.bundle import SignatureCheck, atomic_write, fsync_dir
from device_agent.errors import BundleError, EdgeError
from device_agent.protocol.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest, parse_semver

log = logging.getLogger(__name__)

SLOTS, STAGING, KEYS = "slots", "staging", "keys"
CURRENT, PREVIOUS, FLOOR = "current", "previous", "floor"
DEVICE_FILE, LAST_UPDATE = "device.json", "last_update.json"


def slot_id(manifest: Manifest, manifest_bytes: bytes) -> str:
    """``<version>-<first 12 hex of sha256(manifest bytes)>``: one name per exact bundle."""
    return f"{manifest.version}-{hashlib.sha256(manifest_bytes).hexdigest()[:12]}"


@dataclass(frozen=True)
class Slot:
    """A verified bundle unpacked in the store."""

    id: str
    root: Path
    manifest: Manifest


@dataclass(frozen=True)
class Recovery:
    """What :meth:`ModelStore.recover` cleaned up on start."""

    staging_removed: int
    orphan_slots_removed: int
    current: str | None
    fell_back: bool


class ModelStore:
    """The on-disk store; every method is safe to interrupt at any point."""

    def __init__(self, root: str | os.PathLike[str], *, trust: SignatureCheck | None = None):
        """``trust``: when set, every slot loaded must carry a signature it accepts."""
        self.root = Path(root)
        self.trust = trust

    @property
    def slots(self) -> Path:
        """``slots/``: verified, unpacked bundles, one directory per slot id."""
        return self.root / SLOTS

    @property
    def staging(self) -> Path:
        """``staging/``: bundles being unpacked; emptied on every start."""
        return self.root / STAGING

    @property
    def keys_dir(self) -> Path:
        """``keys/``: the trusted public keys (``*.pub``)."""
        return self.root / KEYS

    def init(self) -> ModelStore:
        """Create the store's directories where missing; returns the store, for chaining."""
        for d in (self.root, self.slots, self.staging, self.keys_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self

    # pointers -----------------------------------------------------------------------
    def _read(self, name: str) -> str | None:
        try:
            text = (self.root / name).read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    def _write(self, name: str, value: str) -> None:
        atomic_write(self.root / name, value.encode() + b"\n")

    def current_id(self) -> str | None:
        """The id of the slot being served, or ``None`` before the first install."""
        return self._read(CURRENT)

    def previous_id(self) -> str | None:
        """The id of the slot served before the current one (the rollback target), or ``None``."""
        return self._read(PREVIOUS)

    def floor(self) -> str | None:
        """The lowest version an update may install (anti-rollback), or ``None``."""
        return self._read(FLOOR)

    def device_type(self) -> str | None:
        """This device's type from ``device.json``, for compatibility checks; ``None`` when unset."""
        try:
            d = json.loads((self.root / DEVICE_FILE).read_text())
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as e:
            raise EdgeError(f"{self.root / DEVICE_FILE}: not readable JSON ({e})") from e
        return None if not isinstance(d, dict) or d.get("device_type") is None else str(d["device_type"])

    def set_device_type(self, device_type: str) -> None:
        """Record this device's type in ``device.json``, atomically."""
        atomic_write(self.root / DEVICE_FILE, json.dumps({"device_type": device_type}).encode())

    # slots --------------------------------------------------------------------------
    def slot(self, sid: str, *, check_trust: bool = True) -> Slot:
        """Load a slot: its manifest must be the one it was named after (and signed by a
        trusted key, when the store has ``trust`` and ``check_trust``), every member must
        match its hash. Recovery never checks trust: a key change must not undo installs."""
        root = self.slots / sid
        try:
            manifest_bytes = (root / MANIFEST_NAME).read_bytes()
        except OSError as e:
            raise BundleError(f"slot {sid}: cannot read {MANIFEST_NAME} ({e.strerror})") from e
        manifest = Manifest.from_json(manifest_bytes)
        if slot_id(manifest, manifest_bytes) != sid:
            raise BundleError(f"slot {sid}: {MANIFEST_NAME} was changed after install "
                              "(its sha256 no longer matches the slot name)")
        if self.trust is not None and check_trust:
            signature = root / SIGNATURE_NAME
            try:
                self.trust(manifest_bytes, signature.read_bytes() if signature.is_file() else None)
            except BundleError as e:
                raise BundleError(f"slot {sid}: {e}") from None
        for f in manifest.files:
            _check_file(root, f.unpacked_path, f.raw_sha256 or f.sha256, sid)
        if manifest.validation is not None and manifest.validation_sha256 is not None:
            _check_file(root, manifest.validation, manifest.validation_sha256, sid)
        return Slot(id=sid, root=root, manifest=manifest)

    def current_dir(self) -> Path | None:
        """The directory of the slot being served (not re-verified: see :meth:`current`)."""
        sid = self.current_id()
        return None if sid is None else self.slots / sid

    def current(self) -> Slot | None:
        """The slot being served, re-verified (hashes, and trust when set); ``None`` before any install."""
        sid = self.current_id()
        return None if sid is None else self.slot(sid)

    def new_staging(self, sid: str) -> Path:
        """A fresh, empty staging directory for slot ``sid``."""
        d = self.staging / f"{sid}.{os.getpid()}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def commit(
        self, staged: Path, sid: str, version: str,
        *, checkpoint: Callable[[Any, int], None] | None = None,
    ) -> None:
        """Move a fully written staging dir into ``slots/`` and point ``current`` at it.

        ``checkpoint(step, i)`` is called between the sub-steps (for the crash tests).
        """
        mark = checkpoint or (lambda step, i: None)
        target = self.slots / sid
        if target.exists():
            shutil.rmtree(staged, ignore_errors=True)
        else:
            _fsync_tree(staged)
            os.replace(staged, target)
            fsync_dir(self.slots)
        mark("switch", 1)
        old = self.current_id()
        if old is not None and old != sid:
            # previous first: a crash between the two writes leaves current unchanged.
            self._write(PREVIOUS, old)
        mark("switch", 2)
        self._write(CURRENT, sid)
        mark("switch", 3)
        self.raise_floor(version)

    def raise_floor(self, version: str) -> None:
        """Move the floor up to ``version`` (only :meth:`rollback` lowers it): no older bundle installs again."""
        floor = self.floor()
        if floor is None or parse_semver(version) > parse_semver(floor):
            self._write(FLOOR, version)

    def rollback(self) -> Slot:
        """Serve ``previous`` again (after a failed probation); the floor follows it down."""
        prev = self.previous_id()
        if prev is None:
            raise EdgeError(f"{self.root}: no previous model to roll back to")
        slot = self.slot(prev)
        bad = self.current_id()
        self._write(CURRENT, prev)
        # The agent itself decided to go back; the floor must let it (and only it) do so.
        self._write(FLOOR, slot.manifest.version)
        (self.root / PREVIOUS).unlink(missing_ok=True)
        fsync_dir(self.root)
        if bad and bad != prev:
            shutil.rmtree(self.slots / bad, ignore_errors=True)
        return slot

    # recovery -----------------------------------------------------------------------
    def recover(self) -> Recovery:
        """Run on every start: empty staging, drop orphan slots and temp files, and make
        ``current`` name a slot whose hashes hold (falling back to ``previous``)."""
        self.init()
        staged = _clear(self.staging)
        for tmp in self.root.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        fell_back = self._repair_current()
        keep = {self.current_id(), self.previous_id()}
        orphans = 0
        for d in self.slots.iterdir():
            if d.name not in keep:
                shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink()
                orphans += 1
        return Recovery(staged, orphans, self.current_id(), fell_back)

    def _repair_current(self) -> bool:
        sid = self.current_id()
        why = None if sid is None else self._unusable(sid)
        if sid is None or why is None:
            return False
        prev = self.previous_id()
        log.warning("store %s: current slot %s is unusable (%s); falling back to %s", self.root, sid, why, prev)
        if prev is not None and self._usable(prev):
            self._write(CURRENT, prev)
        else:
            (self.root / CURRENT).unlink(missing_ok=True)
        (self.root / PREVIOUS).unlink(missing_ok=True)
        fsync_dir(self.root)
        return True

    def _usable(self, sid: str) -> bool:
        return self._unusable(sid) is None

    def _unusable(self, sid: str) -> str | None:
        """Why slot ``sid`` cannot be served (hashes, manifest), or None when it can."""
        try:
            self.slot(sid, check_trust=False)
        except EdgeError as e:
            return str(e)
        return None


def _check_file(root: Path, rel: str, sha: str, sid: str) -> None:
    try:
        data = (root / rel).read_bytes()
    except OSError as e:
        raise BundleError(f"slot {sid}: {rel} is missing ({e.strerror})") from e
    if hashlib.sha256(data).hexdigest() != sha:
        raise BundleError(f"slot {sid}: {rel} no longer matches its sha256 (disk corruption?)")


def _clear(d: Path) -> int:
    n = 0
    for child in d.iterdir():
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
        n += 1
    return n


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def write_slot_files(staged: Path, manifest_bytes: bytes, signature: bytes | None) -> None:
    """The manifest (and signature) beside the members: a slot re-verifies itself."""
    atomic_write(staged / MANIFEST_NAME, manifest_bytes)
    if signature is not None:
        atomic_write(staged / SIGNATURE_NAME, signature)


@contextmanager
def first_install(root: Path) -> Iterator[ModelStore]:
    """A store for an install from the shell (``edge flash``, ``edge-agent install``): when
    ``root`` did not exist before and the install left no model to serve (refused, or an
    error), the directory it created is removed, so nothing half-made is left where a user
    expects either a working store or none."""
    existed = root.exists()
    store = ModelStore(root).init()
    try:
        yield store
    finally:
        if not existed and store.current_id() is None:
            shutil.rmtree(root, ignore_errors=True)
