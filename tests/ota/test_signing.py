"""Ed25519 keys, signatures over the exact manifest bytes, and the keys/verify/sign commands."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from device_agent.bundle import read_members, verify_bundle
from device_agent.errors import BundleError, EdgeError
from device_agent.trust import TrustStore
from edge_sdk.bundle.signing import new_key_pair, sign_bundle
from edge_sdk.cli import app

from .conftest import Factory

runner = CliRunner()


def test_keys_new_writes_private_0600_and_refuses_overwrite(tmp_path: Path) -> None:
    res = runner.invoke(app, ["keys", "new", "--out", str(tmp_path / "fleet-key")])
    assert res.exit_code == 0, res.output
    priv, pub = tmp_path / "fleet-key", tmp_path / "fleet-key.pub"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in priv.read_bytes() and b"PUBLIC KEY" in pub.read_bytes()
    before = priv.read_bytes()
    again = runner.invoke(app, ["keys", "new", "--out", str(tmp_path / "fleet-key")])
    assert again.exit_code == 2 and "already exists" in again.output
    assert priv.read_bytes() == before


def test_signed_bundle_verifies_with_its_key_only(factory: Factory, tmp_path: Path) -> None:
    path = factory.bundle("1.0.0")
    ok = runner.invoke(app, ["verify", str(path), "--key", str(factory.key.public)])
    assert ok.exit_code == 0 and "signed by key" in ok.output, ok.output
    other = new_key_pair(tmp_path / "other")
    bad = runner.invoke(app, ["verify", str(path), "--key", str(other.public)])
    assert bad.exit_code == 2 and "any trusted key" in bad.output


def test_unsigned_bundle_fails_verify(factory: Factory) -> None:
    path = factory.bundle("1.0.0", signed=False)
    res = runner.invoke(app, ["verify", str(path), "--key", str(factory.key.public)])
    assert res.exit_code == 2 and "unsigned" in res.output


def test_signature_covers_exact_manifest_bytes(factory: Factory) -> None:
    path = factory.bundle("1.0.0")
    members = read_members(path)
    trust = TrustStore.from_paths([factory.key.public])
    trust.verify(members["manifest.json"], members["manifest.sig"])
    # One added space keeps the JSON meaning but changes the bytes: the signature must fail.
    with pytest.raises(BundleError, match="does not verify"):
        trust.verify(members["manifest.json"] + b" ", members["manifest.sig"])


def test_sign_command_resigns_an_unsigned_bundle(factory: Factory, tmp_path: Path) -> None:
    unsigned = factory.bundle("1.0.0", signed=False)
    out = tmp_path / "signed.edgepkg"
    res = runner.invoke(app, ["sign", str(unsigned), "--key", str(factory.key.private), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert read_members(out)["manifest.json"] == read_members(unsigned)["manifest.json"]
    verify_bundle(out, check_signature=TrustStore.from_paths([factory.key.public]))


def test_sign_refuses_a_public_key_as_private(factory: Factory, tmp_path: Path) -> None:
    with pytest.raises(EdgeError, match="private key"):
        sign_bundle(factory.bundle("1.0.0"), factory.key.public, tmp_path / "x.edgepkg")
    assert not (tmp_path / "x.edgepkg").exists()


def test_keys_new_via_subprocess(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edge_sdk", "keys", "new", "--out", str(tmp_path / "k")],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "k.pub").is_file()
