"""Fixtures for the update tests: tiny real ONNX models (built with onnx, no TensorFlow),
signed bundles carrying a validation set, key pairs and model stores."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from device_agent.protocol.manifest import ModelFormat, TensorSpec
from edge_sdk.bundle.signing import KeyPair, load_signer, new_key_pair
from edge_sdk.bundle.writer import ModelPayload, build_bundle

# Figures the crash and fuzz tests print at the end of the run (the closing note quotes them).
SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    for line in SUMMARY:
        terminalreporter.write_line(line)


def onnx_model(weights: np.ndarray, bias: np.ndarray) -> bytes:
    """softmax(x·W + b) for x of shape (N, 64): a real model ONNX Runtime runs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(weights.astype(np.float32), "W"),
         numpy_helper.from_array(bias.astype(np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def reference_outputs(x: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    z = x @ weights + bias
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def validation_npz(x: np.ndarray, y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    return buf.getvalue()


@dataclass(frozen=True)
class Factory:
    """Builds signed bundles of a linear digits classifier, one per call."""

    root: Path
    key: KeyPair
    x: np.ndarray

    def weights(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        return rng.normal(size=(64, 10)).astype(np.float32), rng.normal(size=10).astype(np.float32)

    def bundle(
        self, version: str, *, seed: int = 0, signed: bool = True, key: Path | None = None,
        model: bytes | None = None, validation: bytes | None = None, name: str | None = None,
        **fields: object,
    ) -> Path:
        w, b = self.weights(seed)
        data = model if model is not None else onnx_model(w, b)
        val = validation if validation is not None else validation_npz(
            self.x, reference_outputs(self.x, w, b)
        )
        signer = load_signer(key or self.key.private) if signed else None
        out = self.root / (name or f"m-{version}-{seed}-{int(signed)}.edgepkg")
        build_bundle(
            out, name="digits", version=version,
            models=[ModelPayload(data, ModelFormat.ONNX,
                                 inputs=(TensorSpec("x", (-1, 64), "float32"),),
                                 outputs=(TensorSpec("y", (-1, 10), "float32"),))],
            validation=val, signer=signer, labels=tuple(str(i) for i in range(10)), **fields,
        )
        return out


@pytest.fixture(scope="session")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Factory:
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("ota")
    x = (load_digits().data[:16] / 16.0).astype(np.float32)
    return Factory(root, new_key_pair(root / "fleet-key"), x)


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_digits

    d = load_digits()
    p = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(p, x=(d.data[:40] / 16.0).astype(np.float32), y=d.target[:40])
    return p


@pytest.fixture
def store_dir(tmp_path: Path, factory: Factory) -> Path:
    """An empty model store that trusts the factory's key."""
    d = tmp_path / "store"
    (d / "keys").mkdir(parents=True)
    (d / "keys" / "fleet.pub").write_bytes(factory.key.public.read_bytes())
    return d


MakeStore = Callable[[], Path]
