"""Accuracy-budget search: the most compressive prune + share recipe within ``max_drop`` points.

1. Sensitivity: each channel group of the model is pruned alone at each ratio of a
   ladder, and the validation accuracy drop is measured.
2. Each group gets the largest ratio whose drop alone stays within the budget; the
   combination is measured, and while it exceeds the budget the group whose chosen
   step costs most steps down one notch (:func:`pick_ratios`, :func:`back_off`; pure).
3. Weight sharing: the smallest cluster count whose total drop stays within the budget.

Accuracy is top-1 on the validation labels, or agreement with the original model's
top-1 when the data has no labels. Every step is recorded with parameters, MACs and
accuracy so a report can show which step cost what.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device_agent.errors import EdgeError
from edge_sdk.analysis import keras_cost
from edge_sdk.passes.base import PassContext
from edge_sdk.passes.prune import PruneConfig, PrunePass
from edge_sdk.passes.share import ShareConfig, SharePass

Sensitivity = Mapping[str, Mapping[float, float]]  # group -> ratio -> drop (points)


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    max_drop: float = 0.5  # accuracy points
    ratios: tuple[float, ...] = (0.25, 0.5, 0.625, 0.75)
    clusters: tuple[int, ...] = (4, 8, 16, 32, 64)
    share_fine_tune_steps: int = 60

    def __post_init__(self) -> None:
        if self.max_drop < 0:
            raise EdgeError(f"--max-drop must be >= 0 points, got {self.max_drop}")
        if not self.ratios or any(not 0 < r < 1 for r in self.ratios) or list(self.ratios) != sorted(self.ratios):
            raise EdgeError(f"search ratios must be increasing and in (0, 1), got {self.ratios}")


@dataclass(frozen=True)
class SearchStep:
    name: str
    detail: str
    params: int
    macs: int
    accuracy: float
    drop: float


@dataclass(frozen=True)
class SearchResult:
    model: Any
    baseline_accuracy: float
    layer_ratios: tuple[tuple[str, float], ...]
    clusters: int | None
    steps: tuple[SearchStep, ...]
    sensitivity: dict[str, dict[float, float]] = field(default_factory=dict)


# --- pure choices ------------------------------------------------------------------


def pick_ratios(sens: Sensitivity, budget: float) -> dict[str, float]:
    """Per group, the largest ratio whose drop alone is within ``budget`` (0 if none)."""
    return {g: max((r for r, d in by.items() if d <= budget), default=0.0) for g, by in sens.items()}


def back_off(ratios: Mapping[str, float], sens: Sensitivity) -> dict[str, float] | None:
    """Step the costliest group down one notch of its ladder; None when all are at 0."""
    live = {g: r for g, r in ratios.items() if r > 0}
    if not live:
        return None
    worst = max(live, key=lambda g: (sens[g][live[g]], live[g], g))
    lower = [r for r in sorted(sens[worst]) if r < live[worst]]
    return {**ratios, worst: lower[-1] if lower else 0.0}


# --- the measured search -------------------------------------------------------------


@dataclass
class _Evaluator:
    ctx: PassContext
    reference: np.ndarray | None  # the original's top-1 when there are no labels
    baseline: float = 0.0

    def accuracy(self, model: Any) -> float:
        pred = np.argmax(_predict(model, self.ctx.validation.x), axis=-1)
        truth = self.ctx.validation.y if self.ctx.validation.y is not None else self.reference
        return 100.0 * float(np.mean(pred == truth))

    def step(self, name: str, detail: str, model: Any) -> SearchStep:
        acc = self.accuracy(model)
        cost = keras_cost(model)
        return SearchStep(name, detail, cost.params, cost.macs, acc, self.baseline - acc)


def search(model: Any, ctx: PassContext, config: SearchConfig) -> SearchResult:
    """Measure sensitivities, then build the most compressive recipe within the budget."""
    ev = _evaluator(model, ctx)
    base = ev.step("baseline", "float model", model)
    sens = sensitivity(model, ctx, config, ev)
    ratios = pick_ratios(sens, config.max_drop)
    pruned, prune_step = _prune_within(model, ctx, ratios, sens, config, ev)
    if prune_step is None:
        cheapest = min((d, g, r) for g, by in sens.items() for r, d in by.items())
        raise EdgeError(
            f"--max-drop {config.max_drop}: no pruning step stays within the budget; the "
            f"cheapest measured ({cheapest[1]} at {cheapest[2]:.0%}) costs {cheapest[0]:.2f} points"
        )
    steps = [base, prune_step]
    final, k = pruned, None
    for clusters in config.clusters:
        ctx.progress("search: sharing", clusters, config.clusters[-1])
        shared = SharePass(ShareConfig(clusters=clusters, fine_tune_steps=config.share_fine_tune_steps))
        candidate = shared.apply(pruned, ctx).model
        s = ev.step("share", f"{clusters} clusters per kernel", candidate)
        if s.drop <= config.max_drop:
            final, k = candidate, clusters
            steps.append(s)
            break
    return SearchResult(final, base.accuracy, tuple(sorted(ratios.items())), k, tuple(steps),
                        {g: dict(by) for g, by in sens.items()})


def _evaluator(model: Any, ctx: PassContext) -> _Evaluator:
    if len(ctx.validation) == 0:
        raise EdgeError(f"search: the validation split of {ctx.validation.source} is empty")
    ref = None
    if ctx.validation.y is None:
        ref = np.argmax(_predict(model, ctx.validation.x), axis=-1)
    ev = _Evaluator(ctx, ref)
    ev.baseline = ev.accuracy(model)
    return ev


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    # A direct call: predict() traces a new function for every candidate model.
    return np.concatenate([np.asarray(model(x[i : i + 512], training=False)) for i in range(0, len(x), 512)])


def sensitivity(model: Any, ctx: PassContext, config: SearchConfig, ev: _Evaluator) -> dict[str, dict[float, float]]:
    """Accuracy drop (points) of pruning each group alone at each ratio."""
    from edge_sdk.pruning.graph import analyze, nodes_from_keras
    from edge_sdk.pruning.select import groups_of

    nodes, outputs = nodes_from_keras(model)
    groups = [g[0] for g in groups_of(analyze(nodes, outputs))]
    if not groups:
        raise EdgeError(f"search: model {model.name!r} has no prunable layer")
    out: dict[str, dict[float, float]] = {}
    total = len(groups) * len(config.ratios)
    for i, g in enumerate(groups):
        out[g] = {}
        for j, r in enumerate(config.ratios):
            ctx.progress("search: sensitivity", i * len(config.ratios) + j, total)
            pruned = _prune(model, ctx, {g: r})
            out[g][r] = ev.baseline - ev.accuracy(pruned)
    return out


def _prune(model: Any, ctx: PassContext, ratios: Mapping[str, float]) -> Any:
    cfg = PruneConfig(ratio=0.0, layer_ratios=tuple((g, r) for g, r in ratios.items() if r > 0))
    return PrunePass(cfg).apply(model, ctx).model


def _prune_within(
    model: Any, ctx: PassContext, ratios: dict[str, float], sens: Sensitivity, config: SearchConfig,
    ev: _Evaluator,
) -> tuple[Any, SearchStep | None]:
    current: dict[str, float] | None = ratios
    while current is not None and any(r > 0 for r in current.values()):
        pruned = _prune(model, ctx, current)
        detail = ", ".join(f"{g} {r:.0%}" for g, r in sorted(current.items()) if r > 0)
        step = ev.step("prune", detail, pruned)
        if step.drop <= config.max_drop:
            chosen = dict(current)
            ratios.clear()
            ratios.update(chosen)
            return pruned, step
        current = back_off(current, sens)
    ratios.clear()
    return model, None


def format_steps(result: SearchResult) -> str:
    """A plain table of the recipe's steps: which step cost what."""
    rows = ["step      params      MACs  accuracy   drop  detail"]
    for s in result.steps:
        rows.append(f"{s.name:<8}{s.params:>8}{s.macs:>10}{s.accuracy:>9.2f}%{s.drop:>7.2f}  {s.detail}")
    return "\n".join(rows)
