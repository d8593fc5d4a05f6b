"""The early-exit policy: pure math deciding which rows of a batch stop at a stage.

A cascade stage ``k`` that has a head produces class probabilities ``p`` for each
row. Its *confidence score* is, by criterion:

- ``max_prob``: ``max(p)``;
- ``entropy``:  ``1 - H(p) / ln(C)`` (1 for a one-hot answer, 0 for a uniform one).

A row exits at stage ``k`` when its score is **strictly greater** than the stage's
threshold, so a threshold of ``1.0`` never exits (the row goes on to the last stage)
and ``0.0`` exits every row that is not exactly uniform. Thresholds live in ``[0, 1]``
for both criteria; anything else is refused.

**One score, one comparison.** The score is computed in float32 from the stage's
float32 output by :func:`scores` (softmax of logits, then the criterion), whether a row
comes alone or in a batch, and compared with the threshold in float64
(:func:`exits`): a float32 comparison would round the threshold onto the float32 grid,
where observed scores live. Host calibration places thresholds *between* observed
scores and off the float32 grid (:func:`between`), so no float32 score can ever equal
one: a row cannot exit on one path and go on along the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from device_agent.errors import BundleError, EdgeError
from device_agent.protocol.manifest import ExitStage


class Criterion(str, Enum):
    """How confident a head must be, computed from its probabilities."""

    MAX_PROB = "max_prob"
    ENTROPY = "entropy"


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in the dtype of ``logits`` (float32 on every serving path)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _max_prob(p: np.ndarray) -> np.ndarray:
    return p.max(axis=-1).astype(np.float32, copy=False)


def _entropy_score(p: np.ndarray) -> np.ndarray:
    c = p.shape[-1]
    if c < 2:
        return np.ones(p.shape[:-1], dtype=np.float32)
    q = np.clip(p, 1e-12, 1.0)
    h = -(q * np.log(q)).sum(axis=-1)
    return (1.0 - h / np.log(c)).astype(np.float32)


SCORES: dict[Criterion, Callable[[np.ndarray], np.ndarray]] = {
    Criterion.MAX_PROB: _max_prob,
    Criterion.ENTROPY: _entropy_score,
}


def confidence(p: np.ndarray, criterion: Criterion) -> np.ndarray:
    """Per-row float32 confidence score in ``[0, 1]`` of probabilities ``p`` (rows on axis 0)."""
    return SCORES[criterion](p)


def scores(out: np.ndarray, criterion: Criterion, *, probabilities: bool) -> np.ndarray:
    """The exit score of each row of a stage's output ``out`` (rows on axis 0): the one
    computation the batched and the one-reading paths share (float32 throughout)."""
    z = np.asarray(out, dtype=np.float32)
    return confidence(z if probabilities else softmax(z), criterion)


def exits(score: np.ndarray, threshold: float) -> np.ndarray:
    """Which float32 ``score`` values exit: strictly above ``threshold``, compared in float64."""
    return np.asarray(score, dtype=np.float64) > threshold


def between(lower: float, upper: float) -> float:
    """A threshold strictly between two observed scores ``lower < upper`` and on no float32
    value, so rows scoring ``lower`` go on and rows scoring ``upper`` exit, on every path
    (a float32 score can never tie with it)."""
    return off_grid((float(lower) + float(upper)) / 2.0)


def off_grid(t: float) -> float:
    """``t``, or the next float64 above it when ``t`` is a float32 value (pure).

    Nothing that exits or goes on changes for float32 scores: none lies in between.
    """
    t = float(t)
    if 0.0 <= t < 1.0 and float(np.float32(t)) == t:
        return float(np.nextafter(t, 2.0))
    return t


@dataclass(frozen=True)
class ExitRule:
    """Stop at ``stage`` when the confidence under ``criterion`` exceeds ``threshold``."""

    stage: int
    threshold: float
    criterion: Criterion = Criterion.MAX_PROB

    def exits(self, p: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows of probabilities ``p`` that stop here."""
        return exits(confidence(p, self.criterion), self.threshold)


