"""The README's "Deploying to a fleet", run command by command, end to end, everything real.

The test reads the section's code blocks and runs every command line in order with
``bash`` (a block's first comment says on which machine: the broker's checkout or the
Pi's home directory, two temporary folders here), after one documented mapping
(:meth:`World.mapping`): the host name and port of the broker, and the system paths
(``/etc/mosquitto``, ``/etc/edge-agent``, ``/var/lib/edge-agent``, ``/opt/edge-agent``,
``/etc/systemd/system``) become temporary folders; ``sudo``, ``sudo -u edge-agent`` and
the ``-o edge-agent`` owner options go (one test user plays everyone); run as root where
the ``mosquitto`` user exists, Mosquitto starts as Debian's unit starts it (as root,
switching to ``mosquitto`` before it reads the password file and the key), so the README's
``-g mosquitto`` and ``chgrp mosquitto`` are run as written, and needed (elsewhere
``-g mosquitto`` goes and ``chgrp`` names the test's group); ``.venv/bin/`` is this
interpreter's; ``tools/`` is this checkout's; ``pi@raspberrypi.local:`` is the Pi's
folder (``scp`` copies locally); ``edge fleet add-user``/``add-device`` get their default
``/etc/mosquitto/edge.passwd`` and ``edge.acl`` as explicit, mapped, options. A mapped
line that still names a system path fails the test before it runs. What needs root or
systemd is stood in for (:func:`stand_in`):

- ``install_agent.sh`` runs with ``--dry-run``; the ``install`` steps it prints (store,
  keys, ``agent.toml.example``, the unit) are then run, mapped; the README's ``agent.toml``
  block is the file a person writes with ``sudoedit``;
- ``systemctl restart mosquitto``: Mosquitto started (``tests/support/production_broker.py``)
  on the files the commands installed, after checking that the conf.d snippet they
  installed is the shipped ``production.conf`` (the fixture rewrites only paths and ports);
- ``systemctl start edge-agent``: the installed unit's ``ExecStart``, mapped, with its
  ``EnvironmentFile`` (``agent.env``, which the test writes with 1 s telemetry windows
  instead of 10 s: the one setting that differs from the README);
- long-running commands (``edge collector``) start in the background; ``edge deploy``
  runs while the test SIGKILLs Mosquitto mid-transfer and restarts it on the same config
  and ports.

Given, as the section says, in the broker's checkout: the wheel (an empty file: the
installer only checks it exists under ``--dry-run``; ``tools/arm_check.py`` installs a
real one), ``fleet-key.pub``, the signed ``m-1.0.0.edgepkg`` and ``m-1.1.0.edgepkg`` (a
12 MB model, 186 chunks of 64 KiB, so the transfer can be interrupted) and ``input.npz``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.support.production_broker import TLS_PASSWORD, ProductionBroker, rewrite

from .conftest import Factory, reference_outputs, validation_npz

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SECTION = "## Deploying to a fleet"
BIN = Path(sys.executable).parent
WHEEL = "edgekit_sdk-0.1.0-py3-none-any.whl"
GIVEN = (WHEEL, "fleet-key.pub", "m-1.0.0.edgepkg", "m-1.1.0.edgepkg", "input.npz")


# ---- the README section -------------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    """One bash code block: the machine it runs on and its command lines."""

    machine: str  # "broker" or "pi"
    commands: tuple[str, ...]


def section_text() -> str:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end > 0 else None]


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, re.S | re.M)


def bash_blocks(text: str) -> list[Block]:
    """Each bash block's commands (continuations joined), its machine from its first comment."""
    blocks = []
    for body in code_blocks(text, "bash"):
        first = body.splitlines()[0]
        machine = "pi" if first.startswith("# on the Pi") else "broker" if first.startswith("# on the broker") else ""
        assert machine, f"a block must start with '# on the broker' or '# on the Pi': {first!r}"
        joined = body.replace("\\\n", " ")
        lines = [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        blocks.append(Block(machine, tuple(lines)))
    return blocks


# ---- the mapping ----------------------------------------------------------------------------
@dataclass
class World:
    """The temporary folders and the broker that play the three machines."""

    tmp: Path
    broker: ProductionBroker
    as_debian: bool = False  # Mosquitto drops root for user mosquitto: group mosquitto is real
    home: Path = field(init=False)  # the broker's checkout (what the commands write there)
    pi: Path = field(init=False)  # pi's home directory
    root: Path = field(init=False)  # the Pi's /etc/edge-agent, /var/lib/edge-agent, ...

    def __post_init__(self) -> None:
        self.home, self.pi, self.root = self.tmp / "checkout", self.tmp / "pi", self.tmp / "pi-root"
        for d in (self.home, self.pi, self.root, self.broker.etc / "conf.d"):
            d.mkdir(parents=True, exist_ok=True)  # what the mosquitto package and useradd leave

    def mapping(self) -> list[tuple[str, str]]:
        """(README text, what it becomes here), applied in order; an absolute path only
        where a path starts (not inside one already mapped)."""
        r = self.root
        return [
            ("sudo -u edge-agent ", ""), ("sudo ", ""), (" -o edge-agent", ""), (" -g edge-agent", ""),
            *([] if self.as_debian else [(" -g mosquitto", ""), ("chgrp mosquitto ", f"chgrp {os.getgid()} ")]),
            ("pi@raspberrypi.local:", f"{self.pi}/"),
            ("broker.example.net:8883", f"localhost:{self.broker.ports[TLS_PASSWORD]}"),
            ("broker.example.net", "localhost"),
            ("/etc/mosquitto", str(self.broker.etc)),
            ("/etc/edge-agent", f"{r}/etc/edge-agent"), ("/var/lib/edge-agent", f"{r}/var/lib/edge-agent"),
            ("/opt/edge-agent/venv/bin/", f"{BIN}/"), ("/opt/edge-agent", f"{r}/opt/edge-agent"),
            ("/etc/systemd/system", f"{r}/etc/systemd/system"),
            (".venv/bin/", f"{BIN}/"), ("tools/", f"{REPO}/tools/"),
        ]  # fmt: skip

    def map(self, line: str) -> str:
        """``line`` as run here; never a system path (the test may run as root)."""
        for old, new in self.mapping():
            at_start = r"(?<![\w/.-])" if old[0] in "/.t" else ""
            line = re.sub(at_start + re.escape(old), lambda _m, n=new: n, line)  # type: ignore[misc]
        if re.search(r"\bedge fleet add-(user|device)\b", line):  # its default paths, mapped
            line += f" --passwd-file {self.broker.passwd} --acl-file {self.broker.acl}"
        system = re.findall(r"(?:^|[\s=:'\"])(/(?:etc|var|opt|usr|run|lib|home|srv)/\S*)", line)
        assert not system, f"the mapping leaves system paths in {line!r}: {system}"
        return line

    def cwd(self, machine: str) -> Path:
        return self.pi if machine == "pi" else self.home


ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("EDGE_")},
       "PYTHONPATH": str(REPO), "PATH": f"{BIN}:{os.environ['PATH']}", "COLUMNS": "120"}  # fmt: skip

