"""Accuracy-budget search: the most compressive prune (+ distill) + low-rank + share recipe within
``max_drop`` points.

1. Sensitivity: each channel group of the model is pruned alone at each ratio of a
   ladder, and the validation accuracy drop is measured.
2. Each group gets the largest ratio whose drop alone stays within the budget; the
   combination is measured. When it exceeds the budget, distillation from the original
   model is tried first (where recovery makes the difference, on the first candidates);
   otherwise the group whose chosen step costs most steps down one notch
   (:func:`pick_ratios`, :func:`back_off`; pure).
3. Low-rank: the lowest retained SVD energy (of a short ladder) whose factorization of
   the Dense/1×1 Conv layers saves weights with the total drop still within the budget.
4. Weight sharing: the smallest cluster count whose total drop stays within the budget.
   When the factorization left no cluster count within the budget, sharing is tried on
   the model before it, and preferred when it fits: sharing shrinks every kernel, the
   factorization only some.

Accuracy is top-1 on the validation labels, or agreement with the original model's
top-1 when the data has no labels. Every chosen step is kept with its model, so the
recipe (``edge_sdk.recipe.pipeline``) records and measures each step (:func:`plan`) without
running it again. When neither pruning nor sharing fits the budget the search fails
with what was achievable: it never hands back the unchanged model as "optimized".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device_agent.errors import EdgeError
from edge_sdk.model.analysis import keras_cost
from edge_sdk.model.kind import KerasModel
from edge_sdk.passes.base import GraphPass, PassContext, PassOutcome
from edge_sdk.passes.distill.keras import DistillConfig, DistillPass
from edge_sdk.passes.lowrank.keras import LowRankConfig, LowRankPass
from edge_sdk.passes.prune.keras import PruneConfig, PrunePass
from edge_sdk.passes.share.keras import ShareConfig, SharePass

Sensitivity = Mapping[str, Mapping[float, float]]  # group -> ratio -> drop (points)

# Share of the total budget kept for int8 quantization when the recipe ends in --int8.
INT8_RESERVE = 0.4


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """The budget and the ladders (prune ratios, cluster counts, SVD energies) the float search tries."""

    max_drop: float = 0.5  # accuracy points, for the float steps this search chooses
    ratios: tuple[float, ...] = (0.25, 0.5, 0.625, 0.75)
    clusters: tuple[int, ...] = (4, 8, 16, 32, 64)
    lowrank: tuple[float, ...] = (0.5, 0.7, 0.9)  # SVD energies, most compressive first; () skips
    share_fine_tune_steps: int = 60
    distill: DistillConfig | None = field(default_factory=lambda: DistillConfig(epochs=10, patience=2))
    distill_tries: int = 2  # candidates (most compressive first) that get a distillation try

    def __post_init__(self) -> None:
        if self.max_drop < 0:
            raise EdgeError(f"--max-drop must be >= 0 points, got {self.max_drop}")
        if not self.ratios or any(not 0 < r < 1 for r in self.ratios) or list(self.ratios) != sorted(self.ratios):
            raise EdgeError(f"search ratios must be increasing and in (0, 1), got {self.ratios}")
        if any(not 0 < e <= 1 for e in self.lowrank) or list(self.lowrank) != sorted(self.lowrank):
            raise EdgeError(f"search low-rank energies must be increasing and in (0, 1], got {self.lowrank}")

    def describe(self) -> dict[str, Any]:
        """The settings as the report records them."""
        return {"float_budget_points": self.max_drop, "ratios": list(self.ratios),
                "clusters": list(self.clusters), "lowrank_energies": list(self.lowrank),
                "distill": self.distill is not None}


def float_budget(max_drop: float, int8: bool) -> float:
    """The part of the total ``--max-drop`` the float steps may spend (pure)."""
    return round(max_drop * (1 - INT8_RESERVE), 6) if int8 else max_drop


@dataclass(frozen=True)
class SearchStep:
    """One step the search took: what it did, the cost after it and its accuracy drop."""

    name: str
    detail: str
    params: int
    macs: int
    accuracy: float
    drop: float


@dataclass(frozen=True)
class SearchResult:
    """The searched model, each step on the way there and the per-group sensitivities."""

    model: KerasModel
    baseline_accuracy: float
    layer_ratios: tuple[tuple[str, float], ...]
    clusters: int | None
    steps: tuple[SearchStep, ...]
    sensitivity: dict[str, dict[float, float]] = field(default_factory=dict)
    models: tuple[Any, ...] = ()  # the model after each of ``steps[1:]``

    def summary(self) -> dict[str, Any]:
        """What the report records about the search: the choice and the sensitivities."""
        return {
            "baseline_accuracy": self.baseline_accuracy,
            "layer_ratios": dict(self.layer_ratios),
            "clusters": self.clusters,
            "chosen": [{"step": s.name, "detail": s.detail, "accuracy": s.accuracy, "drop_points": s.drop}
                       for s in self.steps[1:]],
            "sensitivity_drop_points": {g: {str(r): d for r, d in by.items()} for g, by in self.sensitivity.items()},
        }


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

    def accuracy(self, model: KerasModel) -> float:
        pred = np.argmax(_predict(model, self.ctx.validation.x), axis=-1)
        truth = self.ctx.validation.y if self.ctx.validation.y is not None else self.reference
        return 100.0 * float(np.mean(pred == truth))

    def step(self, name: str, detail: str, model: KerasModel) -> SearchStep:
        acc = self.accuracy(model)
        cost = keras_cost(model)
        return SearchStep(name, detail, cost.params, cost.macs, acc, self.baseline - acc)


Chosen = list[tuple[SearchStep, Any]]


def search(model: KerasModel, ctx: PassContext, config: SearchConfig) -> SearchResult:
    """Measure sensitivities, then build the most compressive recipe within the budget."""
    if not hasattr(model, "layers"):
        raise EdgeError("--max-drop search needs a Keras model (the ONNX path is post-training: "
                        "give --prune/--share explicitly)")
    ev = _evaluator(model, ctx)
    base = ev.step("baseline", "float model", model)
    sens = sensitivity(model, ctx, config, ev)
    ratios = pick_ratios(sens, config.max_drop)
    chosen = _prune_within(model, _with_teacher(ctx, model), ratios, sens, config, ev)
    current = chosen[-1][1] if chosen else model
    low = _lowrank_within(current, ctx, config, ev)
    shared, tried = _share_within(low[-1][1] if low else current, ctx, config, ev)
    if low and not shared:
        retry, tried = _share_within(current, ctx, config, ev)
        low, shared = ([], retry) if retry else (low, shared)
    chosen += low + shared
    if not chosen:
        raise EdgeError(_nothing_met(config, sens, tried))
    k = int(shared[0][0].detail.split()[0]) if shared else None
    return SearchResult(chosen[-1][1], base.accuracy, tuple(sorted(ratios.items())), k,
                        (base, *(s for s, _ in chosen)), {g: dict(by) for g, by in sens.items()},
                        tuple(m for _, m in chosen))


def _nothing_met(config: SearchConfig, sens: Sensitivity, tried: dict[int, float]) -> str:
    prune = min((d, g, r) for g, by in sens.items() for r, d in by.items())
    share = min(((d, k) for k, d in tried.items()), default=None)
    best_share = f"; sharing at {share[1]} clusters costs {share[0]:.2f}" if share else ""
    return (f"--max-drop {config.max_drop}: nothing met the budget; the cheapest pruning "
            f"({prune[1]} at {prune[2]:.0%}) costs {prune[0]:.2f} points{best_share}. "
            "The model was not optimized: raise --max-drop or choose steps with --prune/--share")


def _with_teacher(ctx: PassContext, model: KerasModel) -> PassContext:
    from dataclasses import replace

    return ctx if ctx.teacher is not None else replace(ctx, teacher=model)


def _evaluator(model: KerasModel, ctx: PassContext) -> _Evaluator:
    if len(ctx.validation) == 0:
        raise EdgeError(f"search: the validation split of {ctx.validation.source} is empty")
    ref = None
    if ctx.validation.y is None:
        ref = np.argmax(_predict(model, ctx.validation.x), axis=-1)
    ev = _Evaluator(ctx, ref)
    ev.baseline = ev.accuracy(model)
    return ev


def _predict(model: KerasModel, x: np.ndarray) -> np.ndarray:
    # A direct call: predict() traces a new function for every candidate model.
    return np.concatenate([np.asarray(model(x[i : i + 512], training=False)) for i in range(0, len(x), 512)])


def sensitivity(model: KerasModel, ctx: PassContext, config: SearchConfig,
                ev: _Evaluator) -> dict[str, dict[float, float]]:
    """Accuracy drop (points) of pruning each group alone at each ratio."""
    from edge_sdk.core.channel_graph import analyze
    from edge_sdk.core.select import groups_of
    from edge_sdk.passes.prune.keras_graph import nodes_from_keras

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


def _prune(model: KerasModel, ctx: PassContext, ratios: Mapping[str, float]) -> Any:
    cfg = PruneConfig(ratio=0.0, layer_ratios=tuple((g, r) for g, r in ratios.items() if r > 0))
    return PrunePass(cfg).apply(model, ctx).model


def _prune_within(
    model: KerasModel, ctx: PassContext, ratios: dict[str, float], sens: Sensitivity, config: SearchConfig,
    ev: _Evaluator,
) -> Chosen:
    """Prune (then, for the first candidates, distill) down the ladder until within budget."""
    current: dict[str, float] | None = ratios
    tries = config.distill_tries if config.distill is not None else 0
    while current is not None and any(r > 0 for r in current.values()):
        pruned = _prune(model, ctx, current)
        detail = ", ".join(f"{g} {r:.0%}" for g, r in sorted(current.items()) if r > 0)
        step = ev.step("prune", detail, pruned)
        chosen = _fits(step, pruned, ctx, config, ev, tries > 0)
        if chosen:
            picked = dict(current)  # ``current`` may be ``ratios`` itself
            ratios.clear()
            ratios.update(picked)
            return chosen
        tries -= 1
        current = back_off(current, sens)
    ratios.clear()
    return []


def _fits(step: SearchStep, pruned: Any, ctx: PassContext, config: SearchConfig, ev: _Evaluator,
          distill: bool) -> Chosen:
    if step.drop <= config.max_drop:
        return [(step, pruned)]
    if not distill or config.distill is None:
        return []
    ctx.progress("search: distilling a candidate", 0, 1)
    student = DistillPass(config.distill).apply(pruned, ctx).model
    d = ev.step("distill", f"T={config.distill.temperature}, alpha={config.distill.alpha}", student)
    return [(step, pruned), (d, student)] if d.drop <= config.max_drop else []


def _lowrank_within(model: KerasModel, ctx: PassContext, config: SearchConfig, ev: _Evaluator) -> Chosen:
    """The lowest energy of ``config.lowrank`` whose factorization saves weights within budget."""
    for i, energy in enumerate(config.lowrank):
        ctx.progress("search: low-rank", i, len(config.lowrank))
        try:
            out = LowRankPass(LowRankConfig(energy=energy)).apply(model, ctx)
        except EdgeError:  # no Dense or 1x1 Conv layer
            return []
        if not out.changes["factorized_layers"]:
            continue
        s = ev.step("lowrank", f"{energy:.0%} of SVD energy, ranks {out.changes['ranks']}", out.model)
        if s.drop <= config.max_drop:
            return [(s, out.model)]
    return []


def _share_within(model: KerasModel, ctx: PassContext, config: SearchConfig,
                  ev: _Evaluator) -> tuple[Chosen, dict[int, float]]:
    """The smallest cluster count within budget, and every count's measured drop."""
    tried: dict[int, float] = {}
    for clusters in config.clusters:
        ctx.progress("search: sharing", clusters, config.clusters[-1])
        shared = SharePass(ShareConfig(clusters=clusters, fine_tune_steps=config.share_fine_tune_steps))
        candidate = shared.apply(model, ctx).model
        s = ev.step("share", f"{clusters} clusters per kernel", candidate)
        tried[clusters] = s.drop
        if s.drop <= config.max_drop:
            return [(s, candidate)], tried
    return [], tried


