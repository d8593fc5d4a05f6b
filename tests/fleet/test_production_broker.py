"""The shipped production broker: Mosquitto with tools/mosquitto/production.conf (paths and
ports rewritten, nothing else), users and ACL written by ``edge fleet add-device``/``add-user``,
real paho clients over TLS with passwords or client certificates."""

from __future__ import annotations

import queue
import re
import shlex
import ssl
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from typer.testing import CliRunner

from device_agent.protocol import topics
from device_agent.protocol.messages import State, Status, TelemetryWindow
from edge_sdk.cli import app
from tests.fleet.conftest import REPO, wait_for
from tests.support.production_broker import (  # noqa: F401  (the fixture)
    LOOPBACK,
    TLS_CERTIFICATE,
    TLS_PASSWORD,
    ProductionBroker,
    production_broker,
)

runner = CliRunner()


class Client:
    """One paho client that records what it receives and how its connection went."""

    def __init__(self, broker: ProductionBroker, port: int, *, user: str | None = None,
                 password: str | None = None, cert: tuple[Path, Path] | None = None,
                 client_id: str | None = None):  # fmt: skip
        self.inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack: queue.Queue[Any] = queue.Queue()
        self.subacks: queue.Queue[list[Any]] = queue.Queue()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"test-{user}",
                        protocol=mqtt.MQTTv311)  # fmt: skip
        if port != LOOPBACK:
            c.tls_set(ca_certs=str(broker.pki.ca), certfile=cert and str(cert[0]),
                      keyfile=cert and str(cert[1]))  # fmt: skip
        if user is not None:
            c.username_pw_set(user, password)
        c.on_connect = lambda c_, u, f, rc, p: self.connack.put(rc)
        c.on_message = lambda c_, u, msg: self.inbox.put(msg)
        c.on_subscribe = lambda c_, u, mid, codes, p: self.subacks.put(codes)
        self.settled = threading.Event()  # a PUBACK or a lost connection
        self.dropped = threading.Event()
        c.on_publish = lambda c_, u, mid, rc, p: self.settled.set()
        c.on_disconnect = lambda c_, u, f, rc, p: (self.settled.set(), self.dropped.set())
        self.c, self.port = c, broker.ports[port]

    def connect(self, timeout: float = 10) -> Any:
        """The CONNACK's reason code, or the exception the TLS handshake raised."""
        try:
            self.c.connect("127.0.0.1", self.port, keepalive=10)
        except (OSError, ssl.SSLError) as e:
            return e
        self.c.loop_start()
        try:
            return self.connack.get(timeout=timeout)
        except queue.Empty:
            return "no CONNACK"

    def subscribe(self, topic: str) -> list[Any]:
        self.c.subscribe(topic, qos=1)
        return self.subacks.get(timeout=10)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=10)  # the broker acknowledges even what the ACL drops

    def attempt(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """A publish the ACL should refuse: Mosquitto 2.0.11 acknowledges it, drops the
        message and then (MQTT 3.1.1) the connection; return once either is seen."""
        self.settled.clear()
        self.c.publish(topic, payload, qos=1, retain=retain)
        assert self.settled.wait(10), f"no PUBACK and no disconnect for {topic}"
        self.close()

    def until(self, topic: str, timeout: float = 10) -> list[tuple[str, bytes]]:
        """Everything received up to and including the first message on ``topic``."""
        seen = []
        while True:
            msg = self.inbox.get(timeout=timeout)
            seen.append((msg.topic, msg.payload))
            if msg.topic == topic:
                return seen

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def edge(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def password_of(output: str) -> str:
    found = re.search(r"^password: (\S+)$", output, re.M)
    assert found, output
    return found.group(1)


def window(seq: int) -> bytes:
    return TelemetryWindow(seq=seq, boot_id="b", start=1.0, end=2.0, inferences=1).to_payload()


def state(boot: str) -> bytes:
    return State(status=Status.ONLINE, boot_id=boot, ts=1.0).to_payload()


def readme_commands() -> list[list[str]]:
    """The ``edge fleet`` lines of the README's "Production broker" code block."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Production broker"):]
    block = section[section.index("```bash\n") + 8 : section.index("```\n", section.index("```bash"))]
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    assert lines and all(line[:2] == ["edge", "fleet"] for line in lines), block
    return [line[1:] for line in lines]


@pytest.fixture
def fleet_broker(
    production_broker: ProductionBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> tuple[ProductionBroker, dict[str, str]]:
    """The production broker with the README's users (two devices in fleet lab, a
    collector, a deployer for lab, added by its very commands); started."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deployer.pw").write_text("chosen-deployer-secret\n")
    pw = {"deployer": "chosen-deployer-secret"}
    for args in readme_commands():
        out = edge(*args, *production_broker.edge_args())
        user = re.search(r"^user: (\S+)$", out, re.M)
        assert user, out
        if "--password-from" in args:
            assert "password:" not in out  # a password the operator chose is not echoed
        else:
            pw[user.group(1)] = password_of(out)
    assert set(pw) == {"collector", "deployer", "lab/pi-01", "lab/pi-02"}
    return production_broker.start(), pw


