"""int8 post-training quantization: the typed options shared by both backends and the
remedy search that runs when accuracy drops more than the budget allows.

The backends (``tflite``, ``onnx`` beside this module) each implement :class:`Exporter`;
the search here is pure: it only calls the ``evaluate`` function it is given.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Protocol

from device_agent.errors import EdgeError
from device_agent.protocol.manifest import ModelFormat
from edge_sdk.model.data import Dataset
from edge_sdk.model.kind import Model
from edge_sdk.passes.base import Progress


class Calibration(str, Enum):
    """How activation ranges are chosen from the calibration data."""

    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"


@dataclass(frozen=True, kw_only=True)
class QuantizeConfig:
    """Options of one int8 conversion.

    ``keep_float`` names layers (backend-specific node names) left in float32; it is
    filled by the remedy search, rarely by hand.
    """

    samples: int = 200
    calibration: Calibration = Calibration.MINMAX
    per_channel: bool = True
    keep_float: tuple[str, ...] = ()

    def describe(self) -> str:
        """The options in one line, for the report and the manifest."""
        parts = [f"calibration={self.calibration.value}",
                 f"per_channel={'on' if self.per_channel else 'off'}", f"samples={self.samples}"]
        if self.keep_float:
            parts.append(f"float layers={list(self.keep_float)}")
        return ", ".join(parts)


@contextlib.contextmanager
def converting(fmt: ModelFormat, what: str) -> Iterator[None]:
    """A converter's own exception (TensorFlow, tf2onnx, ONNX Runtime) becomes one
    :class:`EdgeError` line naming the target and the step."""
    try:
        yield
    except EdgeError:
        raise
    except Exception as e:  # each converter raises its own types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise EdgeError(f"{fmt.value} {what} failed: {type(e).__name__}: {first}") from e


class Exporter(Protocol):
    """Turns a float model into one target's float and int8 files (bytes)."""

    format: ModelFormat
    calibrations: tuple[Calibration, ...]

    def export_float(self, model: Model, workdir: Path) -> bytes:
        """The model as this target's float32 file."""

    def quantize(self, model: Model, cfg: QuantizeConfig, calib: Dataset, workdir: Path) -> bytes:
        """The model as this target's int8 file, calibrated on ``calib`` as ``cfg`` says."""

    def sensitive_layers(
        self, model: Model, cfg: QuantizeConfig, calib: Dataset, workdir: Path,
        score: Callable[[bytes], float],
    ) -> list[str]:
        """Layer names, most hurt by int8 first: what the remedy search may keep float (``score`` rates a file)."""


@dataclass(frozen=True)
class Attempt:
    """One tried conversion: what was changed, why, and what it measured."""

    remedy: str
    reason: str
    config: QuantizeConfig
    accuracy: float
    drop: float


@dataclass(frozen=True)
class Decision:
    """The chosen attempt and every attempt made to get there."""

    chosen: Attempt
    attempts: tuple[Attempt, ...]
    data: bytes
    budget: float
    stopped: str | None = None  # why the search ended before trying every remedy

    @property
    def within_budget(self) -> bool:
        """Whether the chosen attempt's drop is within the accuracy budget."""
        return self.chosen.drop <= self.budget


MAX_FLOAT_LAYERS = 3


def candidates(
    base: QuantizeConfig, supported: tuple[Calibration, ...], sensitive: Callable[[], list[str]]
) -> Iterator[tuple[str, str, QuantizeConfig]]:
    """The remedies in order: as asked, per-channel weights, other calibration methods,
    then the 1..3 most sensitive layers kept in float (with the best settings so far
    being the asked ones plus per-channel)."""
    yield "none", "the requested settings", base
    if not base.per_channel:
        yield ("per-channel", "per-channel weight scales fit each filter's own range",
               replace(base, per_channel=True))
    for c in supported:
        if c != base.calibration:
            yield (f"calibration={c.value}", f"{c.value} calibration clips outlier activations"
                   if c != Calibration.MINMAX else "min-max keeps the full activation range",
                   replace(base, per_channel=True, calibration=c))
    layers = sensitive()
    for k in range(1, min(MAX_FLOAT_LAYERS, len(layers)) + 1):
        yield (f"float-layers={k}", f"keep the {k} most sensitive layer(s) in float: {layers[:k]}",
               replace(base, per_channel=True, keep_float=tuple(layers[:k])))


def search(
    base: QuantizeConfig,
    *,
    supported: tuple[Calibration, ...],
    convert: Callable[[QuantizeConfig], bytes],
    evaluate: Callable[[bytes], float],
    sensitive: Callable[[], list[str]],
    reference: float,
    max_drop: float,
    progress: Progress,
    time_budget_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Decision:
    """Try remedies in order until the accuracy drop (points) is within ``max_drop``;
    if none is, the attempt with the smallest drop is chosen (the caller decides).
    ``time_budget_s`` stops the search once that much time is spent (after at least one
    attempt): the decision then says so in ``stopped``."""
    attempts: list[Attempt] = []
    best: tuple[Attempt, bytes] | None = None
    start = clock()
    for i, (remedy, reason, cfg) in enumerate(candidates(base, supported, sensitive)):
        if attempts and time_budget_s is not None and clock() - start > time_budget_s:
            assert best is not None
            return Decision(best[0], tuple(attempts), best[1], budget=max_drop,
                            stopped=f"time budget of {time_budget_s:g} s spent")
        progress(f"int8 attempt {i + 1}: {remedy}", 0, 1)
        data = convert(cfg)
        acc = evaluate(data)
        att = Attempt(remedy, reason, cfg, acc, round(reference - acc, 4))
        attempts.append(att)
        if best is None or att.drop < best[0].drop:
            best = (att, data)
        if att.drop <= max_drop:
            return Decision(att, tuple(attempts), data, budget=max_drop)
    assert best is not None
    return Decision(best[0], tuple(attempts), best[1], budget=max_drop)
