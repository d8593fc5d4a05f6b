"""The bundle reader treats archives as hostile; the writer is atomic."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from device_agent.bundle import open_bundle, read_manifest, read_manifest_bytes, read_members
from device_agent.errors import BundleError
from device_agent.protocol.manifest import Compression, Manifest, ModelFormat, TensorSpec
from edge_sdk.bundle.writer import ModelPayload, build_bundle

SPEC_IN = (TensorSpec("x", (-1, 4), "int8", 0.5, -3),)
SPEC_OUT = (TensorSpec("y", (-1, 2), "float32"),)


def _bundle(tmp_path: Path, compression: Compression = Compression.NONE) -> tuple[Path, bytes]:
    data = b"TFL3" * 1000 + bytes(range(256))
    path, _ = build_bundle(
        tmp_path / "m.edgepkg",
        name="m",
        version="1.2.3",
        models=[ModelPayload(data, ModelFormat.TFLITE, inputs=SPEC_IN, outputs=SPEC_OUT)],
        compression=compression,
        labels=("a", "b"),
    )
    return path, data


@pytest.mark.parametrize("compression", list(Compression))
def test_round_trip(tmp_path: Path, compression: Compression) -> None:
    path, data = _bundle(tmp_path, compression)
    b = open_bundle(path, tmp_path / "out")
    assert b.manifest.labels == ("a", "b")
    assert b.manifest.inputs == SPEC_IN
    assert b.model_path(ModelFormat.TFLITE).read_bytes() == data
    assert read_manifest(path) == b.manifest
    if compression != Compression.NONE:
        assert b.manifest.files[0].size < len(data)


def _rewrite(src: Path, dst: Path, mutate) -> None:  # type: ignore[no-untyped-def]
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()  # type: ignore[union-attr]
            m, data = mutate(m, data)
            if m is not None:
                tout.addfile(m, io.BytesIO(data))


def test_tampered_byte_is_rejected_and_nothing_written(tmp_path: Path) -> None:
    path, _ = _bundle(tmp_path)
    bad = tmp_path / "bad.edgepkg"

    def flip(m: tarfile.TarInfo, data: bytes):  # type: ignore[no-untyped-def]
        if m.name.startswith("models/"):
            data = bytes([data[0] ^ 1]) + data[1:]
        return m, data

    _rewrite(path, bad, flip)
    with pytest.raises(BundleError, match="sha256"):
        open_bundle(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "models/../../x", "a//b"])
def test_unsafe_member_names(tmp_path: Path, name: str) -> None:
    path, _ = _bundle(tmp_path)
    bad = tmp_path / "bad.edgepkg"
    _rewrite(path, bad, lambda m, d: (m, d))
    with tarfile.open(bad, "a") as t:
        info = tarfile.TarInfo(name)
        info.size = 3
        t.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(BundleError):
        open_bundle(bad, tmp_path / "out")


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    path, _ = _bundle(tmp_path)
    with tarfile.open(path, "a") as t:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        t.addfile(info)
    with pytest.raises(BundleError, match="link"):
        open_bundle(path, tmp_path / "out")


def test_unlisted_member_is_refused(tmp_path: Path) -> None:
    path, _ = _bundle(tmp_path)
    with tarfile.open(path, "a") as t:
        info = tarfile.TarInfo("extra.bin")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(BundleError, match="not listed"):
        open_bundle(path, tmp_path / "out")


def test_size_cap(tmp_path: Path) -> None:
    path, _ = _bundle(tmp_path)
    with pytest.raises(BundleError, match=r"cap|larger"):
        open_bundle(path, tmp_path / "out", max_bytes=1024)


def test_manifest_bytes_as_shipped(tmp_path: Path) -> None:
    """What telemetry hashes to name the model: the member's exact bytes, or None."""
    path, _ = _bundle(tmp_path)
    assert read_manifest_bytes(path) == read_members(path)["manifest.json"]
    (tmp_path / "m.tflite").write_bytes(b"TFL3 not an archive")
    assert read_manifest_bytes(tmp_path / "m.tflite") is None


def test_not_a_tar(tmp_path: Path) -> None:
    p = tmp_path / "x.edgepkg"
    p.write_bytes(b"hello world")
    with pytest.raises(BundleError, match="not a readable bundle"):
        open_bundle(p, tmp_path / "out")


def test_manifest_defects_are_bundle_errors() -> None:
    with pytest.raises(BundleError, match="JSON"):
        Manifest.from_json(b"{not json")
    with pytest.raises(BundleError, match="format_version"):
        Manifest.from_json(b'{"format_version": 99}')
    with pytest.raises(BundleError, match="missing or invalid"):
        Manifest.from_json(b'{"format_version": 1, "name": "m"}')


def test_writer_is_deterministic_and_hash_matches(tmp_path: Path) -> None:
    a, _ = _bundle(tmp_path / "a")
    m = read_manifest(a)
    with tarfile.open(a) as t:
        stored = t.extractfile(m.files[0].path).read()  # type: ignore[union-attr]
    assert hashlib.sha256(stored).hexdigest() == m.files[0].sha256


@pytest.mark.parametrize("compression", [Compression.ZSTD, Compression.DEFLATE, Compression.XZ])
def test_compressed_bundle_is_served(tmp_path: Path, compression: Compression) -> None:
    """A compressed member unpacks under its model name, so a runtime picks it by suffix."""
    import numpy as np

    from device_agent.loader import engine_for

    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.arange(12, dtype=np.float32).tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path, manifest = build_bundle(
        tmp_path / "c.edgepkg",
        name="c",
        version="1.0.0",
        models=[ModelPayload(model.SerializeToString(), ModelFormat.ONNX)],
        compression=compression,
    )
    assert manifest.files[0].path != manifest.files[0].unpacked_path
    with engine_for(path) as engine:
        pred = engine.infer(np.array([[0, 0, 0, 1]], dtype=np.float32))
    assert pred[0].index == 2  # row 3 of w is [9, 10, 11]
    assert onnx is not None


def test_archive_carries_no_record_padding(tmp_path: Path) -> None:
    """A tiny bundle costs its members plus headers, not a 10 KiB tar record."""
    path, data = _bundle(tmp_path)
    size = path.stat().st_size
    assert size < len(data) + 6 * 1024  # headers (PAX + ustar) and the end-of-archive blocks
    assert open_bundle(path, tmp_path / "out").manifest.name == "m"


def test_zstd_bundle_without_zstandard_names_the_extra(tmp_path: Path) -> None:
    """Devices install no zstandard: an older zstd bundle is refused with what to do."""
    import os
    import subprocess
    import sys

    path, _ = _bundle(tmp_path, Compression.ZSTD)
    code = ("import sys; sys.modules['zstandard'] = None\n"
            "from device_agent.bundle import open_bundle\n"
            f"open_bundle({str(path)!r}, {str(tmp_path / 'out')!r})\n")
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": root})
    assert out.returncode != 0
    assert "BundleError" in out.stderr and "pip install 'edgekit-sdk[zstd]'" in out.stderr
    assert "--compress xz" in out.stderr
    assert not (tmp_path / "out").exists()
