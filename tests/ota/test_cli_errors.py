"""Every command: an unwritable output is one ``error:`` line and exit 2 before any work,
a failure leaves nothing half-written, and read-only commands create nothing."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_sdk.cli import app as edge_app
from tests.support.agent_cli import agent

from .conftest import Factory

runner = CliRunner()
UNWRITABLE = "/proc/edge-test/out"  # /proc takes no new files, not even as root


def _one_error_line(res: object, *names: str) -> str:
    out = res.output  # type: ignore[attr-defined]
    assert res.exit_code == 2, out  # type: ignore[attr-defined]
    assert "Traceback" not in out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    for n in names:
        assert n in lines[0], out
    return lines[0]


def test_optimize_refuses_an_unwritable_bundle_before_loading_anything(tmp_path: Path) -> None:
    # The model is not even a model: the output is checked first, in well under a second.
    junk = tmp_path / "model.keras"
    junk.write_bytes(b"not a model")
    res = runner.invoke(edge_app, ["optimize", str(junk), "--data", str(junk),
                                   "-o", f"{UNWRITABLE}.edgepkg"])
    _one_error_line(res, f"{UNWRITABLE}.edgepkg", "bundle")


def test_optimize_refuses_an_output_below_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    res = runner.invoke(edge_app, ["optimize", str(f), "--data", str(f), "-o", str(f / "m.edgepkg")])
    _one_error_line(res, "is not a directory")


def test_sign_refuses_an_unwritable_output(factory: Factory) -> None:
    res = runner.invoke(edge_app, ["sign", str(factory.bundle("1.0.0")), "--key",
                                   str(factory.key.private), "-o", UNWRITABLE])
    _one_error_line(res, UNWRITABLE)


def test_sign_leaves_nothing_when_the_bundle_is_bad(factory: Factory, tmp_path: Path) -> None:
    bad = tmp_path / "bad.edgepkg"
    bad.write_bytes(b"\0" * 1024)
    out = tmp_path / "signed.edgepkg"
    res = runner.invoke(edge_app, ["sign", str(bad), "--key", str(factory.key.private), "-o", str(out)])
    _one_error_line(res, str(bad))
    assert list(tmp_path.iterdir()) == [bad]


def test_sign_writes_a_bundle_others_can_read(factory: Factory, tmp_path: Path) -> None:
    out = tmp_path / "signed.edgepkg"
    res = runner.invoke(edge_app, ["sign", str(factory.bundle("1.0.0", signed=False)), "--key",
                                   str(factory.key.private), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_flash_refuses_an_unwritable_store(factory: Factory) -> None:
    res = runner.invoke(edge_app, ["flash", str(factory.bundle("1.0.0")), "--to", UNWRITABLE,
                                   "--key", str(factory.key.public)])
    _one_error_line(res, UNWRITABLE, "model store")


def test_agent_install_refuses_an_unwritable_store(factory: Factory) -> None:
    res = agent("install", str(factory.bundle("1.0.0")), "--store", UNWRITABLE)
    _one_error_line(res, UNWRITABLE, "model store")


def test_keys_new_refuses_an_unwritable_path() -> None:
    res = runner.invoke(edge_app, ["keys", "new", "--out", UNWRITABLE])
    _one_error_line(res, UNWRITABLE, "private key")


def test_demo_refuses_an_unwritable_folder() -> None:
    res = runner.invoke(edge_app, ["demo", "--out", UNWRITABLE])
    _one_error_line(res, UNWRITABLE, "demo folder")


@pytest.mark.parametrize("command", [["fleet", "status"], ["fleet", "rollouts"],
                                     ["fleet", "history", "pi-1"], ["fleet", "watch", "--count", "1"],
                                     ["fleet", "ui", "--http", "127.0.0.1:0"], ["fleet", "retire", "pi-1"]])
def test_fleet_reads_never_create_a_database(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "nope.db"
    res = runner.invoke(edge_app, [*command, "--db", str(db)])
    _one_error_line(res, str(db), "no fleet database")
    assert list(tmp_path.iterdir()) == []


def test_agent_status_never_creates_a_store(tmp_path: Path) -> None:
    store = tmp_path / "nostore"
    res = agent("status", "--store", str(store))
    _one_error_line(res, str(store), "no model store")
    assert not store.exists()


def test_an_unreadable_input_is_one_line(tmp_path: Path) -> None:
    res = runner.invoke(edge_app, ["verify", str(tmp_path), "--key", str(tmp_path)])
    _one_error_line(res, str(tmp_path))


def test_broker_on_a_busy_port_is_one_line() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = runner.invoke(edge_app, ["broker", "--port", str(port)])
    _one_error_line(res, f"127.0.0.1 --port {port}", "cannot listen")


def test_alerts_to_a_dead_broker_fail_before_anything_is_stored(tmp_path: Path) -> None:
    from edge_sdk.fleet.store import open_store

    db = tmp_path / "fleet.db"
    open_store(str(db)).close()
    res = runner.invoke(edge_app, ["fleet", "alerts", "--db", str(db), "--broker", "mqtt://127.0.0.1:1"])
    _one_error_line(res, "mqtt://127.0.0.1:1")
    store = open_store(str(db))
    try:
        assert store.alerts() == []
    finally:
        store.close()
