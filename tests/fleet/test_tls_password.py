"""Telemetry and OTA over ``mqtts://`` with a password: a real Mosquitto with a TLS listener
and a password file (``mosquitto_passwd -b``), a real ``edge-agent daemon`` and a real
``edge deploy``; a wrong password is refused with one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device_agent.mqtt import BrokerOptions, MqttClient
from device_agent.protocol import topics
from edge_sdk.fleet.net import free_port
from tests.fleet.conftest import ENV, wait_for
from tests.fleet.test_tls import pki  # noqa: F401 - the fixture
from tests.ota.conftest import Factory, factory  # noqa: F401 - the fixture
from tests.ota.test_flow import install

ENV_CLEAN = {k: v for k, v in ENV.items() if not k.startswith("EDGE_")}


@pytest.fixture
def tls_broker(broker, pki, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]  # noqa: F811
    """Mosquitto: a TLS listener, no anonymous clients, users pi-tls and deployer."""
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "pi-tls", "device-secret"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "deployer", "deploy-secret"], check=True)
    port = free_port()
    broker(f"allow_anonymous false\npassword_file {passwd}\n"
           f"listener {port} 127.0.0.1\ncafile {pki['ca.crt']}\ncertfile {pki['server.crt']}\n"
           f"keyfile {pki['server.key']}\n")  # fmt: skip
    return f"mqtts://127.0.0.1:{port}"


def _secret(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text + "\n")
    p.chmod(0o600)
    return p


def test_daemon_telemetry_and_ota_over_tls_with_a_password(tls_broker: str, pki, factory: Factory,  # noqa: F811
                                                         procs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "store"
    (store / "keys").mkdir(parents=True)
    (store / "keys" / "fleet.pub").write_bytes(factory.key.public.read_bytes())
    assert install(store, factory.bundle("1.0.0")).status.value == "active"
    np_data = tmp_path / "x.npz"
    import numpy as np

    np.savez(np_data, x=factory.x)
    ca = str(pki["ca.crt"])

    # Anonymous and wrong-password clients are refused: the broker really checks.
    anon = MqttClient(BrokerOptions(url=tls_broker, client_id="anon", ca_file=ca), log_outages=False).start()
    with pytest.raises(Exception, match="refused the connection"):
        anon.require_connected(10)

    # The device: state and telemetry flow over TLS with its password (read from a file).
    seen: list[str] = []
    watcher = MqttClient(BrokerOptions(url=tls_broker, client_id="watch", username="deployer",
                                       password="deploy-secret", ca_file=ca))  # fmt: skip
    watcher.subscribe(topics.fleet_filter("lab"), qos=1, handler=lambda m: seen.append(m.topic))
    watcher.start()
    pw = _secret(tmp_path, "pi.password", "device-secret")
    agent = procs.spawn(["-m", "device_agent", "-v", "daemon", "--store", str(store), "--source",
                         f"file:{np_data}?rate=100&loop=1", "-q", "--broker", tls_broker, "--device-id", "pi-tls",
                         "--fleet", "lab", "--username", "pi-tls", "--password-file", str(pw), "--tls-ca", ca,
                         "--telemetry-interval", "0.5", "--outbox", str(tmp_path / "ob.db")], "daemon")  # fmt: skip
    log = procs.root / "daemon.log"
    try:
        wait_for(lambda: "edge/v1/lab/pi-tls/telemetry" in seen, 60, "telemetry over TLS")
        assert "edge/v1/lab/pi-tls/state" in seen
        assert f"connected to {tls_broker} as pi-tls" in log.read_text()

        # The host: edge deploy with the same options, its password in the environment.
        out = subprocess.run(
            [sys.executable, "-m", "edge_sdk", "deploy", str(factory.bundle("1.1.0", seed=1)), "--device", "pi-tls",
             "--fleet", "lab", "--broker", tls_broker, "--username", "deployer", "--tls-ca", ca,
             "--db", str(tmp_path / "r.db"), "--timeout", "90"],
            capture_output=True, text=True, env={**ENV_CLEAN, "EDGE_MQTT_PASSWORD": "deploy-secret"}, timeout=150,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        statuses = [json.loads(line).get("status") for line in out.stdout.splitlines()]
        assert "active" in statuses and json.loads(out.stdout.splitlines()[-1])["outcome"] == "completed"
        wait_for(lambda: "edge/v1/lab/pi-tls/deploy/status" in seen, 10, "deploy status seen by the watcher")
    finally:
        watcher.stop()
        procs.stop(agent)
    text = log.read_text()
    assert "device-secret" not in text and "retrying" not in text


def test_a_wrong_password_is_refused_with_one_clear_line(tls_broker: str, pki, factory: Factory,  # noqa: F811
                                                         tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ca = str(pki["ca.crt"])
    out = subprocess.run(
        [sys.executable, "-m", "edge_sdk", "deploy", str(factory.bundle("1.1.0", seed=1)), "--device", "pi-tls",
         "--fleet", "lab", "--broker", tls_broker, "--username", "deployer", "--password", "wrong",
         "--tls-ca", ca, "--db", str(tmp_path / "r.db")],
        capture_output=True, text=True, env=ENV_CLEAN, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    # the alias warns that the value shows in the process list, then one error line
    assert lines[0].startswith("warning: --password shows the password in the process list"), out.stderr
    assert len(lines) == 2 and lines[1].startswith(f"error: deploy: broker {tls_broker}: the broker refused"), lines
    assert "check the user name, password and client certificate" in lines[1]

    # The agent keeps trying (the password file may be fixed) and says so once, at WARNING.
    pw = _secret(tmp_path, "bad.password", "wrong")
    agent = subprocess.Popen(
        [sys.executable, "-m", "device_agent", "listen", "--store", str(tmp_path / "s"), "--broker", tls_broker,
         "--device-id", "pi-tls", "--username", "pi-tls", "--password-file", str(pw), "--tls-ca", ca],
        env=ENV_CLEAN, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(4)  # a few retries
    finally:
        agent.terminate()
        _, err = agent.communicate(timeout=20)
    refused = [line for line in err.splitlines() if "refused the connection" in line]
    assert len(refused) == 1 and refused[0].startswith("warning:") and tls_broker in refused[0], err
    assert "wrong" not in err


def test_password_file_and_env_never_reach_the_process_list(tmp_path: Path) -> None:
    """The only way to put a password on the command line is the warned-about alias."""
    from device_agent.cli_options import PASSWORD_WARNING

    out = subprocess.run([sys.executable, "-m", "device_agent", "listen", "--store", str(tmp_path / "s"),
                          "--broker", "mqtt://127.0.0.1:1", "--password", "x", "--device-id", "d"],
                         capture_output=True, text=True, env=ENV_CLEAN, timeout=60)  # fmt: skip
    assert out.returncode == 2 and PASSWORD_WARNING in out.stderr
    assert "--username: a password was given but no user name" in out.stderr


def test_mqtt_source_and_sink_share_the_agents_tls_connection(tls_broker: str, pki, factory: Factory,  # noqa: F811
                                                              tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``--source mqtt:TOPIC`` and ``--sink mqtt`` ride the agent's one connection, with its
    TLS and password: readings in, results out, no credentials of their own."""
    import threading

    ca = str(pki["ca.crt"])
    results: list[dict] = []
    host = MqttClient(BrokerOptions(url=tls_broker, client_id="host", username="deployer",
                                    password="deploy-secret", ca_file=ca))  # fmt: skip
    host.subscribe(topics.results("lab", "pi-tls"), qos=1, handler=lambda m: results.append(json.loads(m.payload)))
    host.start()
    host.require_connected(10)
    pw = _secret(tmp_path, "pi.password", "device-secret")

    def feed() -> None:
        for i in range(40):  # until the agent has subscribed and served three
            if len(results) >= 3:
                return
            host.publish("sensors/pi-tls/in", json.dumps(factory.x[i % len(factory.x)].tolist()).encode(), qos=1)
            time.sleep(0.25)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "device_agent", "run", str(factory.bundle("1.0.0")), "--key",
             str(factory.key.public), "--source", "mqtt:sensors/pi-tls/in?n=3&timeout=20", "--sink", "mqtt",
             "--results-qos", "1", "--broker", tls_broker, "--device-id", "pi-tls", "--fleet", "lab",
             "--username", "pi-tls", "--password-file", str(pw), "--tls-ca", ca, "--outbox", str(tmp_path / "o.db")],
            capture_output=True, text=True, env=ENV_CLEAN, timeout=120,
        )  # fmt: skip
        feeder.join(20)
        wait_for(lambda: len(results) >= 3, 10, "three results on the results topic")
    finally:
        host.stop()
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["summary"]["count"] == 3
    assert all(0 <= r["index"] < 10 for r in results[:3])
