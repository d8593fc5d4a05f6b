"""Writing a bundle (``.edgepkg``) on the host.

The archive is built in a temporary file beside the target and renamed into place, so
a failure never leaves a half-written bundle under the user's name.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from device_agent.protocol.manifest import (
    MANIFEST_NAME,
    RUNTIME_FOR_FORMAT,
    SIGNATURE_NAME,
    Compression,
    Manifest,
    ModelFile,
    ModelFormat,
    TensorSpec,
)

# Signs the exact manifest bytes; returns the signature (Ed25519 in edge_sdk.bundle.signing).
Signer = Callable[[bytes], bytes]


@dataclass(frozen=True)
class ModelPayload:
    """A model file to put in the bundle, with its tensor specs."""

    data: bytes
    format: ModelFormat
    stage: int = 0
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    name: str | None = None  # member name; default models/stage{N}.{ext}


_SUFFIX = {Compression.ZSTD: ".zst", Compression.DEFLATE: ".z", Compression.XZ: ".xz"}


def compress(data: bytes, how: Compression) -> bytes:
    """``data`` as a bundle member stored with ``how`` (settings the device's decoder can afford)."""
    if how == Compression.NONE:
        return data
    if how == Compression.DEFLATE:
        return zlib.compress(data, 9)
    if how == Compression.XZ:
        # The dictionary no larger than the data: the device's decoder allocates it whole.
        dict_size = min(max(1 << 16, 1 << (len(data) - 1).bit_length()), 1 << 26)
        return min((_xz(data, dict_size, lc, pb) for lc, pb in _XZ_LITERALS), key=len)
    import zstandard

    return zstandard.ZstdCompressor(level=19).compress(data)


# LZMA's literal coder settings tried, the smaller output kept: the default (lc=3, pb=2:
# a literal is predicted from the byte before it) suits text and float32 files; int8
# weights are near-independent bytes, where a context only dilutes the statistics. On the
# digits LeNet-5's int8 search candidates lc=0, pb=0 stored 3.4-8.5% fewer bytes (31,752
# against 33,000 at 97% weight sparsity with 16 clusters); on the float32 file 1.5% more.
# Either way the stream is plain xz: every decoder reads its settings from the header.
_XZ_LITERALS = ((3, 2), (0, 0))


def _xz(data: bytes, dict_size: int, lc: int, pb: int) -> bytes:
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": dict_size,
                "lc": lc, "lp": 0, "pb": pb}]
    return lzma.compress(data, format=lzma.FORMAT_XZ, filters=filters)


def model_file(p: ModelPayload, compression: Compression = Compression.NONE) -> tuple[ModelFile, bytes]:
    """The manifest entry and stored bytes for one model payload."""
    ext = p.format.value
    path = p.name or f"models/stage{p.stage}.{ext}"
    stored = compress(p.data, compression)
    if compression != Compression.NONE:
        path += _SUFFIX[compression]
    entry = ModelFile(
        path=path,
        sha256=hashlib.sha256(stored).hexdigest(),
        size=len(stored),
        format=p.format,
        stage=p.stage,
        compression=compression,
        raw_sha256=None if compression == Compression.NONE else hashlib.sha256(p.data).hexdigest(),
        raw_size=None if compression == Compression.NONE else len(p.data),
        inputs=p.inputs,
        outputs=p.outputs,
        runtime=RUNTIME_FOR_FORMAT[p.format],
    )
    return entry, stored


def now_iso() -> str:
    """The current UTC time to the second, ISO 8601 (the manifest's ``created``)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def write_bundle(
    out: str | os.PathLike[str],
    manifest: Manifest,
    members: dict[str, bytes],
    *,
    signer: Signer | None = None,
) -> Path:
    """Write ``manifest`` and ``members`` (path → stored bytes) atomically to ``out``.

    ``manifest.files`` must already describe ``members`` (see :func:`build_manifest`).
    """
    manifest.validate()
    manifest_bytes = manifest.to_json()
    entries = [(MANIFEST_NAME, manifest_bytes)]
    if signer is not None:
        entries.append((SIGNATURE_NAME, signer(manifest_bytes)))
    entries += sorted(members.items())
    return write_archive(out, entries)


def write_archive(out: str | os.PathLike[str], entries: list[tuple[str, bytes]]) -> Path:
    """Write ``(name, bytes)`` entries as a tar archive, atomically, in the given order."""
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            with tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name, data in entries:
                    tar.addfile(_info(name, len(data)), io.BytesIO(data))
            # tarfile pads the archive to a 10 KiB record after the end-of-archive blocks;
            # readers stop at those blocks, so the padding is only bytes on the wire.
            fh.truncate(tar.offset)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; a bundle is meant to be copied and served.
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _info(name: str, size: int) -> tarfile.TarInfo:
    # Fixed owner, mode and time: the same content gives the same archive bytes.
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uname = info.gname = "edge"
    return info


def build_bundle(
    out: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    models: list[ModelPayload],
    compression: Compression = Compression.NONE,
    validation: bytes | None = None,
    signer: Signer | None = None,
    **fields: object,
) -> tuple[Path, Manifest]:
    """Build a manifest for ``models`` and write the bundle; returns its path and manifest.

    ``fields`` are further :class:`Manifest` fields (labels, preprocessing, exits, ...).
    """
    entries: list[ModelFile] = []
    members: dict[str, bytes] = {}
    for p in models:
        entry, stored = model_file(p, compression)
        entries.append(entry)
        members[entry.path] = stored
    first = models[0]
    # The top-level specs are the first target's: its first stage's inputs and its last
    # stage's outputs (never another format's, with --target both).
    last = [m for m in models if m.format == first.format][-1]
    base = Manifest(
        name=name,
        version=version,
        created=now_iso(),
        files=tuple(entries),
        inputs=first.inputs,
        outputs=last.outputs,
    )
    if validation is not None:
        members["validation.npz"] = validation
        base = replace(
            base,
            validation="validation.npz",
            validation_sha256=hashlib.sha256(validation).hexdigest(),
            validation_size=len(validation),
        )
    manifest = replace(base, **fields)  # type: ignore[arg-type]
    return write_bundle(out, manifest, members, signer=signer), manifest