STAND_INS = ("install_agent.sh", "systemctl restart mosquitto", "systemctl start edge-agent",
             "edge collector", "edge fleet status", "edge deploy")  # fmt: skip


def stand_in(line: str) -> str | None:
    """Which special handling a README command gets (None: run as it is, mapped)."""
    program = re.sub(r"^(sudo (-u \S+ )?)?(\.venv/bin/|bash )?", "", line)  # what it runs
    for key in STAND_INS:
        if program.startswith(key):
            return key
    if re.search(r"\bsystemctl\b", line):
        raise AssertionError(f"a systemctl command the test cannot stand in for: {line}")
    return None


def sh(script: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env or ENV,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, f"{script}\n-> exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


# ---- fast: the section's commands are all known -------------------------------------------
def test_every_command_of_the_section_is_run_or_stood_in_for() -> None:
    text = section_text()
    blocks = bash_blocks(text)
    commands = [c for b in blocks for c in b.commands]
    kinds = [stand_in(c) for c in commands]  # raises for a systemctl nobody stands in for
    assert set(STAND_INS) <= set(kinds), set(STAND_INS) - set(kinds)  # every stand-in is used
    assert any("edge fleet add-device" in c for c in commands)
    assert len(code_blocks(text, "toml")) == 1
    assert re.findall(r"^```(\w*)$", text, re.M).count("") == len(re.findall(r"^```(\w+)$", text, re.M))
    assert set(re.findall(r"^```(\w+)$", text, re.M)) == {"bash", "toml"}  # no other code


# ---- the end-to-end run ---------------------------------------------------------------------
HIDDEN = 40960  # 12 MB of weights: 186 chunks of 64 KiB, 16 MB on the wire (base64), more
# than the socket buffers between Mosquitto and the agent hold, so a kill lands mid-transfer


def big_bundle(factory: Factory, version: str) -> Path:
    """A 12 MB signed bundle that answers as 1.0.0 does (so probation keeps it): softmax(x·W1·W2
    + b), W1 = [W | noise], W2 = [I; 0], with 1.0.0's W and b. Many chunks: a transfer takes a while."""
    from onnx import TensorProto, helper, numpy_helper

    w, b = factory.weights(0)
    w1 = np.concatenate([w, np.random.default_rng(3).normal(size=(64, HIDDEN - 10)).astype(np.float32)], axis=1)
    w2 = np.zeros((HIDDEN, 10), np.float32)
    w2[:10] = np.eye(10, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("MatMul", ["h", "W2"], ["hw"]),
         helper.make_node("Add", ["hw", "b"], ["logits"]), helper.make_node("Softmax", ["logits"], ["y"], axis=-1)],
        "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2"), numpy_helper.from_array(b, "b")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return factory.bundle(version, model=model.SerializeToString(), name=f"m-{version}.edgepkg",
                          validation=validation_npz(factory.x, reference_outputs(factory.x, w, b)))  # fmt: skip


