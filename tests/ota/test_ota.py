"""Over-the-air deployment through a real Mosquitto: chunks with hashes, resume after the
agent is killed mid-transfer, hostile transfers rejected with the reason on deploy/status."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.errors import BundleError
from device_agent.mqtt import BrokerOptions
from device_agent.protocol.chunks import Assembly, Chunk, Offer, split
from device_agent.protocol.messages import DeployStatus
from device_agent.update.agent import PAUSE_ENV
from device_agent.update.store import ModelStore
from device_agent.update.transport import send_bundle, send_rollback

from .conftest import Factory
from .test_flow import install

MOSQUITTO = "/usr/sbin/mosquitto"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    conf = tmp_path_factory.mktemp("mosq") / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield f"mqtt://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def _listen(store: Path, broker: str, device: str, pause: str | None = None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop(PAUSE_ENV, None)
    if pause:
        env[PAUSE_ENV] = pause
    proc = subprocess.Popen(
        [sys.executable, "-m", "device_agent", "listen", "--store", str(store), "--broker", broker,
         "--device-id", device, "--fleet", "lab"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    _wait_line(proc, "listening on")
    return proc


def _wait_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 60) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([proc.stderr], [], [], 0.5)[0]:
            line = proc.stderr.readline()
            assert line, f"agent exited before printing {prefix!r} (rc={proc.poll()})"
            if line.startswith(prefix):
                return
    raise AssertionError(f"agent never printed {prefix!r}")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)


@pytest.fixture
def store(store_dir: Path, factory: Factory) -> Path:
    assert install(store_dir, factory.bundle("1.0.0")).status.value == "active"
    return store_dir


def test_chunk_protocol_rejects_corruption() -> None:
    data = os.urandom(1000)
    offer, chunks = split(data, rollout="r1", name="m", version="1.0.0", chunk_size=300)
    assert offer.chunks == 4 and Offer.from_payload(offer.to_payload()) == offer
    a = Assembly(offer, max_bytes=10_000)
    bad = Chunk("r1", 1, chunks[1].sha256, b"x" + chunks[1].data[1:])
    with pytest.raises(BundleError, match="does not match its sha256"):
        a.add(Chunk.from_payload(bad.to_payload()))
    for c in reversed(chunks):
        a.add(Chunk.from_payload(c.to_payload()))
    assert a.assemble() == data
    with pytest.raises(BundleError, match="exceeds the cap"):
        Assembly(offer, max_bytes=999)


def test_status_is_the_fleet_deploy_status_message() -> None:
    """The collector parses what the agent publishes; long reasons fit the 256-char cap."""
    import json

    from device_agent.protocol.messages import DeployPhase

    s = DeployStatus("r1", "rejected", "verify: " + "x" * 400 + " downgrade refused", "1.0.0", (1, 2), "pi-01", 5.0)
    wire = json.loads(s.to_payload())
    assert wire["rollout_id"] == "r1" and wire["phase"] == "rejected"  # the schema's names
    back = DeployStatus.from_payload(s.to_payload())
    assert back.status == DeployPhase.REJECTED and back.rollout == "r1" and back.ts == 5.0
    assert len(back.reason) == 256 and back.reason.endswith("downgrade refused")
    assert back.missing == (1, 2)


def test_deploy_over_mqtt(store: Path, factory: Factory, broker: str) -> None:
    agent = _listen(store, broker, "pi-01")
    try:
        seen: list[str] = []
        final = send_bundle(factory.bundle("1.1.0", seed=1), broker=BrokerOptions(url=broker), fleet="lab",
                            device="pi-01", chunk_size=2048, timeout_s=90,
                            on_status=lambda s: seen.append(s.status))
        assert final.status == "active", final
        assert seen[0] == "downloading" and "verifying" in seen and "health-check" in seen
        assert ModelStore(store).current().manifest.version == "1.1.0"  # type: ignore[union-attr]
        assert not (store / "transfers" / final.rollout).exists()
        back = send_rollback(broker=BrokerOptions(url=broker), fleet="lab", device="pi-01",
                             rollout=final.rollout, reason="canary failed")
    finally:
        _stop(agent)
    assert back.status == "rolled-back" and back.version == "1.0.0", back
    assert ModelStore(store).current().manifest.version == "1.0.0"  # type: ignore[union-attr]


def test_deploy_command_reports_rejection(store: Path, factory: Factory, broker: str, tmp_path: Path) -> None:
    agent = _listen(store, broker, "pi-02")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "edge_sdk", "deploy", str(factory.bundle("0.5.0")), "--device", "pi-02",
             "--fleet", "lab", "--broker", broker, "--timeout", "90", "--db", str(tmp_path / "r.db")],
            capture_output=True, text=True, cwd=tmp_path,
        )
    finally:
        _stop(agent)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    final = DeployStatus(**[d for d in lines if "status" in d][-1])
    assert lines[-1]["outcome"] == "failed" and lines[-1]["devices"] == {"pi-02": "rejected"}
    assert lines[0]["canary"] == [] and lines[0]["rest"] == ["pi-02"]
    assert final.status == "rejected" and "downgrade refused" in final.reason
    assert "downgrade refused" in out.stderr
    assert ModelStore(store).current().manifest.version == "1.0.0"  # type: ignore[union-attr]


def test_resume_after_agent_killed_mid_transfer(store: Path, factory: Factory, broker: str) -> None:
    """SIGKILL the agent after 3 chunks; restarted, it asks only for the missing ones."""
    import threading

    bundle = factory.bundle("1.2.0", seed=2)
    agent = _listen(store, broker, "pi-03", pause="transfer:3")
    result: list[DeployStatus] = []
    statuses: list[DeployStatus] = []
    sender = threading.Thread(target=lambda: result.append(send_bundle(
        bundle, broker=BrokerOptions(url=broker), fleet="lab", device="pi-03", chunk_size=1024,
        timeout_s=120, retry_s=2, on_status=statuses.append)))
    sender.start()
    _wait_line(agent, "PAUSED transfer:3")
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    held = sorted(p.name for p in (store / "transfers").glob("*/*.chunk"))
    assert len(held) == 3
    agent = _listen(store, broker, "pi-03")
    try:
        sender.join(120)
    finally:
        _stop(agent)
    assert result and result[0].status == "active", (result, statuses)
    total = -(-bundle.stat().st_size // 1024)
    resumed = [s for s in statuses if s.status == "downloading"][-1]
    assert len(resumed.missing) == total - 3, "the restarted agent must not ask for chunks it held"
    assert ModelStore(store).current().manifest.version == "1.2.0"  # type: ignore[union-attr]


def test_sigkill_during_transfer_20_times(store: Path, factory: Factory, broker: str) -> None:
    """One deployment, 20 SIGKILLs of the agent at growing points of the transfer: after
    each, the store serves the old model with clean staging; the 21st run completes it."""
    import threading

    from .conftest import SUMMARY
    from .test_crash import _check_restart

    bundle = factory.bundle("1.1.0", seed=1)
    chunk = 256
    assert -(-bundle.stat().st_size // chunk) > 40
    result: list[DeployStatus] = []
    sender = threading.Thread(target=lambda: result.append(send_bundle(
        bundle, broker=BrokerOptions(url=broker), fleet="lab", device="pi-04", chunk_size=chunk,
        timeout_s=300, retry_s=1)))
    sender.start()
    outcomes = {"1.0.0": 0, "1.1.0": 0}
    for i in range(20):
        point = f"transfer:{2 * i + 1}"
        agent = _listen(store, broker, "pi-04", pause=point)
        _wait_line(agent, f"PAUSED {point}")
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        outcomes[_check_restart(store, factory)] += 1
        held = len(list((store / "transfers").glob("*/*.chunk")))
        assert held == 2 * i + 1, f"kill {i}: {held} chunks kept on disk"
    agent = _listen(store, broker, "pi-04")
    try:
        sender.join(300)
    finally:
        _stop(agent)
    assert outcomes == {"1.0.0": 20, "1.1.0": 0}
    assert result and result[0].status == "active", result
    assert ModelStore(store).current().manifest.version == "1.1.0"  # type: ignore[union-attr]
    SUMMARY.append(
        "crash-safety (transfer over MQTT): 20 SIGKILLs mid-transfer -> old 20, new 0, broken 0; "
        "resumed from the kept chunks and completed: active 1.1.0"
    )


def test_rollout_plan_and_halt_policy() -> None:
    from edge_sdk.ota.rollout import Outcome, Phase, RolloutRecord, plan, run_rollout

    p = plan([f"d{i:02d}" for i in range(20)], 10)
    assert p.canary == ("d00", "d01") and len(p.rest) == 18
    assert plan(["a", "b", "c"], 1).canary == ("a",)
    sent: list[tuple[str, bool]] = []
    rolled: list[str] = []

    def send(d: str, probation: bool) -> DeployStatus:
        sent.append((d, probation))
        # d00 passes probation; d01 stays active without a verdict (no serving agent)
        return DeployStatus("r", "probation-passed" if d == "d00" else "active", "")

    def rollback(d: str) -> DeployStatus:
        rolled.append(d)
        return DeployStatus("r", "rolled-back", "asked")

    rec = run_rollout(RolloutRecord("r", "b", "1.0.0"), p, send, rollback)
    assert rec.phase == Phase.HALTED and rec.outcome == Outcome.FAILED
    assert sorted(sent) == [("d00", True), ("d01", True)]  # the rest never touched
    assert sorted(rolled) == ["d00", "d01"]
    assert rec.devices == {"d00": "rolled-back", "d01": "rolled-back"}

    def rejecting(d: str, probation: bool) -> DeployStatus:
        return DeployStatus("r", "rejected", "health")

    rolled.clear()
    rec = run_rollout(RolloutRecord("r2", "b", "1.0.0"), plan(["a", "b"], 50), rejecting, rollback)
    assert rec.phase == Phase.HALTED and rolled == []  # already on its old model: nothing to undo

    def passing(d: str, probation: bool) -> DeployStatus:
        return DeployStatus("r", "probation-passed" if probation else "active", "")

    rec = run_rollout(RolloutRecord("r3", "b", "1.0.0"), p, passing, rollback)
    assert rec.phase == Phase.PROMOTED and rec.outcome == Outcome.COMPLETED and len(rec.devices) == 20


def test_daemon_swaps_live_and_rolls_back_a_regression(store_dir: Path, factory: Factory, broker: str,
                                                      digits_npz: Path) -> None:
    """The serving agent takes an OTA update between inferences; the new model's confidence
    collapses, probation rolls it back, and ``rolled-back`` arrives on deploy/status."""
    from device_agent.update.transport import _HostSession

    from .test_commands import _scaled, _val

    w, b = factory.weights(0)
    sharp = factory.bundle("1.0.0", name="d-sharp.edgepkg", model=_scaled(w * 4, b * 4),
                           validation=_val(factory, w * 4, b * 4))
    flat = factory.bundle("1.1.0", name="d-flat.edgepkg", model=_scaled(w * 0.01, b * 0.01),
                          validation=_val(factory, w * 0.01, b * 0.01))
    assert install(store_dir, sharp).status.value == "active"
    env = {k: v for k, v in os.environ.items() if k != PAUSE_ENV}
    agent = subprocess.Popen(
        [sys.executable, "-m", "device_agent", "daemon", "--store", str(store_dir), "--source",
         f"file:{digits_npz}?rate=300&loop=1", "--broker", broker, "--device-id", "pi-05", "--fleet", "lab",
         "--probation-samples", "60", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        _wait_line(agent, "serving 1.0.0-")
        # Subscribed before sending: probation may end within a fraction of a second.
        watcher = _HostSession(BrokerOptions(url=broker), "lab", "pi-05", "rdaemon")
        try:
            final = send_bundle(flat, broker=BrokerOptions(url=broker), fleet="lab", device="pi-05",
                                rollout="rdaemon", chunk_size=4096, timeout_s=90)
            assert final.status == "active", final
            seen = [watcher.inbox.get(timeout=60)]
            while seen[-1].status != "rolled-back":
                seen.append(watcher.inbox.get(timeout=60))
            back = seen[-1]
        finally:
            watcher.close()
        birth = _retained(broker, "edge/v1/lab/pi-05/state")
    finally:
        _stop(agent)
    assert back.status == "rolled-back" and "mean confidence fell" in back.reason, back
    # deploy/status names the same boot as the agent's birth and telemetry
    assert back.boot_id and back.boot_id == json.loads(birth)["boot_id"], (back, birth)
    assert ModelStore(store_dir).current().manifest.version == "1.0.0"  # type: ignore[union-attr]


def _retained(broker: str, topic: str) -> bytes:
    """The retained payload on ``topic`` (a real subscriber; the broker sends it at once)."""
    import paho.mqtt.subscribe as subscribe

    from device_agent.mqtt import parse_url

    host, port, _ = parse_url(broker)
    return subscribe.simple(topic, hostname=host, port=port, retained=True).payload  # type: ignore[union-attr]


def test_full_size_chunks_parse_and_oversized_ones_are_refused() -> None:
    """A default 64 KiB chunk is 87 KB of base64: more than a telemetry message may be, and
    exactly what a deploy sends (the walkthrough's broker-kill deploy hung on this once)."""
    from device_agent.protocol.chunks import DEFAULT_CHUNK, MAX_CHUNK
    from device_agent.protocol.messages import MAX_PAYLOAD

    data = bytes(range(256)) * (2 * MAX_CHUNK // 256)
    for size in (DEFAULT_CHUNK, MAX_CHUNK):
        offer, chunks = split(data, rollout="r1", name="m", version="1.0.0", chunk_size=size)
        assert len(chunks[0].to_payload()) > MAX_PAYLOAD
        assert Chunk.from_payload(chunks[0].to_payload()).data == data[:size]
        assert Offer.from_payload(offer.to_payload()) == offer
    with pytest.raises(BundleError, match="--chunk-size"):
        split(data, rollout="r1", name="m", version="1.0.0", chunk_size=MAX_CHUNK + 1)
