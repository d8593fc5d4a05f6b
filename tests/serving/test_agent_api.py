"""``device_agent.Agent``, the embeddable agent: README's Python examples run as written,
and the agent answers like ``edge-agent run`` (one path)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import device_agent
from device_agent import Agent, BundleError, Prediction
from tests.ota.conftest import Factory, reference_outputs

ROOT = Path(__file__).resolve().parents[2]


def readme_blocks(heading: str) -> list[str]:
    """The fenced ```python blocks of README's section ``heading`` (up to the next ``## ``)."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], re.S)


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Factory:
    """Signed bundles of a linear digits classifier (ONNX, no TensorFlow), as the update tests build them."""
    from sklearn.datasets import load_digits

    from edge_sdk.bundle.signing import new_key_pair

    root = tmp_path_factory.mktemp("agent")
    return Factory(root, new_key_pair(root / "fleet-key"), (load_digits().data[:16] / 16.0).astype(np.float32))


@pytest.fixture
def in_readme_dir(factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding what README's example names: digits.edgepkg (signed), fleet.pub, test.npz."""
    shutil.copy(factory.bundle("1.0.0"), tmp_path / "digits.edgepkg")
    shutil.copy(factory.key.public, tmp_path / "fleet.pub")
    w, b = factory.weights(0)
    np.savez(tmp_path / "test.npz", x=factory.x, y=reference_outputs(factory.x, w, b).argmax(axis=1))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_python_examples_run(in_readme_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = readme_blocks("Using the agent from Python")
    assert blocks, "README has no Python example under 'Using the agent from Python'"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert len([line for line in out if line.startswith('{"seq"')]) == 10
    assert out[-1] == "10"


def test_agent_answers_by_array_and_by_name(in_readme_dir: Path, factory: Factory) -> None:
    w, b = factory.weights(0)
    want = reference_outputs(factory.x, w, b).argmax(axis=1)
    with Agent.from_bundle("digits.edgepkg", keys=["fleet.pub"]) as agent:
        got = [agent.infer(row) for row in factory.x]
        assert all(isinstance(p, Prediction) for p in got)
        assert [p.index for p in got] == list(want)
        assert agent.infer({"x": factory.x[3]}).index == got[3].index
        assert agent.manifest.name == "digits"


def test_agent_refuses_an_unsigned_bundle_when_given_keys(in_readme_dir: Path, factory: Factory) -> None:
    unsigned = factory.bundle("1.0.0", signed=False)
    with pytest.raises(BundleError):
        Agent.from_bundle(unsigned, keys=["fleet.pub"])


def test_agent_is_the_public_front_door() -> None:
    assert "Agent" in device_agent.__all__ and (Path(device_agent.__file__).parent / "py.typed").is_file()
