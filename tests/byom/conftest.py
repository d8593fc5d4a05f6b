"""Models shaped like published third-party ones, built once per session (no downloads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.byom import models


@dataclass(frozen=True)
class Byom:
    root: Path
    detector: Path
    segmenter: Path
    vad: Path
    cnn: Path
    images: Path  # x: [n, 16, 16, 3] in [0, 1)
    vad_inputs: Path  # input [n, 16], state [n, 2, 1, 8]
    key: Path


@pytest.fixture(scope="session")
def byom(tmp_path_factory: pytest.TempPathFactory) -> Byom:
    from edge_sdk.bundle.signing import new_key_pair

    root = tmp_path_factory.mktemp("byom")
    rng = np.random.default_rng(0)
    np.savez(root / "images.npz", x=rng.random((6, 16, 16, 3), dtype=np.float32))
    np.savez(root / "vad_inputs.npz", input=rng.normal(size=(5, 16)).astype(np.float32),
             state=np.zeros((5, 2, 1, 8), np.float32))
    return Byom(
        root=root,
        detector=models.detector_tflite(root / "detector.tflite"),
        segmenter=models.segmenter_tflite(root / "segmenter.tflite"),
        vad=models.stateful_onnx(root / "vad.onnx"),
        cnn=models.constant_cnn_onnx(root / "cnn.onnx"),
        images=root / "images.npz",
        vad_inputs=root / "vad_inputs.npz",
        key=new_key_pair(root / "fleet-key").private,
    )
