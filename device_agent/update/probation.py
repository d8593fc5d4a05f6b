"""Probation after a switch: does the new model behave as well as the one it replaced?

Pure policy. :class:`ProbationWindow` summarises what a model did over a stretch of serving
(inferences, errors, mean confidence, exits per stage); :func:`judge` compares the new
model's window to the previous model's and says ``pass``, ``wait`` (too few samples)
or ``regressed`` with the reason. :class:`WindowCounter` is the serve-loop observer
that fills a window; the agent rolls back through ``ModelStore.rollback`` on a regression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from device_agent.sinks.base import Result
from device_agent.sources.base import Reading


class Verdict(str, Enum):
    """What :func:`judge` decides: keep the new model, wait for samples, or roll back."""

    PASS = "pass"
    WAIT = "wait"
    REGRESSED = "regressed"


@dataclass(frozen=True, kw_only=True)
class ProbationPolicy:
    """How much worse than the previous model the new one may be."""

    min_samples: int = 200
    max_error_rate_increase: float = 0.02  # absolute: 0.01 → 0.03 is a regression
    max_confidence_drop: float = 0.10  # absolute drop in mean top-1 confidence
    max_exit_rate_shift: float = 0.15  # absolute change in any stage's exit share


@dataclass(frozen=True)
class ProbationWindow:
    """What one model did while serving."""

    inferences: int
    errors: int
    confidence_sum: float
    exits: tuple[tuple[int, int], ...] = ()  # (stage, count)

    @property
    def total(self) -> int:
        """Readings seen, served or failed: the error rate's denominator."""
        return self.inferences + self.errors

    @property
    def error_rate(self) -> float:
        """Failed readings per reading seen; 0 for an empty window."""
        return self.errors / self.total if self.total else 0.0

    @property
    def mean_confidence(self) -> float:
        """Mean top-1 confidence over served readings; 0 when none was served."""
        return self.confidence_sum / self.inferences if self.inferences else 0.0

    def exit_rate(self, stage: int) -> float:
        """Share of served readings answered at ``stage``; 0 when none was served."""
        return dict(self.exits).get(stage, 0) / self.inferences if self.inferences else 0.0


@dataclass(frozen=True)
class Judgement:
    """A verdict with its reason, which the agent logs and reports on a rollback."""

    verdict: Verdict
    reason: str


def judge(previous: ProbationWindow, new: ProbationWindow, policy: ProbationPolicy) -> Judgement:
    """Compare the new model's window to the previous model's."""
    if new.total < policy.min_samples:
        return Judgement(Verdict.WAIT, f"{new.total} of {policy.min_samples} samples seen")
    if new.error_rate - previous.error_rate > policy.max_error_rate_increase:
        return Judgement(
            Verdict.REGRESSED,
            f"error rate rose from {previous.error_rate:.3f} to {new.error_rate:.3f}",
        )
    if previous.mean_confidence - new.mean_confidence > policy.max_confidence_drop:
        return Judgement(
            Verdict.REGRESSED,
            f"mean confidence fell from {previous.mean_confidence:.3f} to {new.mean_confidence:.3f}",
        )
    stages = {s for s, _ in previous.exits} | {s for s, _ in new.exits}
    for st in sorted(stages):
        shift = abs(new.exit_rate(st) - previous.exit_rate(st))
        if shift > policy.max_exit_rate_shift:
            return Judgement(
                Verdict.REGRESSED,
                f"exit rate of stage {st} moved from {previous.exit_rate(st):.3f} "
                f"to {new.exit_rate(st):.3f}",
            )
    return Judgement(Verdict.PASS, f"no regression over {new.total} samples")


@dataclass
class WindowCounter:
    """A serve-loop observer that counts one model's window."""

    inferences: int = 0
    errors: int = 0
    confidence_sum: float = 0.0
    exits: dict[int, int] = field(default_factory=dict)

    def on_result(self, result: Result) -> None:
        """Count a served result, its confidence and its exit stage."""
        self.inferences += 1
        self.confidence_sum += result.confidence
        self.exits[result.stage] = self.exits.get(result.stage, 0) + 1

    def on_error(self, reading: Reading, reason: str) -> None:
        """Count a failed reading (logging its reason is the serve loop's job)."""
        self.errors += 1

    def window(self) -> ProbationWindow:
        """The counts so far as a frozen window for :func:`judge`."""
        return ProbationWindow(self.inferences, self.errors, self.confidence_sum, tuple(sorted(self.exits.items())))
