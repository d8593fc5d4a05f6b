"""The inference engine: a verified bundle's model(s) behind one ``infer`` call.

The engine turns a batch of raw inputs into :class:`Prediction` rows. The serve loop
(``device_agent.serve``) feeds it and never touches a runtime directly, so caching,
early exit and model swaps slot in here without changing the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device_agent.manifest import Manifest, ModelFormat
from device_agent.runtimes import RuntimeOptions, load_model
from device_agent.runtimes.model import Model


@dataclass(frozen=True)
class Prediction:
    """One input's answer: class index, its label, confidence and the exit stage used."""

    index: int
    label: str
    confidence: float
    stage: int = 0
    cached: bool = False
    output: np.ndarray | None = None


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def as_probabilities(out: np.ndarray) -> np.ndarray:
    """Outputs that already sum to 1 are probabilities; anything else is treated as logits."""
    # min/abs-max instead of np.all/np.allclose: same test, but allclose alone cost ~30 µs
    # per call, more than a small int8 model's whole invoke (benchmarks/run.py).
    if out.ndim == 2 and out.size and out.min() >= 0 and np.abs(out.sum(axis=1) - 1.0).max() <= 1e-2:
        return out
    return softmax(out.astype(np.float32))


class Engine:
    """Runs one model (stage 0) of a bundle, or a bare model file."""

    def __init__(self, model: Model, *, labels: tuple[str, ...] = (), manifest: Manifest | None = None):
        self.model = model
        self.labels = labels
        self.manifest = manifest

    @classmethod
    def from_bundle_dir(
        cls, root: Path, manifest: Manifest, *, runtime: str | None = None,
        options: RuntimeOptions | None = None, prefer: ModelFormat | None = None,
    ) -> Engine:
        fmt = prefer if prefer in manifest.targets else manifest.targets[0]
        first = manifest.stage_files(fmt)[0]
        model = load_model(root / first.path, runtime=runtime, options=options)
        return cls(model, labels=manifest.labels, manifest=manifest)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.model.inputs[0].shape

    def infer(self, batch: np.ndarray) -> list[Prediction]:
        """Run a float batch (first axis = samples) and return one prediction per row."""
        out = self.model.predict1(batch)
        probs = as_probabilities(out.reshape(len(batch), -1))
        idx = probs.argmax(axis=1)
        return [
            Prediction(
                index=int(i),
                label=self.labels[i] if i < len(self.labels) else str(int(i)),
                confidence=float(p[i]),
                output=o,
            )
            for i, p, o in zip(idx, probs, out, strict=True)
        ]
