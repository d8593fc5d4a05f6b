"""SIGKILL the agent's update process at every step, 20 times per step.

Each run starts ``python -m device_agent install`` on a copy of a store serving 1.0.0,
with ``EDGE_AGENT_PAUSE_AT=step:i`` so the process announces ``PAUSED step:i`` at a
known point inside the step and waits; the test then kills it with SIGKILL. On restart
(the store's recovery, as the agent runs it on start) the store must serve 1.0.0 or
1.1.0, its model must load and infer, and staging must be empty.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from device_agent.update.agent import PAUSE_ENV, engine_for_store
from device_agent.update.store import ModelStore

from .conftest import SUMMARY, Factory
from .test_flow import install

RUNS_PER_STEP = 20
PARALLEL = 4
# The checkpoints inside each step (see device_agent.update.flow and store.commit).
POINTS = {
    "verify": [0, 1],
    "extract": [0, 1, 2, 3],
    "health-check": [0, 1],
    "switch": [0, 1, 2, 3],
}
RESULTS: dict[str, Counter[str]] = {}


@pytest.fixture(scope="module")
def seeded(factory: Factory, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store serving 1.0.0 (template) and the 1.1.0 bundle to install."""
    root = tmp_path_factory.mktemp("crash")
    store = root / "template"
    (store / "keys").mkdir(parents=True)
    (store / "keys" / "fleet.pub").write_bytes(factory.key.public.read_bytes())
    assert install(store, factory.bundle("1.0.0")).status.value == "active"
    return store, factory.bundle("1.1.0", seed=1)


def _start(store: Path, bundle: Path, point: str) -> subprocess.Popen[str]:
    env = dict(os.environ, **{PAUSE_ENV: point})
    return subprocess.Popen(
        [sys.executable, "-m", "device_agent", "install", str(bundle), "--store", str(store)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _kill_when_paused(proc: subprocess.Popen[str], point: str, timeout: float = 60.0) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            line = proc.stderr.readline()
            if line.startswith(f"PAUSED {point}"):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                assert proc.returncode == -signal.SIGKILL
                return
            assert line, f"process exited before reaching {point}: rc={proc.wait()}"
    proc.kill()
    raise AssertionError(f"process never paused at {point}")


def _check_restart(store_dir: Path, factory: Factory) -> str:
    """Recover as the agent does on start; the store must serve a whole model."""
    store = ModelStore(store_dir)
    store.recover()
    assert not any(store.staging.iterdir()), "staging not cleaned"
    with engine_for_store(store_dir) as engine:
        assert len(engine.infer(factory.x[:2])) == 2
        assert engine.manifest is not None
        version = engine.manifest.version
    assert version in ("1.0.0", "1.1.0")
    kept = {p.name for p in store.slots.iterdir()}
    assert kept == {store.current_id(), store.previous_id()} - {None}
    return version


@pytest.mark.parametrize("step", list(POINTS))
def test_sigkill_at_step(step: str, seeded: tuple[Path, Path], factory: Factory,
                         tmp_path: Path) -> None:
    template, bundle = seeded
    points = [f"{step}:{POINTS[step][i % len(POINTS[step])]}" for i in range(RUNS_PER_STEP)]
    outcomes: Counter[str] = Counter()
    for start in range(0, RUNS_PER_STEP, PARALLEL):
        batch = []
        for i in range(start, min(start + PARALLEL, RUNS_PER_STEP)):
            d = tmp_path / f"s{i}"
            shutil.copytree(template, d)
            batch.append((d, points[i], _start(d, bundle, points[i])))
        for d, point, proc in batch:
            _kill_when_paused(proc, point)
            outcomes[f"{_check_restart(d, factory)}"] += 1
    RESULTS[step] = outcomes
    assert sum(outcomes.values()) == RUNS_PER_STEP
    if step == "switch":
        # The kill lands before and after the pointer write: both outcomes must occur.
        assert outcomes["1.0.0"] > 0 and outcomes["1.1.0"] > 0
    else:
        assert outcomes == Counter({"1.0.0": RUNS_PER_STEP})
    _record()


def test_restarted_agent_serves_after_kill(seeded: tuple[Path, Path], factory: Factory,
                                           tmp_path: Path, digits_npz: Path) -> None:
    """The real agent process (not only the store API) serves after a kill mid-switch."""
    template, bundle = seeded
    d = tmp_path / "s"
    shutil.copytree(template, d)
    _kill_when_paused(_start(d, bundle, "switch:1"), "switch:1")
    assert any((d / "slots").iterdir())
    out = subprocess.run(
        [sys.executable, "-m", "device_agent", "run", "--store", str(d), "--source",
         f"file:{digits_npz}", "-q"], capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert '"count": 40' in out.stdout
    assert not any((d / "staging").iterdir())


def _record() -> None:
    if len(RESULTS) < len(POINTS):
        return
    parts = [
        f"{step}: {sum(c.values())} kills -> old {c['1.0.0']}, new {c['1.1.0']}, broken 0"
        for step, c in RESULTS.items()
    ]
    total = sum(sum(c.values()) for c in RESULTS.values())
    SUMMARY.append(f"crash-safety: {total} SIGKILLs; " + "; ".join(parts) + "; staging cleaned in all")
