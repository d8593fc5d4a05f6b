"""``edge demo``'s over-the-air update: one agent moves from v0.1.0 to v0.2.0 by MQTT.

A fresh Ed25519 key signs the demo bundle as v0.1.0 and a copy as v0.2.0; v0.1.0 is
flashed into a model store that trusts the key; a real ``edge-agent daemon`` serves it
and listens for deployments; ``edge deploy`` sends v0.2.0 in hashed chunks and the
deploy/status sequence and the agent's new active version are printed. The broker is
the demo fleet's (``results["broker"]``) when an earlier step started one, else an
embedded amqtt broker of this step's own. Everything started here is stopped here.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from device_agent.errors import EdgeError
from edge_sdk.demo.state import DemoState

DEVICE = "demo-ota"
FLEET = "demo"
CHUNK = 16 * 1024  # several chunks even for the small demo bundle, so the transfer shows


def _member_bytes(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}  # type: ignore[union-attr]


def signed_versions(bundle: Path, out: Path, versions: tuple[str, ...]) -> tuple[Path, list[Path]]:
    """A fresh key pair in ``out`` and ``bundle`` re-versioned and signed once per version."""
    from device_agent.protocol.manifest import MANIFEST_NAME, Manifest
    from edge_sdk.bundle.signing import load_signer, new_key_pair
    from edge_sdk.bundle.writer import write_bundle

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("demo-key*"):  # a rerun into the same folder
        old.unlink()
    key = new_key_pair(out / "demo-key")
    members = _member_bytes(bundle)
    manifest = Manifest.from_json(members.pop(MANIFEST_NAME))
    members.pop("manifest.sig", None)
    signer = load_signer(key.private)
    paths = [write_bundle(out / f"{manifest.name}-{v}.edgepkg", replace(manifest, version=v), members,
                          signer=signer) for v in versions]
    return key.public, paths


@contextmanager
def amqtt_broker() -> Iterator[str]:
    """An embedded amqtt broker on a free port, on its own event-loop thread."""
    import logging

    from edge_sdk.fleet.embedded_broker import broker_config
    from edge_sdk.fleet.net import free_port

    logging.getLogger("amqtt").setLevel(logging.WARNING)
    port, ready = free_port(), threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        from amqtt.broker import Broker

        box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
        b = Broker(broker_config("127.0.0.1", port))
        await b.start()
        ready.set()
        try:
            await box["stop"].wait()
        finally:
            await b.shutdown()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as e:  # reported below; the thread ends either way
            box["error"] = e
            ready.set()

    thread = threading.Thread(target=run, name="demo-ota-broker", daemon=True)
    thread.start()
    if not ready.wait(20) or "error" in box:
        raise EdgeError(f"demo ota: embedded broker did not start on port {port} ({box.get('error')})")
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)


def _wait_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> None:
    """Read the agent's stderr on a thread (select() cannot see lines already buffered)."""
    import queue

    assert proc.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    stream = proc.stderr

    def pump() -> None:  # also drains the pipe for as long as the agent runs
        for line in iter(stream.readline, ""):
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=min(left, 0.5))
        except queue.Empty:
            if proc.poll() is not None:
                raise EdgeError(f"demo ota: the agent exited before serving (code {proc.returncode})") from None
            continue
        if line.startswith(prefix):
            return
    raise EdgeError(f"demo ota: the agent did not start serving within {timeout:.0f} s")


@contextmanager
def _daemon(store: Path, broker: str, data: Path) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "device_agent", "daemon", "--store", str(store), "--source",
         f"file:{data}?rate=200&loop=1", "--broker", broker, "--device-id", DEVICE, "--fleet", FLEET,
         "--probation-samples", "100", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        _wait_line(proc, "serving ", 60)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _flash(bundle: Path, store_dir: Path, public_key: Path) -> None:
    """What ``edge flash`` does: verify, health-check and switch into an empty store."""
    import shutil

    from device_agent import __version__
    from device_agent.protocol.messages import DeployPhase
    from device_agent.update.agent import trust_for
    from device_agent.update.flow import UpdateFlow, UpdatePolicy
    from device_agent.update.store import ModelStore

    shutil.rmtree(store_dir, ignore_errors=True)
    store = ModelStore(store_dir).init()
    store.keys_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(public_key, store.keys_dir / "demo.pub")
    result = UpdateFlow(store, trust_for(store), UpdatePolicy(agent_version=__version__)).run(bundle)
    if result.status != DeployPhase.ACTIVE:
        raise EdgeError(f"demo ota: flashing {bundle.name} failed: {result.reason}")


def deploy(bundle: Path, broker: str, db: Path) -> list[dict[str, Any]]:
    """Run ``edge deploy`` to the demo agent; its JSON lines (statuses, then the summary)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [sys.executable, "-m", "edge_sdk", "deploy", str(bundle), "--device", DEVICE, "--fleet", FLEET,
         "--broker", broker, "--db", str(db), "--chunk-size", str(CHUNK), "--timeout", "60"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    if proc.returncode != 0:
        raise EdgeError(f"demo ota: edge deploy failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _agent_status(store: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "device_agent", "status", "--store", str(store)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise EdgeError(f"demo ota: edge-agent status failed: {proc.stderr.strip()}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def ota_step(s: DemoState) -> None:
    """Sign v0.1.0 and v0.2.0, serve v0.1.0 with a daemon, deploy v0.2.0 over MQTT."""
    s.progress("over-the-air update of one agent", 0, 1)
    folder = s.out / "ota"
    public, (v1, v2) = signed_versions(s.results["report"].bundle, folder, ("0.1.0", "0.2.0"))
    store = folder / "store"
    _flash(v1, store, public)
    own: Callable[[], Any] = amqtt_broker if "broker" not in s.results else _given(s.results["broker"])
    t0 = time.monotonic()
    with own() as broker, _daemon(store, broker, s.results["train"].test):
        lines = deploy(v2, broker, Path(s.results.get("fleet_db", folder / "fleet.db")))
        status = _agent_status(store)
    statuses = [d for d in lines if "status" in d and "rollout" in d]
    seq = " -> ".join(d["status"] for d in statuses)
    s.results["ota"] = {"statuses": statuses, "agent": status, "seconds": round(time.monotonic() - t0, 1)}
    s.say(f"ota: signed {v1.name} and {v2.name} with a fresh key ({public.name}); "
          f"edge-agent daemon {DEVICE} served 0.1.0")
    chunks = -(-v2.stat().st_size // CHUNK)
    s.say(f"ota: edge deploy {v2.name} --device {DEVICE} ({v2.stat().st_size:,} bytes in {chunks} "
          f"chunks of {CHUNK // 1024} KiB, QoS 1): deploy/status {seq}")
    s.say(f"ota: {DEVICE} now serves {status['name']} {status['version']} (previous {status['previous']}); "
          f"agent start to switch {s.results['ota']['seconds']} s")


def _given(url: str) -> Callable[[], Any]:
    @contextmanager
    def same() -> Iterator[str]:
        yield url

    return same


STEPS: list[tuple[str, Callable[[DemoState], None]]] = [("ota", ota_step)]
