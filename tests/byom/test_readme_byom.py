"""README "Bring your own model": every command of its block runs as written, on models
and data this test builds under the names the README uses."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.byom import models

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Bring your own model"


def blocks(lang: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[: section.index("\n## ", 1)]
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def files(d: Path) -> None:
    """The README's file names: models shaped like published ones, inputs, a key pair."""
    import onnxruntime as ort

    from edge_sdk.bundle.signing import new_key_pair

    models.constant_cnn_onnx(d / "textcls.onnx", classes=2)
    models.detector_tflite(d / "detector.tflite")
    models.stateful_onnx(d / "vad.onnx")
    rng = np.random.default_rng(0)
    lines = rng.normal(size=(24, 3, 48, 192)).astype(np.float32)
    labels = ort.InferenceSession(str(d / "textcls.onnx")).run(None, {"input": lines})[0].argmax(axis=1)
    np.savez(d / "lines.npz", x=lines, y=labels)
    np.savez(d / "images.npz", x=rng.random((6, 16, 16, 3), dtype=np.float32))
    np.savez(d / "vad_inputs.npz", input=rng.normal(size=(5, 16)).astype(np.float32),
             state=np.zeros((5, 2, 1, 8), np.float32))
    new_key_pair(d / "fleet-key")
    (d / "textcls.toml").write_text(blocks("toml")[0])


def run(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(line.split("  #")[0])
    tool = {"edge": "edge_sdk", "edge-agent": "device_agent"}[argv[0]]
    return subprocess.run([sys.executable, "-m", tool, *argv[1:]], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("byom-readme")
    files(d)
    out = {}
    for line in (x for x in blocks("bash")[0].splitlines() if x.strip()):
        proc = run(line, d)
        assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        out[line] = proc.stdout
    return out


def _one(outputs: dict[str, str], prefix: str) -> str:
    (key,) = [k for k in outputs if k.startswith(prefix)]
    return outputs[key]


def test_every_readme_command_runs(outputs: dict[str, str]) -> None:
    assert len(outputs) == len([x for x in blocks("bash")[0].splitlines() if x.strip()]) >= 10


def test_what_the_readme_commands_print(outputs: dict[str, str]) -> None:
    assert "macs: " in _one(outputs, "edge inspect textcls.onnx") and "unknown" not in _one(
        outputs, "edge inspect textcls.onnx")
    packed = _one(outputs, "edge pack textcls.onnx")
    assert "int8:        int8 weights: 3 tensors" in packed and "float weights left: 0 tensors" in packed
    assert "output kind: detection" in _one(outputs, "edge pack detector.tflite")
    assert "output_kind: raw" in _one(outputs, "edge inspect vad.edgepkg")
    assert "inputs:      vad_inputs.npz" in _one(outputs, "edge bench vad.edgepkg")
    assert "inputs:      random" in _one(outputs, "edge bench textcls.onnx")
    acc = re.search(r"accuracy:\s+([\d.]+)%", _one(outputs, "edge eval textcls.edgepkg"))
    assert acc is not None and float(acc.group(1)) >= 75.0  # int8 against the float model's own labels
    assert "max |difference| 0 from detector.tflite" in _one(outputs, "edge eval detector.edgepkg")
    assert "from the outputs recorded at build time" in _one(outputs, "edge eval vad.edgepkg")
    assert _one(outputs, "edge verify").startswith("ok: detector")
    served = [json.loads(x) for x in _one(outputs, "edge-agent run detector").splitlines()]
    assert len(served) == 4 and all("boxes" in r["outputs"] for r in served[:3])
    vad = [json.loads(x) for x in _one(outputs, "edge-agent run vad").splitlines()]
    assert len(vad) == 6 and set(vad[0]["outputs"]) == {"output", "stateN"}