@dataclass
class ChosenStep:
    """One step of a searched recipe, replayed: its model was built and measured by the
    search, so the recipe records it without running it again."""

    name: str
    model: KerasModel
    detail: str

    def apply(self, model: KerasModel, ctx: PassContext) -> PassOutcome:
        """The model the search already built for this step (the input model is not used)."""
        return PassOutcome(self.model, {"search chose": self.detail})


def plan(model: KerasModel, ctx: PassContext, config: SearchConfig) -> tuple[tuple[GraphPass, ...], SearchResult]:
    """The searched recipe as passes the pipeline runs (and measures) in order."""
    res = search(model, ctx, config)
    steps = tuple(ChosenStep(s.name, m, s.detail) for s, m in zip(res.steps[1:], res.models, strict=True))
    return steps, res


def format_steps(result: SearchResult) -> str:
    """A plain table of the recipe's steps: which step cost what."""
    rows = ["step      params      MACs  accuracy   drop  detail"]
    for s in result.steps:
        rows.append(f"{s.name:<8}{s.params:>8}{s.macs:>10}{s.accuracy:>9.2f}%{s.drop:>7.2f}  {s.detail}")
    return "\n".join(rows)


def from_flags(search: bool | None, max_drop: float | None, chosen_steps: bool, int8: bool) -> SearchConfig | None:
    """The search ``edge optimize`` runs, if any: ``--search`` explicitly, or by default
    when ``--max-drop`` is given and none of ``--prune/--share/--lowrank/--early-exit`` is."""
    if search is None:
        search = max_drop is not None and not chosen_steps
    if not search:
        return None
    if chosen_steps:
        raise EdgeError("--search chooses pruning and sharing itself; leave out --prune/--share/--lowrank/"
                        "--early-exit (or pass --no-search to run exactly those steps)")
    total = 1.0 if max_drop is None else max_drop
    if total < 0:
        raise EdgeError(f"--max-drop must be >= 0 points, got {total}")
    return SearchConfig(max_drop=float_budget(total, int8))