@dataclass
class Run:
    """What the test started and saw."""

    world: World
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)  # the README lines, as handled, in order
    status_calls: int = 0
    deploy_out: str = ""
    kept_at_kill: int = 0
    boot_id: str = ""

    def background(self, argv: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None) -> None:
        with log.open("ab") as out:
            self.procs.append(subprocess.Popen(argv, cwd=cwd, env=env or ENV, stdout=out, stderr=subprocess.STDOUT))

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def debian_like() -> bool:
    """Root on a machine with the mosquitto package's user: start Mosquitto as its
    systemd unit does on Debian and Raspberry Pi OS (as root; it switches to user
    ``mosquitto`` before reading the password file and the server key)."""
    import pwd

    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        return False
    return os.geteuid() == 0


def as_debian_does(broker: ProductionBroker) -> None:
    """The fixture's main config without its ``user`` line (Mosquitto's default: switch to
    ``mosquitto``), its folder and persistence writable by that user, as Debian's are."""
    config = broker.config.read_text()
    broker.config.write_text(re.sub(r"^user .*\n", "", config, flags=re.M))
    for d in (broker.root, broker.root / "data"):
        shutil.chown(d, "mosquitto")


@pytest.fixture
def world(tmp_path: Path, factory: Factory, digits_npz: Path) -> Iterator[World]:
    as_debian = debian_like()
    # pytest's folders are private to their user: the mosquitto user needs a way in
    base = Path(tempfile.mkdtemp(prefix="edge-e2e-", dir="/tmp")) if as_debian else tmp_path
    base.chmod(0o755)
    w = World(base, ProductionBroker(base / "mosquitto"), as_debian)
    if as_debian:
        as_debian_does(w.broker)
    (w.home / WHEEL).write_bytes(b"")
    (w.home / "fleet-key.pub").write_bytes(factory.key.public.read_bytes())
    (w.home / "m-1.0.0.edgepkg").write_bytes(factory.bundle("1.0.0").read_bytes())
    (w.home / "m-1.1.0.edgepkg").write_bytes(big_bundle(factory, "1.1.0").read_bytes())
    (w.home / "input.npz").write_bytes(digits_npz.read_bytes())
    yield w
    w.broker.stop()
    if as_debian:
        shutil.rmtree(base, ignore_errors=True)