def check_threshold(value: float, *, what: str) -> float:
    """A threshold must be a number in ``[0, 1]``; anything else is refused."""
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise EdgeError(f"{what}: threshold must be in [0, 1], got {value!r}")
    return float(value)


def rules_from_manifest(exits: Sequence[ExitStage], n_stages: int) -> dict[int, ExitRule]:
    """Validate the manifest's exits against a cascade of ``n_stages`` model files.

    Only stages that have a head (all but the last) can carry an exit; the last
    stage always answers.
    """
    rules: dict[int, ExitRule] = {}
    for e in exits:
        if not 0 <= e.index < n_stages - 1:
            raise BundleError(
                f"manifest.json: exit {e.index} does not fit a cascade of {n_stages} stage(s); "
                f"exits must name stages 0..{n_stages - 2} (the last stage always answers)"
            )
        if e.index in rules:
            raise BundleError(f"manifest.json: exit {e.index} is listed twice")
        try:
            crit = Criterion(e.criterion)
        except ValueError:
            raise BundleError(
                f"manifest.json: exit {e.index} criterion {e.criterion!r} is not one of "
                f"{', '.join(c.value for c in Criterion)}"
            ) from None
        thr = check_threshold(e.threshold, what=f"manifest.json exit {e.index}")
        rules[e.index] = ExitRule(stage=e.index, threshold=thr, criterion=crit)
    return rules


def override(
    rules: Mapping[int, ExitRule], thresholds: Mapping[int | None, float], n_stages: int
) -> dict[int, ExitRule]:
    """Apply run-time thresholds: key ``None`` sets every exit, an int sets one stage.

    A stage with a head but no manifest exit gains one (criterion ``max_prob``).
    """
    out = dict(rules)
    everyone = thresholds.get(None)
    if everyone is not None:
        thr = check_threshold(everyone, what="--exit-threshold")
        heads = range(n_stages - 1)
        out = {k: _with(out.get(k), k, thr) for k in heads}
    for k, v in thresholds.items():
        if k is None:
            continue
        if not 0 <= k < n_stages - 1:
            raise EdgeError(
                f"--exit-threshold {k}:{v}: stage {k} has no exit; this cascade has exits "
                f"at stages 0..{n_stages - 2}"
                if n_stages > 1
                else f"--exit-threshold {k}:{v}: this model has a single stage and no exits"
            )
        out[k] = _with(out.get(k), k, check_threshold(v, what=f"--exit-threshold {k}"))
    return out


def _with(rule: ExitRule | None, stage: int, thr: float) -> ExitRule:
    crit = rule.criterion if rule is not None else Criterion.MAX_PROB
    return ExitRule(stage=stage, threshold=thr, criterion=crit)


def parse_threshold_options(values: Sequence[str]) -> dict[int | None, float]:
    """``["0.9"]`` → every exit at 0.9; ``["0:0.8", "1:0.95"]`` → per stage."""
    out: dict[int | None, float] = {}
    for v in values:
        stage, sep, thr = v.partition(":")
        try:
            key = int(stage) if sep else None
            value = float(thr if sep else stage)
        except ValueError:
            raise EdgeError(
                f"--exit-threshold {v!r}: expected a number like 0.9 or STAGE:NUMBER like 0:0.9"
            ) from None
        out[key] = check_threshold(value, what="--exit-threshold")
    return out


def cascade_decisions(
    stage_probs: Sequence[np.ndarray], rules: Mapping[int, ExitRule]
) -> tuple[np.ndarray, np.ndarray]:
    """Offline cascade over precomputed probabilities of every stage (host calibration).

    ``stage_probs[k]`` holds stage ``k``'s probabilities for all rows. Returns, per
    row, the stage it exits at and the predicted class there.
    """
    n = stage_probs[0].shape[0]
    last = len(stage_probs) - 1
    stage = np.full(n, last, dtype=np.int64)
    open_ = np.ones(n, dtype=bool)
    for k in range(last):
        rule = rules.get(k)
        if rule is None:
            continue
        hit = open_ & rule.exits(stage_probs[k])
        stage[hit] = k
        open_ &= ~hit
    pred = np.stack([p.argmax(axis=-1) for p in stage_probs])[stage, np.arange(n)]
    return stage, pred
