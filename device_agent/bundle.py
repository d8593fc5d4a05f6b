"""Reading a bundle (``.edgepkg``): hostile-input code.

A bundle is a tar archive holding ``manifest.json``, an optional ``manifest.sig`` and the
files the manifest lists. The reader never calls ``extractall``: it walks the members,
refuses anything that is not a plain regular file with a plain relative name, reads each
into memory under a size cap, checks its sha256 against the manifest, and only then
writes it below the destination. A file is never used before its hash is checked.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_agent.errors import BundleError
from device_agent.protocol.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Compression,
    Manifest,
    ModelFile,
    ModelFormat,
    check_member_path,
)

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_MEMBERS = 256

# Verifies a signature over the manifest bytes; raises BundleError when it does not hold.
SignatureCheck = Callable[[bytes, bytes | None], None]


@dataclass(frozen=True)
class Bundle:
    """A verified bundle unpacked below ``root``."""

    manifest: Manifest
    root: Path
    manifest_bytes: bytes
    signature: bytes | None

    def model_path(self, fmt: ModelFormat, stage: int = 0) -> Path:
        """The unpacked ``fmt`` model file of early-exit ``stage``."""
        for f in self.manifest.files:
            if f.format == fmt and f.stage == stage:
                return self.root / f.unpacked_path
        raise BundleError(f"bundle {self.manifest.name} has no {fmt.value} model for stage {stage}")

    @property
    def validation_path(self) -> Path | None:
        """The unpacked validation set, if the bundle carries one."""
        v = self.manifest.validation
        return None if v is None else self.root / v


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle checked in memory: signature, manifest, and every member's hash."""

    manifest: Manifest
    manifest_bytes: bytes
    signature: bytes | None
    payload: dict[str, bytes]  # member path → verified (decompressed) bytes

    @property
    def size(self) -> int:
        """Bytes of the verified members (model files and validation set)."""
        return sum(len(v) for v in self.payload.values())


