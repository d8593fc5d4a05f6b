"""Carried state: a recurrent model's output fed back as its input, per source stream."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from device_agent.bundle import read_manifest
from device_agent.loader import opened_bundle
from device_agent.protocol.manifest import CarriedState, TensorSpec
from device_agent.state import StateStore
from device_agent.update.health import HealthOptions, check_slot
from edge_sdk.cli import app
from tests.byom.conftest import Byom

runner = CliRunner()


def sequential(model: Path, chunks: np.ndarray) -> list[np.ndarray]:
    """What the model gives a stream when its state is carried by hand."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model))
    state, out = np.zeros((2, 1, 8), np.float32), []
    for c in chunks:
        prob, state = sess.run(None, {"input": c[None], "state": state, "sr": np.array(16000, np.int64)})
        out.append(prob.reshape(-1))
    return out


@pytest.fixture(scope="module")
def stateful_bundle(byom: Byom) -> Path:
    chunks = np.random.default_rng(7).normal(size=(4, 16)).astype(np.float32)
    np.savez(byom.root / "chunks.npz", x=chunks)
    out = byom.root / "vad-state.edgepkg"
    res = runner.invoke(app, ["pack", str(byom.vad), "-o", str(out), "--output-kind", "raw", "--constant",
                              "sr=16000", "--state", "stateN=state", "--data", str(byom.root / "chunks.npz"),
                              "--validation-samples", "4"])
    assert res.exit_code == 0, res.output
    return out


def test_state_is_carried_per_stream_from_the_declared_initial_value(byom: Byom, stateful_bundle: Path) -> None:
    (st,) = read_manifest(stateful_bundle).state
    assert (st.output, st.input, st.initial) == ("stateN", "state", 0.0)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 16)).astype(np.float32), rng.normal(size=(3, 16)).astype(np.float32)
    lines = []
    for i in range(3):  # two interleaved streams
        lines.append(json.dumps({"inputs": {"input": a[i].tolist()}, "stream": "a"}))
        lines.append(json.dumps({"inputs": {"input": b[i].tolist()}, "stream": "b"}))
    proc = subprocess.run([sys.executable, "-m", "device_agent", "run", str(stateful_bundle), "--source", "stdin"],
                          input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in proc.stdout.splitlines() if '"outputs"' in x]
    got_a = [r["outputs"]["output"]["values"] for r in rows[0::2]]
    got_b = [r["outputs"]["output"]["values"] for r in rows[1::2]]
    for got, want in ((got_a, sequential(byom.vad, a)), (got_b, sequential(byom.vad, b))):
        for g, w in zip(got, want, strict=True):
            assert g == pytest.approx(w.tolist(), abs=1e-6)
    # Not the same as starting afresh each time: the state matters for this model.
    assert got_a[2] != pytest.approx(sequential(byom.vad, a[2:3])[0].tolist(), abs=1e-6)


def test_health_check_replays_the_stream_state_exactly(stateful_bundle: Path) -> None:
    with opened_bundle(stateful_bundle) as b:
        report = check_slot(b.root, b.manifest, HealthOptions())
    assert report.ok and report.max_abs_error is not None and report.max_abs_error < 1e-5, report


def test_state_resets_after_silence_and_on_request() -> None:
    now = [0.0]
    store = StateStore([CarriedState("hN", "h", initial=0.5, reset_after_s=2.0)],
                       [TensorSpec("h", (1, -1, 4), "float32")], clock=lambda: now[0])
    assert store.current("s")["h"].tolist() == [[[0.5] * 4]]
    store.update("s", {"hN": np.ones((1, 1, 4), np.float32)})
    now[0] = 1.5
    assert store.current("s")["h"].sum() == 4.0  # still carried
    assert store.current("s", reset=True)["h"].sum() == 2.0
    assert store.current("other")["h"].sum() == 2.0  # a new stream starts fresh
    now[0] = 4.0
    assert store.current("s")["h"].sum() == 2.0  # silent longer than reset_after_s


def test_state_names_are_checked(byom: Byom, tmp_path: Path) -> None:
    res = runner.invoke(app, ["pack", str(byom.vad), "-o", str(tmp_path / "x.edgepkg"), "--state", "h=state"])
    assert res.exit_code == 2 and "--state h=state: the model's outputs are ['output', 'stateN']" in res.output