def test_production_broker_confines_devices_to_their_own_topics(fleet_broker) -> None:  # type: ignore[no-untyped-def]
    b, pw = fleet_broker
    collector = Client(b, TLS_PASSWORD, user="collector", password=pw["collector"])
    deployer = Client(b, LOOPBACK, user="deployer", password=pw["deployer"])
    for c in (collector, deployer):
        assert c.connect() == 0  # over TLS with a password (the deployer on loopback)
    assert collector.subscribe("$share/collectors/edge/v1/+/+/#") == [1]  # as edge collector does
    assert deployer.subscribe("edge/v1/lab/+/deploy/status") == [1]
    # edge optimize --latency-on: the deployer's credentials read the answers and states.
    assert deployer.subscribe("edge/v1/lab/+/bench/result") == [1]
    assert deployer.subscribe("edge/v1/lab/+/state") == [1]

    # Spoofing another id, another fleet, a retained state under another id, sending a
    # deployment (even to itself): each from a fresh connection as lab/pi-01, which the
    # broker acknowledges and drops. The device's own messages, sent after, arrive alone.
    for topic, payload, retain in (
        (topics.telemetry("lab", "pi-02"), window(1), False),
        (topics.telemetry("other", "pi-01"), window(2), False),
        (topics.state("lab", "pi-02"), state("spoof"), True),
        (topics.deploy("lab", "pi-01"), b"self-made", False),
    ):
        spoofer = Client(b, TLS_PASSWORD, user="lab/pi-01", password=pw["lab/pi-01"])
        assert spoofer.connect() == 0
        spoofer.attempt(topic, payload, retain=retain)
    device = Client(b, TLS_PASSWORD, user="lab/pi-01", password=pw["lab/pi-01"])
    assert device.connect() == 0
    assert device.subscribe(topics.deploy("lab", "pi-01")) == [1]
    # Mosquitto 2.0 grants any subscription and checks "read" per delivered message: the
    # deployment for pi-02 below must not reach pi-01 through this one.
    device.subscribe(topics.deploy("lab", "pi-02"))
    device.publish(topics.state("lab", "pi-01"), state("own"), retain=True)
    device.publish(topics.telemetry("lab", "pi-01"), window(3))
    got = collector.until(topics.telemetry("lab", "pi-01"))
    assert got == [(topics.state("lab", "pi-01"), state("own")),
                   (topics.telemetry("lab", "pi-01"), window(3))]  # fmt: skip

    # OTA: the deployer's message reaches the device; the device's status reaches the deployer.
    deployer.publish(topics.deploy("lab", "pi-02"), b"for pi-02")
    deployer.publish(topics.deploy("lab", "pi-01"), b"offer")
    assert device.until(topics.deploy("lab", "pi-01")) == [(topics.deploy("lab", "pi-01"), b"offer")]
    device.publish(topics.deploy_status("lab", "pi-01"), b"active")
    assert deployer.until(topics.deploy_status("lab", "pi-01"))[-1][1] == b"active"
    collector.publish(topics.alerts("lab"), b"alert")  # the collector's own alerts topic
    assert collector.until(topics.alerts("lab"))[-1] == (topics.alerts("lab"), b"alert")
    assert device.inbox.empty()

    # Nothing of the spoofed retained state was kept: a new subscriber gets pi-01's alone.
    collector.close()
    again = Client(b, LOOPBACK, user="collector", password=pw["collector"])
    assert again.connect() == 0
    again.subscribe("edge/v1/lab/+/state")
    device.publish(topics.state("lab", "pi-01"), state("marker"))  # not retained: after them
    assert again.until(topics.state("lab", "pi-01")) == [(topics.state("lab", "pi-01"), state("own"))]
    for c in (again, device, deployer):
        c.close()


