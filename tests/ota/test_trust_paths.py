"""Trust in one place: ``install --key`` keeps the key for later updates; with keys
configured every path that loads a bundle verifies it (``run`` of a bundle, a store slot),
a slot's manifest edited on disk is refused; without keys the agent says so once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from device_agent.mqtt import BrokerOptions
from device_agent.update.agent import PAUSE_ENV
from device_agent.update.store import ModelStore
from device_agent.update.transport import send_bundle
from edge_sdk.bundle.signing import new_key_pair
from tests.support.mosquitto import Mosquitto

from .conftest import Factory
from .test_flow import install
from .test_ota import _listen, _stop

REPO = Path(__file__).resolve().parents[2]
ENV = {**{k: v for k, v in os.environ.items() if k != PAUSE_ENV and not k.startswith("EDGE_")},
       "PYTHONPATH": str(REPO)}  # fmt: skip


def _agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "device_agent", *args], capture_output=True, text=True,
                          env=ENV, timeout=120)  # fmt: skip


def test_install_key_is_kept_so_the_next_ota_is_trusted(factory: Factory, tmp_path: Path) -> None:
    store = tmp_path / "store"  # a fresh store: no keys yet
    out = _agent("install", str(factory.bundle("1.0.0")), "--store", str(store), "--key", str(factory.key.public))
    assert out.returncode == 0, out.stderr
    assert (store / "keys" / factory.key.public.name).read_bytes() == factory.key.public.read_bytes()
    mq = Mosquitto(tmp_path / "mosq").start()
    agent = _listen(store, mq.url, "pi-k")
    try:
        final = send_bundle(factory.bundle("1.1.0", seed=1), broker=BrokerOptions(url=mq.url), fleet="lab",
                            device="pi-k", chunk_size=4096, timeout_s=90)
    finally:
        _stop(agent)
        mq.stop()
    assert final.status == "active", final
    assert ModelStore(store).current().manifest.version == "1.1.0"  # type: ignore[union-attr]


def test_run_with_a_key_refuses_a_bundle_signed_by_another(factory: Factory, digits_npz: Path,
                                                           tmp_path: Path) -> None:
    other = new_key_pair(tmp_path / "other-key")
    stranger = factory.bundle("1.0.0", key=other.private, name="stranger.edgepkg")
    src = f"file:{digits_npz}"
    out = _agent("run", str(stranger), "--source", src, "-q", "--key", str(factory.key.public))
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "does not verify" in out.stderr, out.stderr
    ok = _agent("run", str(factory.bundle("1.0.0")), "--source", src, "-q", "--key", str(factory.key.public))
    assert ok.returncode == 0 and json.loads(ok.stdout)["summary"]["count"] == 40, ok.stderr
    assert "unsigned" not in ok.stderr
    # No key configured: the same stranger is served, and the agent says so once.
    anyone = _agent("run", str(stranger), "--source", src, "-q")
    assert anyone.returncode == 0, anyone.stderr
    assert anyone.stderr.count("bundle signatures are not checked") == 1, anyone.stderr


def test_a_store_slot_is_checked_at_load(store_dir: Path, factory: Factory, digits_npz: Path,
                                         tmp_path: Path) -> None:
    assert install(store_dir, factory.bundle("1.0.0")).status.value == "active"
    src = f"file:{digits_npz}"
    # STORE/keys trusts the factory key: the slot's signature is checked and passes.
    assert _agent("run", "--store", str(store_dir), "--source", src, "-q").returncode == 0
    # Another key only: the same slot is now refused (its signer is not trusted).
    other = new_key_pair(tmp_path / "other-key")
    for f in (store_dir / "keys").iterdir():
        f.unlink()
    out = _agent("run", "--store", str(store_dir), "--source", src, "-q", "--key", str(other.public))
    assert out.returncode == 2 and "does not verify with any trusted key" in out.stderr, out.stderr
    # An edited manifest (a label changed by hand) is refused with or without keys: the
    # store falls back (here to nothing) and says why.
    slot = ModelStore(store_dir).current_dir()
    assert slot is not None
    manifest = slot / "manifest.json"
    doc = json.loads(manifest.read_bytes())
    doc["labels"][0] = "zero"
    manifest.write_text(json.dumps(doc))
    out = _agent("run", "--store", str(store_dir), "--source", src, "-q")
    assert out.returncode == 2 and "manifest.json was changed after install" in out.stderr, out.stderr
    assert "no current model" in out.stderr.strip().splitlines()[-1]


def test_daemon_takes_key_option(store_dir: Path, factory: Factory, digits_npz: Path, tmp_path: Path) -> None:
    """``daemon --key`` trusts an extra signer for OTA without copying it anywhere."""
    extra = new_key_pair(tmp_path / "extra-key")
    assert install(store_dir, factory.bundle("1.0.0")).status.value == "active"
    mq = Mosquitto(tmp_path / "mosq").start()
    log = tmp_path / "d.log"
    with log.open("wb") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "device_agent", "daemon", "--store", str(store_dir), "--source",
             f"file:{digits_npz}?rate=100&loop=1", "-q", "--broker", mq.url, "--device-id", "pi-d", "--fleet",
             "lab", "--key", str(extra.public), "--probation-samples", "1000000"],
            env=ENV, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    result: list = []
    t = threading.Thread(target=lambda: result.append(send_bundle(
        factory.bundle("1.1.0", seed=1, key=extra.private, name="extra.edgepkg"), broker=BrokerOptions(url=mq.url),
        fleet="lab", device="pi-d", chunk_size=4096, timeout_s=90, retry_s=2)))
    t.start()
    t.join(100)
    agent.terminate()
    agent.wait(20)
    mq.stop()
    assert result and result[0].status == "active", (result, log.read_text())
    assert not (store_dir / "keys" / "extra-key.pub").exists()
