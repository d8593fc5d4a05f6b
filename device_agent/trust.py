"""Which signatures the agent accepts: Ed25519 public keys an operator configured.

The device side only verifies. A bundle is accepted when ``manifest.sig`` is a valid
Ed25519 signature over the exact bytes of ``manifest.json`` by one of the trusted keys;
an unsigned bundle or one signed by any other key is a :class:`BundleError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from device_agent.errors import BundleError, EdgeError

PUBLIC_SUFFIX = ".pub"
SIGNATURE_BYTES = 64


def key_id(raw_public: bytes) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its sha256."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


@dataclass(frozen=True)
class TrustedKey:
    """One public key the agent trusts, with where it came from (for messages)."""

    key_id: str
    raw: bytes
    source: str


def load_public_key(path: Path) -> TrustedKey:
    """Read a PEM Ed25519 public key file (as written by ``edge keys new``)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EdgeError(f"{path}: cannot read public key ({e.strerror})") from e
    try:
        from device_agent.ed25519 import public_key_from_pem  # only with keys: a run without them skips it

        raw = public_key_from_pem(data)
    except ValueError as e:
        raise EdgeError(f"{path}: {e}") from e
    return TrustedKey(key_id=key_id(raw), raw=raw, source=str(path))


class TrustStore:
    """The set of trusted public keys; callable as a ``SignatureCheck`` for open_bundle."""

    def __init__(self, keys: Iterable[TrustedKey]):
        self.keys = {k.key_id: k for k in keys}

    @classmethod
    def from_paths(cls, paths: Iterable[Path]) -> TrustStore:
        """Keys from files and directories (every ``*.pub`` inside a directory)."""
        found: list[TrustedKey] = []
        for p in paths:
            files = sorted(p.glob(f"*{PUBLIC_SUFFIX}")) if p.is_dir() else [p]
            found += [load_public_key(f) for f in files]
        return cls(found)

    def __call__(self, manifest_bytes: bytes, signature: bytes | None) -> None:
        self.verify(manifest_bytes, signature)

    def verify(self, manifest_bytes: bytes, signature: bytes | None) -> str:
        """Return the id of the key that signed ``manifest_bytes``; raise if none did."""
        if signature is None:
            raise BundleError("unsigned bundle: no manifest.sig, and only signed bundles are accepted")
        if len(signature) != SIGNATURE_BYTES:
            raise BundleError(
                f"manifest.sig: expected a {SIGNATURE_BYTES}-byte Ed25519 signature, "
                f"found {len(signature)} bytes"
            )
        if not self.keys:
            raise BundleError("no trusted public keys are configured; cannot verify manifest.sig")
        from device_agent.ed25519 import verify as ed25519_verify

        for k in self.keys.values():
            if ed25519_verify(k.raw, manifest_bytes, signature):
                return k.key_id
        raise BundleError(
            "manifest.sig: signature does not verify with any trusted key "
            f"({', '.join(sorted(self.keys))}); unknown signer or tampered manifest"
        )