def test_deploying_to_a_fleet_as_the_readme_says(world: World) -> None:
    text = section_text()
    run = Run(world)
    try:
        for block in bash_blocks(text):
            pending: list[str] = []
            for line in block.commands:
                kind = stand_in(line)
                if kind is None:
                    pending.append(line)
                    continue
                flush(run, pending, block.machine)
                pending = []
                handle(run, kind, line, block.machine, text)
                run.ran.append(line)
            flush(run, pending, block.machine)
    finally:
        run.stop_all()
    assert run.ran == [c for b in bash_blocks(text) for c in b.commands]  # every line, in order
    assert run.status_calls == 2


def flush(run: Run, lines: list[str], machine: str) -> None:
    """Plain lines run together in one bash (so ``umask`` holds for the lines after it)."""
    if lines:
        sh("\n".join(run.world.map(line) for line in lines), run.world.cwd(machine))
        run.ran.extend(lines)


def handle(run: Run, kind: str, line: str, machine: str, text: str) -> None:
    w, cwd = run.world, run.world.cwd(machine)
    mapped = w.map(line)
    if kind == "install_agent.sh":
        install_agent(w, mapped, cwd, text)
    elif kind == "systemctl restart mosquitto":
        installed = (w.broker.etc / "conf.d" / "edge.conf").read_text()
        shipped = REPO / "tools" / "mosquitto" / "production.conf"
        assert installed == shipped.read_text()
        assert rewrite(installed, w.broker.etc, w.broker.ports) == (w.broker.root / "conf.d" / "edge.conf").read_text()
        w.broker.start()
    elif kind == "systemctl start edge-agent":
        start_agent(run)
    elif kind == "edge collector":
        run.background(shlex.split(mapped), cwd, w.tmp / "collector.log")
    elif kind == "edge fleet status":
        run.status_calls += 1
        fleet_status(run, mapped, cwd)
    elif kind == "edge deploy":
        deploy_through_a_broker_kill(run, mapped, cwd)


def install_agent(w: World, mapped: str, cwd: Path, text: str) -> None:
    """The installer under --dry-run; the install steps it prints, run; agent.toml written."""
    printed = sh(f"{mapped} --dry-run", cwd)
    steps = [ln[2:] for ln in printed.splitlines() if ln.startswith("+ install ")]
    assert any("/var/lib/edge-agent/keys/fleet-key.pub" in s for s in steps), printed
    assert f"pip install {cwd / WHEEL}[agent-onnx]" in printed, printed
    assert "systemctl enable edge-agent.service" in printed
    sh("\n".join(w.map(s) for s in steps), cwd)
    etc = w.root / "etc" / "edge-agent"
    assert (etc / "agent.toml.example").read_text() == (REPO / "tools" / "agent.toml").read_text()
    # what the person writes with sudoedit: the README's agent.toml
    (etc / "agent.toml").write_text(w.map(code_blocks(text, "toml")[0]))


