"""The served model's identity, as telemetry and births report it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from device_agent.bundle import read_manifest_bytes


def file_sha256(path: Path) -> str:
    """A file's sha256, read in 1 MiB chunks: the identity of a model served without a manifest."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_hash(path: Path) -> str:
    """The served model's identity: the sha256 of its manifest as shipped, which lists
    every member's sha256 (a store slot is named after it), whether it is served from a
    bundle file or from a store slot; a bare model file's own sha256 otherwise."""
    if path.is_dir():
        manifest_file = path / "manifest.json"
        return hashlib.sha256(manifest_file.read_bytes()).hexdigest() if manifest_file.is_file() else ""
    manifest = read_manifest_bytes(path) if path.suffix.lower() == ".edgepkg" else None
    return hashlib.sha256(manifest).hexdigest() if manifest is not None else file_sha256(path)
