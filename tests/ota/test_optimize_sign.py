"""The issue's first path end to end: optimize with --sign, verify, flash into a store."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from device_agent.update.store import ModelStore
from edge_sdk.bundle.signing import new_key_pair
from edge_sdk.cli import app

runner = CliRunner()


def test_optimize_sign_verify_flash(keras_cnn: Path, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = new_key_pair(tmp_path / "fleet-key")
    out = tmp_path / "m-1.2.0.edgepkg"
    res = runner.invoke(app, ["optimize", str(keras_cnn), "--data", str(digits.train), "--int8",
                              "--bundle-version", "1.2.0", "--runs", "2", "--samples", "32",
                              "--sign", str(key.private), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    ver = runner.invoke(app, ["verify", str(out), "--key", str(key.public)])
    assert ver.exit_code == 0 and f"signed by key {key.key_id}" in ver.output, ver.output
    card = tmp_path / "card"
    fl = runner.invoke(app, ["flash", str(out), "--to", str(card), "--key", str(key.public)])
    assert fl.exit_code == 0, fl.output
    assert ModelStore(card).current().manifest.version == "1.2.0"  # type: ignore[union-attr]


def test_optimize_refuses_a_bad_key_before_working(keras_cnn: Path, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "not-a-key"
    bad.write_text("hello")
    res = runner.invoke(app, ["optimize", str(keras_cnn), "--data", str(digits.train),
                              "--sign", str(bad), "-o", str(tmp_path / "x.edgepkg")])
    assert res.exit_code == 2 and "private key" in res.output
    assert not (tmp_path / "x.edgepkg").exists()