def start_agent(run: Run) -> None:
    """The installed unit's ExecStart (mapped), with its EnvironmentFile."""
    w = run.world
    unit = (w.root / "etc" / "systemd" / "system" / "edge-agent.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M)
    env_file = re.search(r"^EnvironmentFile=-?(.*)$", unit, re.M)
    assert exec_start and env_file, unit
    agent_env = Path(w.map(env_file.group(1)))
    agent_env.write_text("EDGE_AGENT_TELEMETRY_INTERVAL=1\n")  # 1 s windows (the README: 10 s)
    env = {**ENV, **dict(ln.split("=", 1) for ln in agent_env.read_text().splitlines() if "=" in ln)}
    run.background(shlex.split(w.map(exec_start.group(1))), w.pi, w.tmp / "agent.log", env)


def poll(what: str, timeout: float, cond) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        ok, last = cond()
        if ok:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last:\n{last}")


def fleet_status(run: Run, mapped: str, cwd: Path) -> None:
    """The device online with its telemetry; after the deploy, serving 1.1.0."""
    want = "1.1.0" if run.deploy_out else "1.0.0"

    def cond() -> tuple[bool, str]:
        out = subprocess.run(shlex.split(mapped), cwd=cwd, env=ENV, capture_output=True, text=True)
        if "no fleet database there" in out.stderr:  # the collector has not created it yet
            return False, out.stderr
        assert out.returncode == 0, out.stdout + out.stderr + logs(run)
        row = next((ln.split() for ln in out.stdout.splitlines() if ln.startswith("pi-01 ")), [])
        # device fleet status model(name version) p50 p95 per-s n/window ...: online, the
        # model's version, and a telemetry window (its p50 and inference count)
        ready = len(row) > 8 and row[1:5] == ["lab", "online", "digits", want]
        return ready and re.fullmatch(r"\d+\.\d+", row[5]) is not None and int(row[8]) > 0, out.stdout

    poll(f"pi-01 online with telemetry, serving {want}", 30, cond)
    js = subprocess.run([*shlex.split(mapped), "--json"], cwd=cwd, env=ENV, capture_output=True, text=True)
    dev = next(d for d in json.loads(js.stdout) if d["device"] == "pi-01")
    assert dev["fleet"] == "lab" and dev["status"] == "online" and dev["boot_id"], dev
    run.boot_id = dev["boot_id"]  # of its latest telemetry window


def logs(run: Run) -> str:
    return "".join(f"\n--- {p.name}\n{p.read_text()}" for p in sorted(run.world.tmp.glob("*.log")))


def settled(count, quiet_s: float = 0.5, timeout: float = 15) -> int:  # type: ignore[no-untyped-def]
    """``count()`` once it stopped changing for ``quiet_s``."""
    last, since, deadline = count(), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.05)
        if (now := count()) != last:
            last, since = now, time.monotonic()
    return last


def deploy_through_a_broker_kill(run: Run, mapped: str, cwd: Path) -> None:
    """``edge deploy``; Mosquitto SIGKILLed once the Pi kept some chunks, restarted on the
    same config and ports; the deploy still ends ``active``, the Pi never asks again for
    what it kept (tests/ota/test_agent_network.py checks the resume on a plain broker)."""
    w = run.world
    bundle = w.home / "m-1.1.0.edgepkg"
    total = -(-bundle.stat().st_size // (64 * 1024))
    assert total > 20
    transfers = w.root / "var" / "lib" / "edge-agent" / "transfers"
    kept = lambda: len(list(transfers.glob("*/*.chunk")))  # noqa: E731
    log = w.tmp / "deploy.log"
    t0 = time.monotonic()
    proc = subprocess.Popen(shlex.split(mapped), cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(ln.decode() for ln in proc.stdout), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        while kept() == 0:
            assert proc.poll() is None and time.monotonic() - t0 < 30, "".join(lines) + logs(run)
            time.sleep(0.001)
        assert w.broker.proc is not None
        w.broker.proc.kill()  # SIGKILL, mid-transfer
        w.broker.proc.wait()
        run.kept_at_kill = settled(kept)  # what reached the agent before the kill, kept
        assert 0 < run.kept_at_kill < total, (run.kept_at_kill, total)
        w.broker.start()  # the same config, the same ports
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            code = None  # a hang: say what the deploy and the agent had printed
        assert code == 0, f"edge deploy exit {code}:\n" + "".join(lines) + logs(run)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(5)
        log.write_text("".join(lines))
    statuses = [json.loads(ln) for ln in lines if ln.startswith("{") and '"status"' in ln]
    assert statuses[-1]["status"] == "active" and statuses[-1]["version"] == "1.1.0", lines
    assert {s["boot_id"] for s in statuses} == {run.boot_id}  # the reports name the telemetry's boot
    # Whatever was asked for again after the restart excludes what the agent kept (the
    # deployer's client may also resend its unacknowledged chunks by itself on reconnect).
    asked = [len(s["missing"]) for s in statuses if s["status"] == "downloading"]
    assert asked[0] == total and all(n <= total - run.kept_at_kill for n in asked[1:]), asked
    agent_log = (w.tmp / "agent.log").read_text()
    assert agent_log.count("lost the connection") == 1 and "connected again" in agent_log, agent_log
    summary = json.loads(lines[-1])
    assert summary["outcome"] == "completed" and summary["devices"] == {"pi-01": "active"}, summary
    run.deploy_out = "".join(lines)