def read_manifest(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> Manifest:
    """Parse a bundle's manifest without unpacking model files (for ``inspect``)."""
    members = read_members(Path(path), max_bytes=max_bytes)
    return Manifest.from_json(_require(members, MANIFEST_NAME, path))


def verify_bundle(
    path: str | os.PathLike[str],
    *,
    check_signature: SignatureCheck | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> VerifiedBundle:
    """Read and verify a bundle in memory; nothing is written. Any defect is a BundleError."""
    src = Path(path)
    members = read_members(src, max_bytes=max_bytes)
    manifest_bytes = _require(members, MANIFEST_NAME, src)
    signature = members.get(SIGNATURE_NAME)
    if check_signature is not None:
        try:
            check_signature(manifest_bytes, signature)
        except BundleError as e:  # the trust store knows no paths: name the bundle here
            raise BundleError(f"{src}: {e}") from None
    manifest = Manifest.from_json(manifest_bytes)
    payload = _verified_payload(manifest, members, src, max_bytes=max_bytes)
    return VerifiedBundle(manifest, manifest_bytes, signature, payload)


def open_bundle(
    path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    check_signature: SignatureCheck | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    durable: bool = True,
) -> Bundle:
    """Verify a bundle and unpack it into ``dest`` (created; must not exist or be empty).

    ``check_signature`` receives the manifest bytes and the signature (or ``None``) and
    raises :class:`BundleError` to refuse. Nothing is written unless every check passes.
    ``durable=False`` skips the fsyncs, for a temporary unpack that no crash must survive.
    """
    v = verify_bundle(path, check_signature=check_signature, max_bytes=max_bytes)
    root = Path(dest)
    write_tree(root, v.payload, durable=durable)
    return Bundle(manifest=v.manifest, root=root, manifest_bytes=v.manifest_bytes, signature=v.signature)


def _require(members: dict[str, bytes], name: str, src: object) -> bytes:
    if name not in members:
        raise BundleError(f"{src}: no {name} in the bundle")
    return members[name]


def read_members(src: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, bytes]:
    """Every member of the archive (name → bytes), after the per-member safety checks."""
    if not src.is_file():
        raise BundleError(f"{src}: no such bundle file")
    if src.stat().st_size > max_bytes:
        raise BundleError(f"{src}: {src.stat().st_size} bytes exceeds the cap of {max_bytes}")
    try:
        with tarfile.open(src, mode="r:*") as tar:
            return _collect(tar, src, max_bytes=max_bytes)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise BundleError(f"{src}: not a readable bundle archive ({e})") from e


def read_manifest_bytes(src: Path) -> bytes | None:
    """``manifest.json`` exactly as shipped, reading the archive only up to it (the
    writer puts it first); ``None`` if the file is not a bundle or has none."""
    try:
        with tarfile.open(src, mode="r:*") as tar:
            for i, member in enumerate(_members(tar)):
                if i >= MAX_MEMBERS:
                    return None
                if member.name != MANIFEST_NAME:
                    continue
                if not member.isreg() or member.size > MAX_MANIFEST_BYTES:
                    return None
                fh = tar.extractfile(member)
                return None if fh is None else fh.read(member.size)
    except (tarfile.TarError, EOFError, OSError, zlib.error):
        return None
    return None


def _collect(tar: tarfile.TarFile, src: Path, *, max_bytes: int) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    total = 0
    for i, member in enumerate(_members(tar)):
        if i >= MAX_MEMBERS:
            raise BundleError(f"{src}: more than {MAX_MEMBERS} members")
        _check_member(member, src)
        if member.name in out:
            raise BundleError(f"{src}: member {member.name!r} appears twice")
        cap = MAX_MANIFEST_BYTES if member.name == MANIFEST_NAME else max_bytes
        total += member.size
        if member.size > cap or total > max_bytes:
            raise BundleError(f"{src}: member {member.name!r} is larger than allowed")
        fh = tar.extractfile(member)
        if fh is None:
            raise BundleError(f"{src}: member {member.name!r} has no data")
        data = fh.read(member.size + 1)
        if len(data) != member.size:
            raise BundleError(f"{src}: member {member.name!r} is truncated or larger than declared")
        out[member.name] = data
    return out


def _members(tar: tarfile.TarFile) -> Iterable[tarfile.TarInfo]:
    # Iterating lazily keeps a hostile archive with millions of headers from being
    # listed in full before the member cap applies.
    while True:
        m = tar.next()
        if m is None:
            return
        yield m


def _check_member(member: tarfile.TarInfo, src: Path) -> None:
    if not member.isreg():
        kind = "link" if (member.issym() or member.islnk()) else "non-regular member"
        raise BundleError(f"{src}: refusing {kind} {member.name!r}")
    try:
        check_member_path(member.name)
    except BundleError as e:
        raise BundleError(f"{src}: {e}") from e


def _verified_payload(
    manifest: Manifest, members: dict[str, bytes], src: Path, *, max_bytes: int
) -> dict[str, bytes]:
    listed = {f.path for f in manifest.files}
    if manifest.validation is not None:
        listed.add(manifest.validation)
    extra = set(members) - listed - {MANIFEST_NAME, SIGNATURE_NAME}
    if extra:
        raise BundleError(f"{src}: members not listed in the manifest: {sorted(extra)}")
    payload: dict[str, bytes] = {}
    for f in manifest.files:
        payload[f.unpacked_path] = _verified_file(f, members, src, max_bytes=max_bytes)
    if manifest.validation is not None:
        payload[manifest.validation] = _verified_validation(manifest, members, src)
    for f in manifest.files:
        if f.format == ModelFormat.ONNX:
            from device_agent.onnx_check import check_external_data  # .onnx members only

            check_external_data(f.unpacked_path, payload[f.unpacked_path], set(payload), src)
    return payload


def _verified_file(f: ModelFile, members: dict[str, bytes], src: Path, *, max_bytes: int) -> bytes:
    data = _require(members, f.path, src)
    if len(data) != f.size:
        raise BundleError(f"{src}: {f.path} is {len(data)} bytes, manifest says {f.size}")
    if hashlib.sha256(data).hexdigest() != f.sha256:
        raise BundleError(f"{src}: sha256 of {f.path} does not match the manifest (tampered?)")
    if f.compression == Compression.NONE:
        return data
    assert f.raw_size is not None and f.raw_sha256 is not None  # Manifest.validate ensures it
    if f.raw_size > max_bytes:
        raise BundleError(f"{src}: {f.path} declares {f.raw_size} raw bytes, over the cap")
    raw = decompress(data, f.compression, limit=f.raw_size)
    if len(raw) != f.raw_size or hashlib.sha256(raw).hexdigest() != f.raw_sha256:
        raise BundleError(f"{src}: decompressed {f.path} does not match raw_sha256/raw_size")
    return raw


def _verified_validation(manifest: Manifest, members: dict[str, bytes], src: Path) -> bytes:
    name = manifest.validation
    assert name is not None  # callers check
    data = _require(members, name, src)
    if len(data) != manifest.validation_size:
        raise BundleError(f"{src}: {name} is {len(data)} bytes, manifest says {manifest.validation_size}")
    if hashlib.sha256(data).hexdigest() != manifest.validation_sha256:
        raise BundleError(f"{src}: sha256 of {name} does not match the manifest (tampered?)")
    return data


def decompress(data: bytes, how: Compression, *, limit: int) -> bytes:
    """Decompress at most ``limit + 1`` bytes, so a bomb cannot exhaust memory.

    deflate and xz use the standard library; zstd (bundles made before xz became the
    default) needs the ``zstandard`` package, which the device extras do not install.
    """
    try:
        if how == Compression.DEFLATE:
            return zlib.decompressobj().decompress(data, limit + 1)
        if how == Compression.XZ:
            return lzma.LZMADecompressor().decompress(data, max_length=limit + 1)
        if how == Compression.ZSTD:
            return _zstd_reader(data).read(limit + 1)  # type: ignore[no-any-return]
    except (zlib.error, lzma.LZMAError, EOFError) as e:
        raise BundleError(f"cannot decompress a {how.value} member: {e}") from e
    except Exception as e:  # zstandard raises its own ZstdError type
        if type(e).__name__ != "ZstdError":
            raise
        raise BundleError(f"cannot decompress a {how.value} member: {e}") from e
    raise BundleError(f"unknown compression {how!r}")


def _zstd_reader(data: bytes) -> Any:
    try:
        import zstandard
    except ImportError:
        raise BundleError(
            "this bundle stores its model zstd-compressed and the zstandard package is not "
            "installed: pip install 'edgekit-sdk[zstd]', or re-pack it with --compress xz"
        ) from None
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))


def write_tree(root: Path, payload: dict[str, bytes], *, durable: bool = True) -> None:
    """Write verified members below ``root`` (created; must be empty), each atomically
    (and, if ``durable``, fsynced with its directory)."""
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise BundleError(f"{root}: destination for the bundle is not empty")
    for rel, data in payload.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if durable:
            atomic_write(target, data)
        else:
            target.write_bytes(data)


def atomic_write(target: Path, data: bytes) -> None:
    """Write-then-rename with fsync of the file and its directory."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (fsync the folder)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
