"""The agent as systemd runs it (``edge-agent daemon --config`` with the shipped
``tools/agent.toml``) against a real Mosquitto that is down at start and restarted in the
middle of an over-the-air transfer; unreachable brokers are reported, fatal errors exit 1."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path

from device_agent.mqtt import BrokerOptions
from device_agent.protocol.chunks import split
from device_agent.update.agent import PAUSE_ENV
from device_agent.update.store import ModelStore
from device_agent.update.transport import _HostSession, send_bundle
from tests.support.mosquitto import Mosquitto

from .conftest import Factory
from .test_flow import install

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "tools" / "agent.toml"
ENV = {**{k: v for k, v in os.environ.items() if k != PAUSE_ENV and not k.startswith("EDGE_")},
       "PYTHONPATH": str(REPO)}  # fmt: skip


def _agent(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "device_agent", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


def _wait_text(log: Path, text: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = log.read_text() if log.exists() else ""
        if text in got:
            return got
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"agent exited ({proc.returncode}) before printing {text!r}:\n{got}")
        time.sleep(0.1)
    raise AssertionError(f"never saw {text!r} in {log}:\n{log.read_text() if log.exists() else ''}")


def test_daemon_from_shipped_config_survives_broker_down_at_start_and_restart_mid_ota(
    store_dir: Path, factory: Factory, digits_npz: Path, tmp_path: Path
) -> None:
    assert install(store_dir, factory.bundle("1.0.0")).status.value == "active"
    mq = Mosquitto(tmp_path / "mosq")  # port chosen, broker not started yet
    env = {**ENV,
           # The shipped file as is; the environment points it at this machine (what a
           # person would do in /etc/edge-agent/agent.env), overriding the file's values.
           "EDGE_AGENT_STORE": str(store_dir), "EDGE_AGENT_DEVICE_ID": "pi-net", "EDGE_AGENT_FLEET": "lab",
           "EDGE_AGENT_SERVE_SOURCE": f"file:{digits_npz}?rate=200&loop=1",
           "EDGE_AGENT_BROKER_URL": mq.url, "EDGE_AGENT_BROKER_USERNAME": "pi-net",
           "EDGE_AGENT_BROKER_CA_FILE": "", "EDGE_AGENT_BROKER_PASSWORD_FILE": "",
           "EDGE_AGENT_TELEMETRY_OUTBOX": str(tmp_path / "outbox.db"), "EDGE_AGENT_TELEMETRY_INTERVAL": "0.5"}
    log = tmp_path / "agent.log"
    agent = _agent(["daemon", "--config", str(SHIPPED)], env, log)
    try:
        _wait_text(log, "retrying every", 30, agent)
        text = _wait_text(log, "serving 1.0.0-", 30, agent)  # either may be written first
        assert f"broker {mq.url}" in text
        mq.start()
        bundle = factory.bundle("1.1.0", seed=1)
        broker = BrokerOptions(url=mq.url)
        offer, chunks = split(bundle.read_bytes(), rollout="rnet", name="digits", version="1.1.0",
                              chunk_size=512)
        assert len(chunks) > 10
        session = _HostSession(broker, "lab", "pi-net", "rnet")  # waits for the daemon's status
        try:
            _wait_text(log, "connected again", 30, agent)
            first = None
            for _ in range(30):  # offer again until the daemon's subscription is in place
                session.publish(offer.to_payload())
                with contextlib.suppress(queue.Empty):
                    first = session.inbox.get(timeout=2)
                    break
            assert first is not None, log.read_text()
            assert first.status == "downloading" and len(first.missing) == len(chunks)
            for c in chunks[:5]:
                session.publish(c.to_payload())
            transfers = store_dir / "transfers" / "rnet"
            deadline = time.monotonic() + 30
            while len(list(transfers.glob("*.chunk"))) < 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(list(transfers.glob("*.chunk"))) == 5
        finally:
            session.close()
        mq.stop(signal.SIGKILL)  # the broker dies mid-transfer, and comes back on its port
        time.sleep(1.5)
        mq.start()
        seen: list = []
        final = send_bundle(bundle, broker=broker, fleet="lab", device="pi-net", rollout="rnet",
                            chunk_size=512, timeout_s=90, retry_s=2, on_status=seen.append)
        assert final.status == "active", (final, log.read_text())
        resumed = [s for s in seen if s.status == "downloading"]
        # The daemon asks only for what it did not keep (later reports may ask for less).
        assert resumed and tuple(resumed[0].missing) == tuple(range(5, len(chunks))), resumed
        assert all(min(s.missing, default=5) >= 5 for s in resumed), resumed
        assert ModelStore(store_dir).current().manifest.version == "1.1.0"  # type: ignore[union-attr]
        text = log.read_text()
        assert text.count("retrying every") == 2, text  # once per outage: at start, at the kill
        # One connection for telemetry and updates (one client id that an ACL can name).
        import psutil

        links = [c for c in psutil.Process(agent.pid).net_connections(kind="tcp")
                 if c.raddr and c.raddr.port == mq.port and c.status == psutil.CONN_ESTABLISHED]
        assert len(links) == 1, links
    finally:
        agent.send_signal(signal.SIGTERM)
        rc = agent.wait(20)
        mq.stop()
    assert rc == 0, log.read_text()


def test_run_says_when_the_broker_cannot_be_reached(tmp_path: Path, digits_npz: Path,
                                                   store_dir: Path, factory: Factory) -> None:
    assert install(store_dir, factory.bundle("1.0.0")).status.value == "active"
    out = subprocess.run(
        [sys.executable, "-m", "device_agent", "run", "--store", str(store_dir), "--source",
         f"file:{digits_npz}?rate=20", "-q", "--broker", "mqtt://nohost.invalid:1883",
         "--device-id", "pi-x", "--telemetry-interval", "0.5", "--outbox", str(tmp_path / "ob.db")],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    warned = [line for line in out.stderr.splitlines() if "nohost.invalid" in line]
    assert len(warned) == 2, out.stderr  # the outage (once), and the windows kept for later
    assert warned[0].startswith("warning:") and "does not resolve" in warned[0]
    assert "retrying every 1 to 10 s" in warned[0]
    assert "kept in" in warned[1] and str(tmp_path / "ob.db") in warned[1]


def test_a_fatal_update_error_exits_the_daemon_non_zero(store_dir: Path, factory: Factory, digits_npz: Path,
                                                        tmp_path: Path) -> None:
    """The transfers folder is a file (a broken disk, a bad hand edit): the update listener
    cannot keep chunks; the process exits 1 (systemd restarts it) instead of serving on deaf."""
    assert install(store_dir, factory.bundle("1.0.0")).status.value == "active"
    mq = Mosquitto(tmp_path / "mosq").start()
    log = tmp_path / "agent.log"
    agent = _agent(["daemon", "--store", str(store_dir), "--source", f"file:{digits_npz}?rate=100&loop=1",
                    "-q", "--broker", mq.url, "--device-id", "pi-f", "--fleet", "lab"], ENV, log)
    try:
        _wait_text(log, "serving 1.0.0-", 60, agent)
        (store_dir / "transfers").write_text("not a directory")
        offer, _ = split(factory.bundle("1.1.0", seed=1).read_bytes(), rollout="rbad", name="digits",
                         version="1.1.0")
        session = _HostSession(BrokerOptions(url=mq.url), "lab", "pi-f", "rbad")
        try:
            session.publish(offer.to_payload())
            rc = agent.wait(60)
        finally:
            session.close()
    finally:
        if agent.poll() is None:
            agent.kill()
        mq.stop()
    text = log.read_text()
    assert rc == 1, text
    assert text.strip().splitlines()[-1].startswith("error: update listener:"), text


def test_deploy_to_an_unreachable_broker_is_one_error_and_a_failed_rollout(factory: Factory,
                                                                          tmp_path: Path) -> None:
    from edge_sdk.fleet.net import free_port
    from edge_sdk.fleet.store import open_store

    db = tmp_path / "fleet.db"
    for url in (f"mqtt://127.0.0.1:{free_port()}", "mqtt://nohost.invalid:1883"):
        out = subprocess.run(
            [sys.executable, "-m", "edge_sdk", "deploy", str(factory.bundle("1.1.0", seed=1)), "--device", "pi-u",
             "--fleet", "lab", "--broker", url, "--db", str(db)],
            capture_output=True, text=True, env=ENV, timeout=120,
        )  # fmt: skip
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: deploy: broker {url}: cannot connect"), out.stderr
        assert "marked failed" in lines[0]
        assert out.stdout == "", "no plan is printed for a rollout that never started"
    store = open_store(str(db))
    try:
        rows = store.rollouts(10)
    finally:
        store.close()
    assert [(r["outcome"], r["phase"]) for r in rows] == [("failed", "halted")] * 2
