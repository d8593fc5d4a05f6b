"""Fuzz the manifest parser and the bundle reader with hypothesis.

Every case must end in a :class:`BundleError` (a clean rejection) or a valid bundle;
any other exception fails the test. The counts are printed at the end of the run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_agent.bundle import verify_bundle
from device_agent.errors import BundleError
from device_agent.onnx_check import external_data_locations
from device_agent.protocol.manifest import Manifest
from device_agent.trust import TrustStore

from .conftest import SUMMARY, Factory

COUNTS: Counter[str] = Counter()
# RAM-backed when available: tens of thousands of tiny files.
_TMP = "/dev/shm" if os.path.isdir("/dev/shm") else None


def fuzz(n: int) -> settings:
    """Small examples, no deadline, reproducible: ``n`` cases for one test."""
    return settings(
        max_examples=n, deadline=None, database=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                               HealthCheck.data_too_large],
    )

TESTS = 6

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def good(factory: Factory) -> tuple[bytes, dict[str, Any], bytes]:
    """A valid signed bundle's bytes, its manifest as a dict, and the raw manifest."""
    path = factory.bundle("1.0.0", name="fuzz-base.edgepkg")
    with tarfile.open(path) as t:
        mbytes = t.extractfile("manifest.json").read()  # type: ignore[union-attr]
    return path.read_bytes(), json.loads(mbytes), mbytes


def _outcome(kind: str, fn) -> None:  # type: ignore[no-untyped-def]
    try:
        fn()
    except BundleError:
        COUNTS[f"{kind}:rejected"] += 1
    else:
        COUNTS[f"{kind}:valid"] += 1
    _record()


def _paths(d: dict[str, Any], prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else []
    for k, v in items:
        out += _paths(v, (*prefix, k)) if isinstance(v, dict | list) else [(*prefix, k)]
    return out


def _set(d: Any, path: tuple[Any, ...], value: Any) -> None:
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value


@fuzz(3500)
@given(data=st.data())
def test_manifest_field_mutations(good: tuple[bytes, dict[str, Any], bytes], data: st.DataObject) -> None:
    manifest = json.loads(json.dumps(good[1]))
    paths = _paths(manifest)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        value = data.draw(json_values)
        # An earlier mutation may have replaced a parent of this path.
        with contextlib.suppress(KeyError, IndexError, TypeError):
            _set(manifest, path, value)
    raw = json.dumps(manifest, allow_nan=True).encode()
    _outcome("manifest", lambda: Manifest.from_json(raw))


@fuzz(1500)
@given(raw=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_manifest_raw_bytes(raw: bytes) -> None:
    _outcome("manifest", lambda: Manifest.from_json(raw))


def _write(data: bytes) -> Path:
    fd, name = tempfile.mkstemp(suffix=".edgepkg", dir=_TMP)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return Path(name)


def _verify(data: bytes, trust: TrustStore | None = None) -> None:
    path = _write(data)
    try:
        verify_bundle(path, check_signature=trust, max_bytes=1 << 20)
    finally:
        path.unlink()


@fuzz(2500)
@given(data=st.data())
def test_bundle_byte_mutations(good: tuple[bytes, dict[str, Any], bytes], factory: Factory,
                               data: st.DataObject) -> None:
    b = bytearray(good[0])
    op = data.draw(st.sampled_from(["flip", "truncate", "insert", "zero-run"]))
    pos = data.draw(st.integers(0, len(b) - 1))
    if op == "flip":
        b[pos] ^= data.draw(st.integers(1, 255))
    elif op == "truncate":
        del b[pos:]
    elif op == "insert":
        b[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        b[pos : pos + 512] = bytes(min(512, len(b) - pos))
    trust = TrustStore.from_paths([factory.key.public]) if data.draw(st.booleans()) else None
    _outcome("bundle", lambda: _verify(bytes(b), trust))


names = st.sampled_from([
    "manifest.json", "manifest.sig", "models/stage0.onnx", "validation.npz", "../x", "/etc/x",
    "a/../b", "a//b", ".", "", "models/", "x" * 300, "ok.bin",
]) | st.text(max_size=20)
kinds = st.sampled_from([tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                         tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE])


@fuzz(1500)
@given(members=st.lists(st.tuples(names, kinds, st.binary(max_size=64)), max_size=6),
       fmt=st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT]))
def test_generated_archives(members: list[tuple[str, bytes, bytes]], fmt: int) -> None:
    buf = io.BytesIO()
    try:
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
            for name, kind, payload in members:
                info = tarfile.TarInfo(name)
                info.type, info.size = kind, len(payload) if kind == tarfile.REGTYPE else 0
                info.linkname = "manifest.json" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
                t.addfile(info, io.BytesIO(payload) if kind == tarfile.REGTYPE else None)
    except (ValueError, UnicodeError):
        return  # tarfile itself cannot encode this name in this format; not a reader case
    _outcome("bundle", lambda: _verify(buf.getvalue()))


@fuzz(1000)
@given(manifest=st.data())
def test_valid_archive_hostile_manifest(good: tuple[bytes, dict[str, Any], bytes],
                                        manifest: st.DataObject) -> None:
    """A well-formed archive whose manifest is mutated: the reader's checks after parsing."""
    d = json.loads(json.dumps(good[1]))
    path = manifest.draw(st.sampled_from(_paths(d)))
    _set(d, path, manifest.draw(json_values))
    with tarfile.open(fileobj=io.BytesIO(good[0])) as t:
        members = {m.name: t.extractfile(m).read() for m in t.getmembers()}  # type: ignore[union-attr]
    members["manifest.json"] = json.dumps(d, allow_nan=True).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    _outcome("bundle", lambda: _verify(buf.getvalue()))


@fuzz(500)
@given(raw=st.binary(max_size=200))
def test_onnx_external_data_scanner(raw: bytes) -> None:
    _outcome("onnx-scan", lambda: external_data_locations(raw))


_DONE: set[str] = set()


def _record() -> None:
    return None


@pytest.fixture(autouse=True)
def _summary(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    yield
    _DONE.add(request.node.name)
    if len(_DONE) == TESTS:
        total = sum(COUNTS.values())
        parts = ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items()))
        SUMMARY.append(f"fuzz: {total} cases, 0 unhandled exceptions ({parts})")
