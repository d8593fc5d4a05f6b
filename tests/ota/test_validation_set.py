"""``edge optimize`` bundles carry validation.npz: held-out inputs with the outputs the
shipped artifact gave them at build time; the agent's health check replays it."""

from __future__ import annotations

import io
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from device_agent.errors import BundleError
from device_agent.protocol.manifest import MANIFEST_NAME, Manifest, TensorSpec
from device_agent.protocol.messages import DeployPhase
from device_agent.quant import quantize
from device_agent.update.health import (
    HealthOptions,
    check_slot,
    load_validation,
    stored_inputs,
    validation_inputs,
)
from device_agent.update.store import ModelStore
from edge_sdk.bundle.signing import KeyPair, load_signer, new_key_pair
from edge_sdk.bundle.writer import write_bundle
from edge_sdk.cli import app

from .test_flow import install

runner = CliRunner()


@pytest.fixture(scope="module")
def signed_optimized(keras_cnn: Path, digits, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, KeyPair]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("valset")
    key = new_key_pair(root / "fleet-key")
    out = root / "m-1.0.0.edgepkg"
    res = runner.invoke(app, ["optimize", str(keras_cnn), "--data", str(digits.train), "--int8",
                              "--bundle-version", "1.0.0", "--runs", "2", "--samples", "32", "--compress", "xz",
                              "--sign", str(key.private), "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out, key


def _members(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}  # type: ignore[union-attr]


def _store(tmp_path: Path, key: KeyPair) -> Path:
    d = tmp_path / "store"
    (d / "keys").mkdir(parents=True)
    (d / "keys" / "fleet.pub").write_bytes(key.public.read_bytes())
    return d


def test_optimized_bundle_carries_recorded_outputs(signed_optimized: tuple[Path, KeyPair], digits) -> None:  # type: ignore[no-untyped-def]
    bundle, _ = signed_optimized
    members = _members(bundle)
    manifest = Manifest.from_json(members[MANIFEST_NAME])
    assert manifest.validation == "validation.npz"
    with np.load(io.BytesIO(members["validation.npz"])) as z:
        x, y = z["x"], z["y"]
    assert x.shape[1:] == tuple(np.load(digits.train)["x"].shape[1:])
    # Bounded in bytes: as many samples as fit in 10% of the model files' bytes as stored
    # (compressed: a set sized on the raw bytes outweighed a compressed model), at least one.
    assert all(f.raw_size is not None and f.size < f.raw_size for f in manifest.files)
    model_bytes = sum(f.size for f in manifest.files)
    assert x.shape[0] == max(1, int(0.1 * model_bytes) // x[0].nbytes) >= 1
    # an int8 model's inputs are stored in its own input dtype: a quarter of float32's bytes
    assert x.dtype == np.int8 and manifest.inputs[0].dtype == "int8"
    assert y.shape == (x.shape[0], 10) and np.isfinite(y).all()
    # The recorded outputs are a trained classifier's, not noise: mostly confident.
    assert float(np.mean(y.max(axis=1))) > 0.5


def test_health_check_replays_the_validation_set(signed_optimized: tuple[Path, KeyPair], tmp_path: Path) -> None:
    bundle, key = signed_optimized
    store = _store(tmp_path, key)
    res = install(store, bundle)
    assert res.status == DeployPhase.ACTIVE, res.reason
    slot = ModelStore(store).current()
    assert slot is not None
    report = check_slot(slot.root, slot.manifest, HealthOptions())
    # "ok" exactly: the full check ran (the reduced check says "no validation.npz").
    assert report.ok and report.reason == "ok", report
    assert report.max_abs_error is not None and report.max_abs_error <= 1e-3


SPEC = TensorSpec("x", (-1, 4), "int8", scale=0.05, zero_point=-3)


def test_stored_inputs_replay_exactly() -> None:
    x = np.random.default_rng(0).uniform(-10, 10, size=(64, 4)).astype(np.float32)
    q = stored_inputs(x, SPEC)
    assert q.dtype == np.int8 and q.min() == -128 and q.max() == 127  # clipped like the model's input
    # dequantized for the float API, the inputs quantize back to exactly the stored integers
    np.testing.assert_array_equal(quantize(validation_inputs(q, SPEC), SPEC), q)
    assert validation_inputs(x, SPEC) is x  # float inputs (older bundles) pass through
    float_spec = TensorSpec("x", (-1, 4), "float32")
    assert stored_inputs(x, float_spec).dtype == np.float32
    # For a float input, integers are values stored narrow: cast back, not dequantized.
    np.testing.assert_array_equal(validation_inputs(q, float_spec), q.astype(np.float32))
    with pytest.raises(BundleError, match="validation inputs are uint8"):
        validation_inputs(q.view(np.uint8), SPEC)


def test_validation_npz_dtypes_are_checked(tmp_path: Path) -> None:
    for x, y, msg in ((np.zeros((2, 4), np.bool_), np.zeros((2, 3), np.float32), "x has dtype bool"),
                      (np.zeros((2, 4), np.float32), np.zeros((2, 3), np.int64), "y has dtype int64")):
        np.savez(tmp_path / "v.npz", x=x, y=y)
        with pytest.raises(BundleError, match=msg):
            load_validation(tmp_path / "v.npz")


def test_tampered_validation_output_is_rejected(signed_optimized: tuple[Path, KeyPair], tmp_path: Path) -> None:
    """A correctly signed bundle whose recorded outputs the model does not reproduce."""
    bundle, key = signed_optimized
    members = _members(bundle)
    manifest = Manifest.from_json(members.pop(MANIFEST_NAME))
    members.pop("manifest.sig", None)
    with np.load(io.BytesIO(members["validation.npz"])) as z:
        x, y = z["x"], z["y"].copy()
    y[0] = np.roll(y[0], 1)  # another class wins for the first input
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    members["validation.npz"] = buf.getvalue()
    import hashlib

    manifest = replace(manifest, validation_sha256=hashlib.sha256(buf.getvalue()).hexdigest(),
                       validation_size=len(buf.getvalue()))
    bad = write_bundle(tmp_path / "bad.edgepkg", manifest, members, signer=load_signer(key.private))
    store = _store(tmp_path, key)
    assert install(store, bundle).status == DeployPhase.ACTIVE
    res = install(store, bad)
    assert res.status == DeployPhase.REJECTED, res
    assert "outputs disagree with the recorded validation outputs" in res.reason, res.reason
    current = ModelStore(store).current()
    assert current is not None and current.manifest.version == "1.0.0"
