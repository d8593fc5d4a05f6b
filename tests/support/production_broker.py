"""Mosquitto started with the shipped ``tools/mosquitto/production.conf``.

Mosquitto configs take no variables, so the test copy differs from the shipped file by one
documented, narrow rewrite (:func:`rewrite`): the ``/etc/mosquitto/`` prefix of every path
becomes a temporary folder and the port of every ``listener`` line a free port. The
snippet is included, as on Debian and Raspberry Pi OS, from a main file that mirrors the
distribution's stock ``mosquitto.conf`` (pid file, persistence, log, ``include_dir``).

Reusable: ``from tests.support.production_broker import production_broker`` makes the
fixture available to a test module; add users (``edge fleet add-device``/``add-user`` with
:meth:`ProductionBroker.edge_args`, or :meth:`~ProductionBroker.add_device` and
:meth:`~ProductionBroker.add_role_user`) before :meth:`ProductionBroker.start`. TLS
clients trust ``broker.pki.ca``; ``broker.pki.issue(name, cn)`` makes client certificates.
"""

from __future__ import annotations

import getpass
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_sdk.fleet.broker_auth import (
    BrokerFiles,
    Role,
    add_user,
    device_user,
    new_password,
    role_rules,
)
from edge_sdk.fleet.net import free_port
from tests.support.mosquitto import find_binary, wait_listening
from tests.support.pki import Pki

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "tools" / "mosquitto" / "production.conf"
ETC = "/etc/mosquitto/"
LISTENER = re.compile(r"^listener (\d+)\b", re.M)

# TLS + password, TLS + client certificate, loopback + password (the shipped ports)
TLS_PASSWORD, TLS_CERTIFICATE, LOOPBACK = 8883, 8884, 1883


def rewrite(text: str, etc: Path, ports: dict[int, int]) -> str:
    """The shipped config with ``/etc/mosquitto/`` → ``etc`` and each listener's port mapped."""
    out = text.replace(ETC, f"{etc}/")
    out = LISTENER.sub(lambda m: f"listener {ports[int(m.group(1))]}", out)
    leftover = [line for line in out.splitlines() if re.search(r"\s/(etc|var|run)/", line)
                and not line.lstrip().startswith("#")]  # fmt: skip
    assert not leftover, f"paths the rewrite does not cover: {leftover}"
    return out


def stock_main(root: Path, include_dir: Path) -> str:
    """Debian's stock /etc/mosquitto/mosquitto.conf with paths under ``root``; ``user``
    keeps a broker started as root from switching to "mosquitto", who cannot read them."""
    return (
        f"user {getpass.getuser()}\n"
        f"pid_file {root}/mosquitto.pid\n"
        "persistence true\n"
        f"persistence_location {root}/data/\n"
        "log_dest stderr\n"
        "log_type error\nlog_type warning\nlog_type notice\n"
        f"include_dir {include_dir}\n"
    )


class ProductionBroker:
    """The shipped production config under ``root``, on free ports."""

    def __init__(self, root: Path):
        self.root = root
        self.etc = root / "etc"
        self.pki = Pki(self.etc / "certs")  # ca.crt, server.crt, server.key: the shipped names
        self.passwd, self.acl = self.etc / "edge.passwd", self.etc / "edge.acl"
        shipped = SHIPPED.read_text()
        self.ports = {int(p): free_port() for p in LISTENER.findall(shipped)}
        conf_d = root / "conf.d"
        conf_d.mkdir()
        (conf_d / "edge.conf").write_text(rewrite(shipped, self.etc, self.ports))
        (root / "data").mkdir()
        self.config = root / "mosquitto.conf"
        self.config.write_text(stock_main(root, conf_d))
        self.log = root / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, shipped_port: int) -> str:
        scheme = "mqtt" if shipped_port == LOOPBACK else "mqtts"
        return f"{scheme}://127.0.0.1:{self.ports[shipped_port]}"

    def edge_args(self) -> list[str]:
        """``--passwd-file``/``--acl-file`` for ``edge fleet add-device``/``add-user``."""
        return ["--passwd-file", str(self.passwd), "--acl-file", str(self.acl)]

    def add_device(self, device: str, fleet: str) -> tuple[str, str]:
        """(user name, a new password) of a device, as ``edge fleet add-device`` writes it;
        call :meth:`reload` when the broker already runs."""
        user, password = device_user(fleet, device), new_password()
        add_user(BrokerFiles(self.passwd, self.acl), user, password, None)
        return user, password

    def add_role_user(self, name: str, role: Role, fleet: str = "+") -> str:
        """A collector or deployer user's new password, as ``edge fleet add-user`` writes it."""
        password = new_password()
        add_user(BrokerFiles(self.passwd, self.acl), name, password, role_rules(role, fleet))
        return password

    def start(self, timeout: float = 10.0) -> ProductionBroker:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([find_binary(), "-c", str(self.config)], stdout=log, stderr=log)
        for port in self.ports.values():
            wait_listening(self.proc, port, timeout, self.root)
        return self

    def reload(self) -> None:
        """SIGHUP: Mosquitto rereads the password file and the ACL."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def production_broker(tmp_path: Path) -> Iterator[ProductionBroker]:
    """A :class:`ProductionBroker` (not started: add users first); stopped at teardown."""
    b = ProductionBroker(tmp_path / "mosquitto")
    yield b
    b.stop()
