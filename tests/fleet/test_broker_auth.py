"""The password file and ACL generator: formats, atomic rewrites, one-line errors.
(That Mosquitto accepts what it writes is tests/fleet/test_production_broker.py's job.)"""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from typer.testing import CliRunner

from edge_sdk.cli import app
from edge_sdk.fleet.broker_auth import (
    Role,
    broker_group,
    hash_password,
    parse_passwd,
    render_acl,
    role_rules,
)
from edge_sdk.fleet.net import free_port
from tests.support.mosquitto import find_binary, wait_listening

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_shipped_acl_example_is_what_the_generator_writes() -> None:
    blocks = {"collector": role_rules(Role.COLLECTOR), "deployer": role_rules(Role.DEPLOYER)}
    assert (REPO / "tools" / "mosquitto" / "acl.example").read_text() == render_acl(blocks)


def test_hash_is_mosquittos_pbkdf2_sha512_format() -> None:
    salt = b"0123456789ab"
    kind, iterations, b64salt, b64hash = hash_password("s3cret", salt=salt).split("$")[1:]
    assert (kind, int(iterations), base64.b64decode(b64salt)) == ("7", 101, salt)
    assert base64.b64decode(b64hash) == hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, 101)
    assert hash_password("s3cret") != hash_password("s3cret")  # a fresh salt each time


def test_add_device_and_user_update_both_files_in_place(tmp_path: Path) -> None:
    files = ["--passwd-file", str(tmp_path / "p"), "--acl-file", str(tmp_path / "a")]
    first = runner.invoke(app, ["fleet", "add-device", "pi-01", "--fleet", "lab", *files])
    assert first.exit_code == 0, first.output
    os.chmod(tmp_path / "p", 0o600)  # an operator's choice survives the next rewrite
    old = parse_passwd((tmp_path / "p").read_text())["lab/pi-01"]
    for args in (["add-user", "ops", "--role", "deployer", "--fleet", "lab"],
                 ["add-device", "pi-01", "--fleet", "lab"]):  # fmt: skip
        result = runner.invoke(app, ["fleet", *args, *files])
        assert result.exit_code == 0, result.output
    entries = parse_passwd((tmp_path / "p").read_text())
    assert list(entries) == ["lab/pi-01", "ops"] and entries["lab/pi-01"] != old  # replaced
    assert stat.S_IMODE((tmp_path / "p").stat().st_mode) == 0o600
    acl = (tmp_path / "a").read_text()
    assert "user ops\ntopic write edge/v1/lab/+/deploy\ntopic read edge/v1/lab/+/deploy/status\n" in acl
    assert acl.count("pattern write edge/v1/%u/telemetry") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "p"]  # no temporary left


def test_bad_input_is_one_error_line_and_no_file(tmp_path: Path) -> None:
    files = ["--passwd-file", str(tmp_path / "p"), "--acl-file", str(tmp_path / "a")]
    for args, expected in (
        (["add-device", "pi/01", "--fleet", "lab"], "error: device id: expected 1-64 characters"),
        (["add-device", "pi-01", "--fleet", "la+b"], "error: fleet: expected 1-64 characters"),
        (["add-user", "c", "--role", "admin"], "error: --role: expected collector or deployer"),
        (["add-user", "lab/c", "--role", "collector"], "error: user name: expected a role user"),
        (["add-device", "pi-01", "--fleet", "lab", "--password-from", str(tmp_path / "none")],
         "error: --password-from"),
    ):  # fmt: skip
        result = runner.invoke(app, ["fleet", *args, *files])
        assert result.exit_code == 2, result.output
        assert result.output.startswith(expected) and result.output.count("\n") == 1, result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0 or broker_group() is None,
                    reason="needs root and the mosquitto group (Debian's package)")  # fmt: skip
def test_mosquitto_started_as_root_reads_the_new_password_file() -> None:
    """As the Debian service runs it: started as root, Mosquitto drops to user mosquitto
    before it opens the password file, so a root-only file would stop it at start."""
    root = Path(tempfile.mkdtemp(prefix="edge-passwd-"))  # not under pytest's 0700 tmp dirs
    os.chmod(root, 0o755)
    proc = None
    try:
        files = ["--passwd-file", str(root / "edge.passwd"), "--acl-file", str(root / "edge.acl")]
        out = runner.invoke(app, ["fleet", "add-device", "pi-01", "--fleet", "lab", *files]).output
        password = re.search(r"^password: (\S+)$", out, re.M).group(1)  # type: ignore[union-attr]
        st = (root / "edge.passwd").stat()
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, broker_group())
        port = free_port()
        (root / "m.conf").write_text(  # no "user" line: the default, user mosquitto
            f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {root}/edge.passwd\n"
            f"acl_file {root}/edge.acl\nlog_dest stderr\n"
        )
        with (root / "m.log").open("wb") as log:
            proc = subprocess.Popen([find_binary(), "-c", str(root / "m.conf")], stdout=log, stderr=log)
        wait_listening(proc, port, 10, root)
        acks: queue.Queue[object] = queue.Queue()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pi")
        c.username_pw_set("lab/pi-01", password)
        c.on_connect = lambda c_, u, f, rc, p: acks.put(rc)
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert acks.get(timeout=10) == 0
        c.loop_stop()
        c.disconnect()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(root)