def test_production_broker_refuses_bad_credentials(fleet_broker) -> None:  # type: ignore[no-untyped-def]
    b, pw = fleet_broker
    wrong = Client(b, TLS_PASSWORD, user="lab/pi-01", password=pw["lab/pi-02"]).connect()
    assert wrong != 0 and str(wrong) in ("Not authorized", "Bad user name or password")
    anonymous = Client(b, LOOPBACK).connect()
    assert anonymous != 0 and str(anonymous) == "Not authorized"
    # The certificate listener: no client certificate, no TLS session.
    nocert = Client(b, TLS_CERTIFICATE, user="lab/pi-01", password=pw["lab/pi-01"]).connect(timeout=3)
    assert isinstance(nocert, (OSError, ssl.SSLError)) or nocert in ("no CONNACK",), nocert
    assert b.proc is not None and b.proc.poll() is None
    # A device added to a running broker gets in once Mosquitto reloads (SIGHUP), not before.
    user, password = b.add_device("pi-04", "lab")
    assert str(connect_once(b, user, password)) == "Not authorized"
    b.reload()
    wait_for(lambda: connect_once(b, user, password) == 0, 10, "pi-04 admitted after a reload")


def connect_once(b: ProductionBroker, user: str, password: str) -> Any:
    c = Client(b, LOOPBACK, user=user, password=password)
    try:
        return c.connect()
    finally:
        c.close()


def test_production_broker_client_certificate_is_the_identity(fleet_broker) -> None:  # type: ignore[no-untyped-def]
    b, pw = fleet_broker
    collector = Client(b, LOOPBACK, user="collector", password=pw["collector"])
    assert collector.connect() == 0
    collector.subscribe("edge/v1/#")
    # A device with a certificate whose Common Name is lab/pi-03: no password at all.
    cert = b.pki.issue("pi-03", "lab/pi-03")
    device = Client(b, TLS_CERTIFICATE, user="whoever", cert=cert)
    assert device.connect() == 0
    device.attempt(topics.telemetry("lab", "pi-01"), window(1))  # the certificate says pi-03
    device = Client(b, TLS_CERTIFICATE, user="whoever", cert=cert)
    assert device.connect() == 0
    device.publish(topics.telemetry("lab", "pi-03"), window(2))
    assert collector.until(topics.telemetry("lab", "pi-03")) == [
        (topics.telemetry("lab", "pi-03"), window(2))
    ]
    for c in (collector, device):
        c.close()


def test_production_broker_client_id_cannot_take_over_another_device(fleet_broker) -> None:  # type: ignore[no-untyped-def]
    """use_username_as_clientid: pi-02 claiming pi-01's client id gets its own user name as
    client id instead, so pi-01's session is not taken over (Mosquitto would drop it)."""
    b, pw = fleet_broker
    first = Client(b, TLS_PASSWORD, user="lab/pi-01", password=pw["lab/pi-01"], client_id="lab/pi-01")
    assert first.connect() == 0
    other = Client(b, TLS_PASSWORD, user="lab/pi-02", password=pw["lab/pi-02"], client_id="lab/pi-01")
    assert other.connect() == 0
    assert not first.dropped.wait(1.0)  # a takeover closes the old connection at once
    same = Client(b, TLS_PASSWORD, user="lab/pi-01", password=pw["lab/pi-01"], client_id="anything")
    assert same.connect() == 0  # the same user, any client id: the same session, taken over
    assert first.dropped.wait(10)
    for c in (first, other, same):
        c.close()
