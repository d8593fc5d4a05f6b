"""Honest accuracy: a held-out split the search never sees, and paired drops with an interval.

``edge optimize`` selects (search, int8 remedies, exit thresholds) on a *selection*
split and reports the final figures on a *held-out* split: ``--eval-data`` when given,
else a stratified, seeded part of ``--data`` carved out before anything else looks at
it. The tool cannot know what trained the model: figures from a split of ``--data``
are optimistic when that data trained it, and the report says so.

Everything here is pure (arrays in, values out); the pipeline feeds it predictions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# A 95% two-sided normal quantile.
Z95 = 1.959964
# Held-out baselines at or above this (percent) look like data the model trained on.
NEAR_PERFECT = 99.5


def stratified_split(y: np.ndarray, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (held, rest): ``fraction`` of every class held out, at least one sample of a
    class that has two or more, seeded. Both index arrays are sorted."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = round(len(idx) * fraction)
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        else:
            k = 0
        held.append(idx[:k])
    h = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(y)), h)
    return h, rest


@dataclass(frozen=True)
class PairedDrop:
    """Baseline against optimized on the same samples: the drop in points and in net
    samples (lost minus gained), with a paired 95% interval on the drop."""

    samples: int
    baseline_accuracy: float  # percent
    accuracy: float  # percent
    lost: int  # right before, wrong after
    gained: int  # wrong before, right after
    drop_points: float
    low_points: float  # 95% interval of the drop, in points
    high_points: float

    @property
    def net(self) -> int:
        """Net samples lost (negative: gained)."""
        return self.lost - self.gained

    @property
    def points_per_sample(self) -> float:
        """How many accuracy points one sample is worth on this split."""
        return 100.0 / self.samples if self.samples else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The drop as plain JSON values, with its net samples and points per sample."""
        return {**asdict(self), "net_samples": self.net, "points_per_sample": self.points_per_sample}


def paired_drop(truth: np.ndarray, baseline: np.ndarray, optimized: np.ndarray) -> PairedDrop:
    """The drop from ``baseline`` to ``optimized`` predictions on labels ``truth``.

    The interval is the normal one on the mean of the per-sample differences
    (right before − right after ∈ {-1, 0, 1}): it only counts samples where the two
    models disagree, which is why a paired interval is much tighter than two
    independent accuracies.
    """
    b = np.asarray(baseline) == np.asarray(truth)
    o = np.asarray(optimized) == np.asarray(truth)
    n = len(b)
    d = b.astype(np.float64) - o.astype(np.float64)
    mean = float(d.mean()) if n else 0.0
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return PairedDrop(
        samples=n, baseline_accuracy=_pct(b), accuracy=_pct(o),
        lost=int((b & ~o).sum()), gained=int((~b & o).sum()),
        drop_points=round(100.0 * mean, 4),
        low_points=round(100.0 * (mean - Z95 * se), 4), high_points=round(100.0 * (mean + Z95 * se), 4),
    )


def _pct(correct: np.ndarray) -> float:
    return round(100.0 * float(correct.mean()), 4) if len(correct) else 0.0


@dataclass(frozen=True)
class HeldOut:
    """Where the final figures come from and what they say against the budget."""

    source: str  # "--eval-data PATH" or "split of --data PATH"
    from_data: bool  # True: carved out of --data (optimistic if --data trained the model)
    samples: int
    selection_samples: int
    seed: int
    fraction: float | None  # of --data, when carved out of it
    budget: float  # points
    drops: dict[str, PairedDrop] = field(default_factory=dict)  # per target format
    selection_drops: dict[str, float] = field(default_factory=dict)  # per target, points

    def over_budget(self) -> dict[str, float]:
        """Targets whose held-out drop exceeds the budget (points)."""
        return {f: d.drop_points for f, d in self.drops.items() if d.drop_points > self.budget + 1e-9}

    def warnings(self) -> list[str]:
        """Plain sentences for the report: over budget, optimistic figures, near-perfect baseline."""
        out = []
        for f, d in self.drops.items():
            if d.drop_points > self.budget + 1e-9:
                out.append(f"{f}: the held-out drop {d.drop_points:.2f} points EXCEEDS the budget of "
                           f"{self.budget} points (the selection split said "
                           f"{self.selection_drops.get(f, float('nan')):.2f})")
        if self.selection_samples and 100 / self.selection_samples > self.budget + 1e-9:
            out.append(f"the selection split has {self.selection_samples} samples (one = "
                       f"{100 / self.selection_samples:.2f} points), coarser than the {self.budget}-point "
                       "budget: every choice that lost no sample there looked free, and new data may "
                       "show a loss; give more --data, or --eval-data, for a finer reading")
        if self.from_data:
            out.append(f"accuracy figures come from a split of --data ({self.samples} samples held "
                       "out); they are optimistic if that data trained the model: pass --eval-data "
                       "with data the model never saw")
        base = max((d.baseline_accuracy for d in self.drops.values()), default=0.0)
        if base >= NEAR_PERFECT:
            out.append(f"the baseline scores {base:.2f}% on the held-out split: the model has "
                       "probably seen this data, and drops measured on it understate what new "
                       "data will show")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The held-out figures as the report's JSON records them."""
        return {
            "source": self.source, "from_data": self.from_data, "samples": self.samples,
            "selection_samples": self.selection_samples, "seed": self.seed,
            "fraction": self.fraction, "budget_points": self.budget,
            "drops": {f: d.to_dict() for f, d in self.drops.items()},
            "selection_drop_points": dict(self.selection_drops),
            "over_budget": self.over_budget(), "warnings": self.warnings(),
        }


def drop_line(fmt: str, d: PairedDrop) -> str:
    """One target's held-out figures in a sentence."""
    net = f"{d.net} net sample{'s' if abs(d.net) != 1 else ''} of {d.samples}"
    return (f"{fmt}: held-out accuracy {d.baseline_accuracy:.2f}% -> {d.accuracy:.2f}%, drop "
            f"{d.drop_points:+.2f} points ({net}: {d.lost} lost, {d.gained} gained; "
            f"95% interval {d.low_points:+.2f} .. {d.high_points:+.2f}; one sample = "
            f"{d.points_per_sample:.2f} points)")


def lines(h: HeldOut) -> list[str]:
    """The held-out section as plain lines (terminal and Markdown)."""
    frac = f", {h.fraction:.0%} stratified, seed {h.seed}" if h.fraction is not None else ""
    out = [f"held-out split: {h.source} ({h.samples} samples{frac}); selection split "
           f"{h.selection_samples} samples; budget {h.budget} points"]
    for f, d in h.drops.items():
        sel = h.selection_drops.get(f)
        out.append(drop_line(f, d) + ("" if sel is None else f"; selection split drop {sel:+.2f}"))
    out += [f"warning: {w}" for w in h.warnings()]
    return out
