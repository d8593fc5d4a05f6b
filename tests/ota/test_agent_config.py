"""The agent's one configuration (file < environment < flags) and the broker options that
every broker-facing command shares."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from device_agent.config import KEYS, env_name, from_env, load_config, merge, read_file, read_password
from device_agent.errors import EdgeError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "tools" / "agent.toml"
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}, "PYTHONPATH": str(REPO)}


def test_a_flag_overrides_the_environment_which_overrides_the_file(tmp_path: Path) -> None:
    f = tmp_path / "agent.toml"
    f.write_text('[agent]\ndevice_id = "from-file"\nfleet = "file-fleet"\n'
                 '[serve]\nbatch = 4\ncache = "exact"\n[broker]\nurl = "mqtt://file:1883"\nkeepalive = 9\n'
                 '[telemetry]\ninterval = 2.5\n[update]\nisolate = true\n')  # fmt: skip
    env = {"EDGE_AGENT_FLEET": "env-fleet", "EDGE_AGENT_SERVE_BATCH": "8", "EDGE_AGENT_BROKER_URL": "mqtts://env:8883",
           "EDGE_AGENT_UPDATE_ISOLATE": "false", "EDGE_MQTT_PASSWORD": "s3cret"}  # fmt: skip
    c = load_config(f, env, {"agent.fleet": "flag-fleet", "serve.batch": None, "broker.username": "u"})
    assert c.device_id == "from-file" and c.fleet == "flag-fleet"
    assert c.serve.batch == 8 and c.serve.cache == "exact" and c.telemetry.interval == 2.5
    assert c.update.isolate is False
    assert c.broker is not None and c.broker.url == "mqtts://env:8883" and c.broker.tls
    assert c.broker.keepalive == 9 and c.broker.username == "u" and c.broker.password == "s3cret"
    assert c.broker.client_id == "from-file"  # one client id: the device id
    assert "s3cret" not in repr(c)
    # EDGE_AGENT_CONFIG names the file when --config is absent
    assert load_config(None, {"EDGE_AGENT_CONFIG": str(f)}, {}).fleet == "file-fleet"


def test_the_shipped_example_documents_every_key_and_parses() -> None:
    text = SHIPPED.read_text()
    for section, key in KEYS:
        assert f"[{section}]" in text, section
        assert re.search(rf"^#?\s*{key} =", text, re.M), f"tools/agent.toml does not document {section}.{key}"
    values = read_file(SHIPPED)
    assert values[("broker", "url")].startswith("mqtts://") and values[("serve", "quiet")] is True
    # every key can also be set from the environment, by its documented name
    assert env_name("broker", "password_file") == "EDGE_AGENT_BROKER_PASSWORD_FILE"
    assert env_name("agent", "device_id") == "EDGE_AGENT_DEVICE_ID"


def test_the_installer_writes_a_config_the_agent_reads(tmp_path: Path) -> None:
    script = (REPO / "tools" / "install_agent.sh").read_text()
    body = script.split("<<TOML\n", 1)[1].split("\nTOML\n", 1)[0]
    text = (body.replace("$STORE", "/var/lib/edge-agent").replace("$ETC", "/etc/edge-agent")
            .replace("${SOURCE:-file:/var/lib/edge-agent/input.npz?rate=10&loop=1}", "sim:imu"))  # fmt: skip
    (tmp_path / "agent.toml").write_text(text)
    c = merge(read_file(tmp_path / "agent.toml"))
    assert c.store == Path("/var/lib/edge-agent") and c.serve.source == "sim:imu" and c.broker is None


@pytest.mark.parametrize(("toml", "env", "message"), [
    ('[serve]\nbatchh = 2\n', {}, "[serve] batchh: unknown key; expected one of source, rate"),
    ('[serve]\nbatch = "two"\n', {}, "[serve] batch: expected an integer, found 'two'"),
    ('[brokers]\nurl = "x"\n', {}, "unknown section [brokers]"),
    ('[agent\n', {}, "not valid TOML"),
    ('', {"EDGE_AGENT_SERVE_BACH": "2"}, "EDGE_AGENT_SERVE_BACH is not a setting"),
    ('', {"EDGE_AGENT_SERVE_BATCH": "x"}, "EDGE_AGENT_SERVE_BATCH: expected int, found 'x'"),
    ('', {"EDGE_AGENT_ARGS": "--source sim:imu"}, "EDGE_AGENT_ARGS is no longer read"),
    ('[broker]\nurl = "http://x"\n', {}, "expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"),
    ('[broker]\nurl = "mqtt://x"\nusername = "u"\npassword_file = "/nonexistent/pw"\n', {},
     "--password-file /nonexistent/pw: cannot read it"),
])  # fmt: skip
def test_bad_settings_are_one_error_line_naming_the_key(tmp_path: Path, toml: str, env: dict[str, str],
                                                        message: str) -> None:
    f = tmp_path / "agent.toml"
    f.write_text(toml)
    out = subprocess.run([sys.executable, "-m", "device_agent", "daemon", "--config", str(f)],
                         capture_output=True, text=True, env={**ENV, **env}, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert message in out.stderr, out.stderr


def test_password_from_a_file_or_the_environment(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("first-line\nignored\n")
    assert read_password(pw, {"EDGE_MQTT_PASSWORD": "env"}) == "first-line"
    assert read_password(None, {"EDGE_MQTT_PASSWORD": "env"}) == "env"
    assert read_password(None, {}) is None
    pw.write_text("\n")
    with pytest.raises(EdgeError, match="expected the password on the first line"):
        read_password(pw, {})
    assert from_env({"EDGE_AGENT_PAUSE_AT": "x", "EDGE_MQTT_PASSWORD": "y"}) == {}


def _edge_agent_help(cmd: str) -> str:
    from tests.support.agent_cli import agent_help

    return agent_help(cmd, columns=300)


def _edge_help(*cmd: str) -> str:
    from edge_sdk.cli import app

    return CliRunner().invoke(app, [*cmd, "--help"], env={"COLUMNS": "300"}).output


@pytest.mark.parametrize("which", ["run", "daemon", "listen", "deploy", "collector", "fleet alerts"])
def test_every_broker_command_takes_the_same_options(which: str) -> None:
    text = _edge_agent_help(which) if which in ("run", "daemon", "listen") else _edge_help(*which.split())
    text = re.sub(r"\s+", " ", text)
    for words in ("mqtt://HOST[:PORT]", "mqtts://HOST[:PORT]", "--username", "--password-file",
                  "EDGE_MQTT_PASSWORD", "--password ", "--tls-ca", "--tls-cert", "--tls-key",
                  "--keepalive", "--client-id"):  # fmt: skip
        assert words in text, f"{which} --help lacks {words!r}"
