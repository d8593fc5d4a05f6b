"""The update flow against hostile and broken bundles: each is rejected with a reason that
names the cause, and the model that was serving keeps serving."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from device_agent import __version__
from device_agent.protocol.messages import DeployPhase
from device_agent.update.agent import engine_for_store, trust_for
from device_agent.update.flow import UpdateFlow, UpdatePolicy, UpdateResult
from device_agent.update.health import HealthOptions
from device_agent.update.store import ModelStore
from edge_sdk.bundle.signing import new_key_pair

from .conftest import Factory, onnx_model, validation_npz


def install(store_dir: Path, bundle: Path, **policy: object) -> UpdateResult:
    store = ModelStore(store_dir)
    store.recover()
    pol = UpdatePolicy(agent_version=__version__, **policy)  # type: ignore[arg-type]
    return UpdateFlow(store, trust_for(store), pol).run(bundle)


def serving_version(store_dir: Path, x: np.ndarray) -> str:
    """The version the store serves, after proving it loads and infers."""
    with engine_for_store(store_dir) as engine:
        preds = engine.infer(x[:4])
        assert len(preds) == 4 and all(0 <= p.index < 10 for p in preds)
        assert engine.manifest is not None
        return engine.manifest.version


@pytest.fixture
def serving(store_dir: Path, factory: Factory) -> Path:
    """A store serving version 1.0.0."""
    res = install(store_dir, factory.bundle("1.0.0"))
    assert res.status == DeployPhase.ACTIVE, res.reason
    return store_dir


def assert_rejected(store_dir: Path, factory: Factory, res: UpdateResult, cause: str) -> None:
    assert res.status == DeployPhase.REJECTED, res
    assert cause.lower() in res.reason.lower(), res.reason
    assert serving_version(store_dir, factory.x) == "1.0.0"
    assert not any((store_dir / "staging").iterdir()), "staging left behind"


def test_update_switches_and_keeps_previous(serving: Path, factory: Factory) -> None:
    res = install(serving, factory.bundle("1.1.0", seed=1))
    assert res.status == DeployPhase.ACTIVE, res.reason
    store = ModelStore(serving)
    assert serving_version(serving, factory.x) == "1.1.0"
    assert store.floor() == "1.1.0"
    assert store.previous_id() is not None and store.previous_id().startswith("1.0.0-")  # type: ignore[union-attr]


def _rewrite(src: Path, dst: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()  # type: ignore[union-attr]
            out = mutate(m, data)
            for info, payload in out:
                tout.addfile(info, None if payload is None else io.BytesIO(payload))
    return dst


@pytest.mark.parametrize(
    ("member", "cause"),
    [
        ("manifest.json", "signature does not verify"),
        ("manifest.sig", "signature does not verify"),
        ("models/stage0.onnx", "sha256 of models/stage0.onnx"),
        ("validation.npz", "sha256 of validation.npz"),
    ],
)
def test_tampered_byte_in_any_member(serving: Path, factory: Factory, tmp_path: Path,
                                     member: str, cause: str) -> None:
    def flip(m: tarfile.TarInfo, data: bytes):  # type: ignore[no-untyped-def]
        if m.name == member:
            i = len(data) // 2
            data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
        return [(m, data)]

    bad = _rewrite(factory.bundle("1.1.0", seed=1), tmp_path / "bad.edgepkg", flip)
    assert_rejected(serving, factory, install(serving, bad), cause)


def test_unsigned_bundle(serving: Path, factory: Factory) -> None:
    res = install(serving, factory.bundle("1.1.0", signed=False))
    assert_rejected(serving, factory, res, "unsigned bundle")


def test_unknown_key(serving: Path, factory: Factory, tmp_path: Path) -> None:
    other = new_key_pair(tmp_path / "rogue")
    res = install(serving, factory.bundle("1.1.0", key=other.private, name="rogue.edgepkg"))
    assert_rejected(serving, factory, res, "does not verify with any trusted key")


def test_downgrade_refused_unless_allowed(serving: Path, factory: Factory) -> None:
    assert install(serving, factory.bundle("1.2.0", seed=2)).status == DeployPhase.ACTIVE
    old = factory.bundle("1.0.5", seed=3)
    res = install(serving, old)
    assert res.status == DeployPhase.REJECTED and "downgrade refused" in res.reason
    assert "floor 1.2.0" in res.reason
    assert serving_version(serving, factory.x) == "1.2.0"
    assert install(serving, old, allow_downgrade=True).status == DeployPhase.ACTIVE
    assert serving_version(serving, factory.x) == "1.0.5"


def test_wrong_device_type(serving: Path, factory: Factory) -> None:
    ModelStore(serving).set_device_type("rpi4")
    res = install(serving, factory.bundle("1.1.0", device_types=("jetson-nano",), name="j.edgepkg"))
    assert_rejected(serving, factory, res, "wrong device type: bundle is for jetson-nano, this device is rpi4")


def test_min_agent_version(serving: Path, factory: Factory) -> None:
    res = install(serving, factory.bundle("1.1.0", min_agent_version="99.0.0", name="new.edgepkg"))
    assert_rejected(serving, factory, res, "needs agent >= 99.0.0")


def test_bundle_over_the_cap(serving: Path, factory: Factory) -> None:
    res = install(serving, factory.bundle("1.1.0"), max_bytes=2048)
    assert_rejected(serving, factory, res, "exceeds the cap of 2048")


def test_member_larger_than_declared(serving: Path, factory: Factory, tmp_path: Path) -> None:
    def grow(m: tarfile.TarInfo, data: bytes):  # type: ignore[no-untyped-def]
        if m.name == "models/stage0.onnx":
            data += b"\0" * 100
            m.size = len(data)
        return [(m, data)]

    bad = _rewrite(factory.bundle("1.1.0"), tmp_path / "big.edgepkg", grow)
    assert_rejected(serving, factory, install(serving, bad), "manifest says")


def _add_member(src: Path, dst: Path, info: tarfile.TarInfo, data: bytes | None = None) -> Path:
    def add(m: tarfile.TarInfo, d: bytes):  # type: ignore[no-untyped-def]
        return [(m, d), (info, data)] if m.name == "manifest.sig" else [(m, d)]

    return _rewrite(src, dst, add)


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    i = tarfile.TarInfo(name)
    i.type, i.size, i.linkname = kind, size, link
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        i.devmajor, i.devminor = 1, 3
    return i


@pytest.mark.parametrize(
    ("info", "data", "cause"),
    [
        (_info("../evil.onnx", size=3), b"abc", "'../evil.onnx' contains '.' or '..'"),
        (_info("models/../../evil", size=3), b"abc", "'models/../../evil' contains '.' or '..'"),
        (_info("/etc/cron.d/evil", size=3), b"abc", "'/etc/cron.d/evil' is not a plain relative path"),
        (_info("models/link", tarfile.SYMTYPE, link="/etc/passwd"), None, "refusing link 'models/link'"),
        (_info("models/hard", tarfile.LNKTYPE, link="manifest.json"), None, "refusing link 'models/hard'"),
        (_info("models/null", tarfile.CHRTYPE), None, "refusing non-regular member 'models/null'"),
        (_info("models/disk", tarfile.BLKTYPE), None, "refusing non-regular member 'models/disk'"),
        (_info("models/fifo", tarfile.FIFOTYPE), None, "refusing non-regular member 'models/fifo'"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "chardev", "blockdev", "fifo"],
)
def test_hostile_tar_members(serving: Path, factory: Factory, tmp_path: Path,
                             info: tarfile.TarInfo, data: bytes | None, cause: str) -> None:
    bad = _add_member(factory.bundle("1.1.0"), tmp_path / "hostile.edgepkg", info, data)
    assert_rejected(serving, factory, install(serving, bad), cause)


@pytest.mark.parametrize("location", ["../../../etc/passwd", "/etc/passwd", "weights.bin"])
def test_onnx_external_data_outside_the_bundle(serving: Path, factory: Factory, location: str) -> None:
    import onnx
    from onnx.external_data_helper import set_external_data

    w, b = factory.weights(0)
    model = onnx.load_from_string(onnx_model(w, b))
    tensor = model.graph.initializer[0]
    set_external_data(tensor, location=location, offset=0, length=64 * 10 * 4)
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    bad = factory.bundle("1.1.0", model=model.SerializeToString(), name="ext.edgepkg")
    res = install(serving, bad)
    assert_rejected(serving, factory, res, f"external tensor data from {location!r}")


def test_truncated_transfer(serving: Path, factory: Factory, tmp_path: Path) -> None:
    path = factory.bundle("1.1.0")
    data = path.read_bytes()
    with tarfile.open(path) as t:
        last = t.getmembers()[-1]
    # Cuts inside headers and inside data, up to one byte short of the last member's end
    # (past it only the tar padding is missing and the bundle is complete).
    for cut in (100, 700, len(data) // 4, last.offset_data + last.size - 1):
        part = tmp_path / f"part-{cut}.edgepkg"
        part.write_bytes(data[:cut])
        res = install(serving, part)
        assert res.status == DeployPhase.REJECTED, cut
        causes = ("truncated", "not a readable bundle", "no manifest")
        assert any(c in res.reason for c in causes), res.reason
    assert_rejected(serving, factory, res, "verify:")


def test_health_check_wrong_outputs(serving: Path, factory: Factory) -> None:
    bad_val = validation_npz(factory.x, np.full((len(factory.x), 10), 0.1, np.float32))
    res = install(serving, factory.bundle("1.1.0", validation=bad_val, name="wrongout.edgepkg"))
    assert_rejected(serving, factory, res, "outputs disagree with the recorded validation outputs")


def test_health_check_nan_outputs(serving: Path, factory: Factory) -> None:
    w, b = factory.weights(0)
    w[0, 0] = np.nan
    nan_model = onnx_model(w, b)
    val = validation_npz(factory.x, np.zeros((len(factory.x), 10), np.float32))
    res = install(serving, factory.bundle("1.1.0", model=nan_model, validation=val, name="nan.edgepkg"))
    assert_rejected(serving, factory, res, "NaN")


def test_health_check_latency_budget(serving: Path, factory: Factory) -> None:
    res = install(serving, factory.bundle("1.1.0"), health=HealthOptions(latency_budget_ms=0.0))
    assert_rejected(serving, factory, res, "over the budget of 0.0 ms")


def test_model_runtime_cannot_parse(serving: Path, factory: Factory) -> None:
    res = install(serving, factory.bundle("1.1.0", model=b"\x08\x07" + b"\xff" * 64, name="junk.edgepkg"))
    assert res.status == DeployPhase.REJECTED
    assert "onnx" in res.reason.lower(), res.reason
    assert serving_version(serving, factory.x) == "1.0.0"


@pytest.fixture
def tiny_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 1 MiB tmpfs: the store really runs out of space (needs root; this suite runs as root)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_full_disk(tiny_disk: Path, factory: Factory) -> None:
    store = tiny_disk / "store"
    (store / "keys").mkdir(parents=True)
    (store / "keys" / "fleet.pub").write_bytes(factory.key.public.read_bytes())
    assert install(store, factory.bundle("1.0.0")).status == DeployPhase.ACTIVE
    filler = tiny_disk / "filler"
    free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
    filler.write_bytes(b"\0" * max(0, free - 8192))
    res = install(store, factory.bundle("1.1.0", seed=1))
    assert_rejected(store, factory, res, "disk")
    assert "space" in res.reason


def test_bundle_without_validation_gets_a_reduced_check(serving: Path, factory: Factory, tmp_path: Path) -> None:
    """Bundles from `edge optimize` carry no validation set yet: load, finite outputs and
    latency are still checked, and a NaN model is still refused."""
    from device_agent.protocol.manifest import ModelFormat, TensorSpec
    from edge_sdk.bundle.signing import load_signer
    from edge_sdk.bundle.writer import ModelPayload, build_bundle

    def bundle(name: str, w: np.ndarray, b: np.ndarray, version: str) -> Path:
        out = tmp_path / name
        build_bundle(out, name="digits", version=version, signer=load_signer(factory.key.private),
                     models=[ModelPayload(onnx_model(w, b), ModelFormat.ONNX,
                                          inputs=(TensorSpec("x", (-1, 64), "float32"),))])
        return out

    w, b = factory.weights(0)
    ok = install(serving, bundle("plain.edgepkg", w, b, "1.1.0"))
    assert ok.status == DeployPhase.ACTIVE, ok.reason
    w2 = w.copy()
    w2[:, 0] = np.nan
    res = install(serving, bundle("plain-nan.edgepkg", w2, b, "1.2.0"))
    assert res.status == DeployPhase.REJECTED and "NaN" in res.reason, res.reason
    assert serving_version(serving, factory.x) == "1.1.0"
