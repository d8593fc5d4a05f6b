"""The runtime contract: load a model file, describe its tensors, run a batch.

A backend is one file in this package with one class; the registry in ``__init__``
names it. The contract is deliberately small: ``inputs``, ``outputs`` and ``run``.
A backend may also offer the one-input pair ``feed(tensor, i)`` (set the input, in
any memory layout, run, return output ``i``) and ``fetch(j)`` (another output of the
same run): the engine's one-reading path uses it to read only the outputs it needs
(a cascade stage's features only for rows that go on).
:func:`feeder` gives that pair for any backend, over ``run`` when it has none.
Quantization of inputs and dequantization of outputs is done above the backend, from
the specs the backend reports, so every backend behaves the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from device_agent.protocol.manifest import ModelFormat, TensorSpec


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run a model.

    ``threads``: the runtime's thread count (LiteRT: XNNPACK's threads too).
    ``providers``: ONNX Runtime execution providers in order of preference, short names
    (``tensorrt``, ``cuda``, ``openvino``, ``cpu``) or ONNX Runtime's own; those not
    installed here are skipped with a logged reason, and CPU is always the last resort.
    ``xnnpack``: LiteRT's default CPU delegate; False turns it off for comparison.
    ``delegate``: a LiteRT external delegate library (Coral Edge TPU, Hailo, vendor NPU
    delegates) with its ``delegate_options``; one that fails to load is logged and the
    model runs on the CPU.
    """

    threads: int | None = None
    providers: tuple[str, ...] = ("cpu",)
    xnnpack: bool = True
    delegate: str | None = None
    delegate_options: tuple[tuple[str, str], ...] = ()


class Runtime(Protocol):
    """A loaded model. ``run`` takes and returns tensors in the model's own dtypes.
    ``accelerator`` names what runs it (``cpu``, ``xnnpack``, ``cuda``, ``delegate:NAME``)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    accelerator: str

    def run(self, tensors: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One batch per input, in the model's dtypes → every output, in the model's order."""


class Backend(Protocol):
    """A way to load files of one format. ``load`` raises on a file it cannot parse."""

    name: str
    format: ModelFormat

    def load(self, path: Path, options: RuntimeOptions) -> Runtime:
        """Open ``path`` as ``options`` ask; raises on a file this backend cannot parse."""


Feed = Callable[[np.ndarray, int], np.ndarray]
Fetch = Callable[[int], np.ndarray]


def feeder(runtime: Runtime) -> tuple[Feed, Fetch]:
    """``(feed, fetch)`` for one-input calls: the backend's own pair, else one over ``run``."""
    feed, fetch = getattr(runtime, "feed", None), getattr(runtime, "fetch", None)
    if feed is not None and fetch is not None:
        return feed, fetch
    last: list[np.ndarray] = []

    def run_one(tensor: np.ndarray, i: int) -> np.ndarray:
        last[:] = runtime.run([np.ascontiguousarray(tensor)])
        return last[i]

    return run_one, last.__getitem__
