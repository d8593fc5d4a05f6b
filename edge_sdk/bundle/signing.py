"""Ed25519 keys and bundle signatures on the host.

``manifest.sig`` is an Ed25519 signature over the exact bytes of ``manifest.json``.
Private keys are PEM (PKCS#8, unencrypted, mode 0600); public keys PEM
(SubjectPublicKeyInfo), the format ``device_agent.trust`` reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from device_agent.bundle import DEFAULT_MAX_BYTES
from device_agent.errors import BundleError, EdgeError
from device_agent.protocol.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest
from device_agent.trust import PUBLIC_SUFFIX, TrustedKey, key_id
from edge_sdk.bundle.writer import Signer, write_archive


@dataclass(frozen=True)
class KeyPair:
    """Where ``edge keys new`` wrote a key pair, and the public key's id."""

    private: Path
    public: Path
    key_id: str


def new_key_pair(out: str | os.PathLike[str]) -> KeyPair:
    """Write ``out`` (private, 0600) and ``out.pub``; refuse to overwrite either."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    priv_path = Path(out)
    pub_path = priv_path.with_name(priv_path.name + PUBLIC_SUFFIX)
    for p in (priv_path, pub_path):
        if p.exists():
            raise EdgeError(f"{p}: already exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = key.public_key()
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    priv_path.parent.mkdir(parents=True, exist_ok=True)
    _write_exclusive(priv_path, priv, 0o600)
    _write_exclusive(pub_path, pem, 0o644)
    return KeyPair(private=priv_path, public=pub_path, key_id=key_id(raw))


def _write_exclusive(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL closes the race with another writer; the mode is set at creation, so the
    # private key is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def load_signer(path: str | os.PathLike[str]) -> Signer:
    """A ``Signer`` (manifest bytes → signature) from a PEM Ed25519 private key file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    p = Path(path)
    try:
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except OSError as e:
        raise EdgeError(f"{p}: cannot read private key ({e.strerror})") from e
    except (ValueError, TypeError) as e:
        raise EdgeError(f"{p}: expected an unencrypted PEM private key ({e})") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise EdgeError(f"{p}: expected an Ed25519 private key, found {type(key).__name__}")
    return key.sign


def public_key_of(path: str | os.PathLike[str]) -> TrustedKey:
    """The trusted-key record of a public key file (re-exported for the CLI)."""
    from device_agent.trust import load_public_key

    return load_public_key(Path(path))


def sign_bundle(
    bundle: str | os.PathLike[str], key: str | os.PathLike[str], out: str | os.PathLike[str]
) -> Path:
    """Copy ``bundle`` to ``out`` with ``manifest.sig`` replaced by a signature with ``key``.

    The manifest bytes are kept exactly as they are (only the signature member changes),
    so every hash in the manifest still describes the same members.
    """
    signer = load_signer(key)
    members = _members(Path(bundle))
    if MANIFEST_NAME not in members:
        raise BundleError(f"{bundle}: no {MANIFEST_NAME} in the bundle")
    Manifest.from_json(members[MANIFEST_NAME])  # refuse to sign something unreadable
    members[SIGNATURE_NAME] = signer(members[MANIFEST_NAME])
    order = [MANIFEST_NAME, SIGNATURE_NAME, *sorted(set(members) - {MANIFEST_NAME, SIGNATURE_NAME})]
    return write_archive(out, [(n, members[n]) for n in order])


def _members(src: Path) -> dict[str, bytes]:
    from device_agent.bundle import read_members

    return read_members(src, max_bytes=DEFAULT_MAX_BYTES)
