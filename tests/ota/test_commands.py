"""edge flash, edge-agent install/status/run --store, and probation with rollback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from device_agent.protocol.messages import DeployPhase
from device_agent.update.agent import end_probation, engine_for_store
from device_agent.update.probation import ProbationPolicy, ProbationWindow, Verdict, WindowCounter, judge
from device_agent.update.store import ModelStore
from edge_sdk.cli import app as edge_app
from tests.support.agent_cli import agent

from .conftest import Factory

runner = CliRunner()


def test_flash_offline_into_an_empty_card(factory: Factory, tmp_path: Path) -> None:
    card = tmp_path / "sdcard" / "var" / "lib" / "edge-agent"
    res = runner.invoke(edge_app, ["flash", str(factory.bundle("1.0.0")), "--to", str(card),
                                   "--key", str(factory.key.public), "--device-type", "rpi4"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.splitlines()[-1])["status"] == "active"
    store = ModelStore(card)
    assert store.current() is not None and store.floor() == "1.0.0"
    assert (card / "keys" / "fleet-key.pub").read_bytes() == factory.key.public.read_bytes()
    assert store.device_type() == "rpi4"


def test_flash_refuses_downgrade_then_allows_it(factory: Factory, tmp_path: Path) -> None:
    card, key = tmp_path / "card", str(factory.key.public)
    assert runner.invoke(edge_app, ["flash", str(factory.bundle("2.0.0")), "--to", str(card),
                                    "--key", key]).exit_code == 0
    old = str(factory.bundle("1.9.0"))
    res = runner.invoke(edge_app, ["flash", old, "--to", str(card), "--key", key])
    assert res.exit_code == 2 and "downgrade refused" in res.output
    assert ModelStore(card).current().manifest.version == "2.0.0"  # type: ignore[union-attr]
    res = runner.invoke(edge_app, ["flash", old, "--to", str(card), "--key", key, "--allow-downgrade"])
    assert res.exit_code == 0, res.output
    assert ModelStore(card).current().manifest.version == "1.9.0"  # type: ignore[union-attr]


def test_flash_refuses_unsigned(factory: Factory, tmp_path: Path) -> None:
    res = runner.invoke(edge_app, ["flash", str(factory.bundle("1.0.0", signed=False)),
                                   "--to", str(tmp_path / "c"), "--key", str(factory.key.public)])
    assert res.exit_code == 2 and "unsigned" in res.output
    assert not (tmp_path / "c").exists(), "a refused flash into a new folder leaves nothing behind"


def _agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "device_agent", *args], capture_output=True, text=True)


def test_agent_install_status_and_run_store(store_dir: Path, factory: Factory, digits_npz: Path) -> None:
    out = _agent("install", str(factory.bundle("1.0.0")), "--store", str(store_dir))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "active"
    bad = _agent("install", str(factory.bundle("0.9.0")), "--store", str(store_dir))
    assert bad.returncode == 1 and json.loads(bad.stdout)["status"] == "rejected"
    st = json.loads(_agent("status", "--store", str(store_dir)).stdout)
    assert st["version"] == "1.0.0" and st["floor"] == "1.0.0"
    run = _agent("run", "--store", str(store_dir), "--source", f"file:{digits_npz}", "-q")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["summary"]["count"] == 40


def test_agent_run_store_without_model_is_a_clear_error(tmp_path: Path, digits_npz: Path) -> None:
    res = agent("run", "--store", str(tmp_path / "s"), "--source", f"file:{digits_npz}")
    assert res.exit_code == 2 and "no current model" in res.output


def test_probation_policy_is_pure_and_strict() -> None:
    p = ProbationPolicy(min_samples=100)
    base = ProbationWindow(inferences=990, errors=10, confidence_sum=990 * 0.9, exits=((0, 990),))
    assert judge(base, ProbationWindow(50, 0, 45.0), p).verdict == Verdict.WAIT
    assert judge(base, ProbationWindow(995, 5, 995 * 0.88, ((0, 995),)), p).verdict == Verdict.PASS
    worse_err = judge(base, ProbationWindow(950, 50, 950 * 0.9, ((0, 950),)), p)
    assert worse_err.verdict == Verdict.REGRESSED and "error rate" in worse_err.reason
    worse_conf = judge(base, ProbationWindow(1000, 0, 1000 * 0.6, ((0, 1000),)), p)
    assert worse_conf.verdict == Verdict.REGRESSED and "confidence" in worse_conf.reason
    cascade = ProbationWindow(1000, 0, 900.0, ((0, 700), (1, 300)))
    shifted = judge(cascade, ProbationWindow(1000, 0, 900.0, ((0, 300), (1, 700))), p)
    assert shifted.verdict == Verdict.REGRESSED and "exit rate of stage 0" in shifted.reason


def _serve_window(store_dir: Path, digits_npz: Path) -> ProbationWindow:
    from device_agent.serve import serve
    from device_agent.sources import open_source

    counter = WindowCounter()
    with engine_for_store(store_dir) as engine:
        serve(open_source(f"file:{digits_npz}"), engine, observers=[counter])
    return counter.window()


def test_probation_rolls_back_a_less_confident_model(store_dir: Path, factory: Factory,
                                                     digits_npz: Path) -> None:
    from .test_flow import install

    good_w, good_b = factory.weights(0)
    # A confident model (scaled weights) first; then one whose outputs are nearly uniform.
    sharp = factory.bundle("1.0.0", seed=0, name="sharp.edgepkg",
                           model=_scaled(good_w * 4, good_b * 4), validation=_val(factory, good_w * 4, good_b * 4))
    flat = factory.bundle("1.1.0", seed=0, name="flat.edgepkg",
                          model=_scaled(good_w * 0.01, good_b * 0.01),
                          validation=_val(factory, good_w * 0.01, good_b * 0.01))
    assert install(store_dir, sharp).status == DeployPhase.ACTIVE
    before = _serve_window(store_dir, digits_npz)
    assert install(store_dir, flat).status == DeployPhase.ACTIVE
    after = _serve_window(store_dir, digits_npz)
    res = end_probation(ModelStore(store_dir), before, after, ProbationPolicy(min_samples=40))
    assert res is not None and res.status == DeployPhase.ROLLED_BACK, res
    assert "mean confidence fell" in res.reason and res.version == "1.1.0"
    store = ModelStore(store_dir)
    assert store.current().manifest.version == "1.0.0"  # type: ignore[union-attr]
    assert store.floor() == "1.0.0" and store.previous_id() is None
    assert end_probation(store, before, before, ProbationPolicy(min_samples=40)) is None


def _scaled(w: np.ndarray, b: np.ndarray) -> bytes:
    from .conftest import onnx_model

    return onnx_model(w, b)


def _val(factory: Factory, w: np.ndarray, b: np.ndarray) -> bytes:
    from .conftest import reference_outputs, validation_npz

    return validation_npz(factory.x, reference_outputs(factory.x, w, b))


def test_refused_agent_install_into_a_new_folder_leaves_nothing(factory: Factory, tmp_path: Path) -> None:
    new = tmp_path / "new-store"
    out = _agent("install", str(factory.bundle("1.0.0", signed=False)), "--store", str(new),
                 "--key", str(factory.key.public))
    assert out.returncode == 1 and json.loads(out.stdout)["status"] == "rejected", out.stderr
    assert not new.exists(), "a refused install into a new folder removes the store it created"
