"""The ``--max-drop`` search over shipped forms: every candidate is judged as it ships.

A candidate is a prune ratio (recovered by distillation from the input model, so
ratios are chosen *after* recovery, not from one-shot sensitivity) and a weight-sharing
cluster count, then int8 and the bundle's member compression. Each one is exported,
quantized, run through the device runtime on the selection split and compressed: its
accuracy, bytes and latency are measured on what would ship, not estimated from an
intermediate float model. The search keeps every candidate, the Pareto front over
(bytes, accuracy, latency), and picks the best point for the objective among those
within the budget and the hard limits.

The grid is walked so that little is wasted: ratios from mild to aggressive, cluster
counts from none to few; a cluster count that breaks the budget by a margin ends that
ratio's row (fewer clusters only lose more), and two ratios in a row with no candidate
within it end the walk (one may be noise of a few samples). A second family of rows
prunes only the units of the hidden Dense layers, convolutions untouched: those layers
hold most of the bytes of a LeNet-style model and are the most redundant (Han et al.,
2015, kept 8% of LeNet-5's first dense layer), while every convolution channel pruned
costs features. On the digits LeNet-5, 90% of the dense units with 16 clusters measured
37.6 KB stored at a 0.57-point selection drop; 62.5% of every group's channels with 16
clusters, 36.3 KB at 0.95. A third family zeroes weights instead of units
(:mod:`edge_sdk.passes.sparsify`, Deep Compression's pruning stage): 97% of the hidden
Dense kernels and 60% of the convolutions' measured 47.0 KB stored at a 0.38-point
selection drop before any sharing. The pure parts (:func:`pareto`, :func:`choose`) touch
no model.

Time is spent where it can change the answer. A prune ratio is applied first (a second
or two) and its row skipped before any recovery when it removes no channel, or the same
channels as the ratio before it (groups too small for the ratio, or blocked by layers the
analysis leaves whole, such as nested models). Each recovery has a time budget: its
epochs stop at the one that fits (:attr:`DistillConfig.time_budget_s`). The whole walk
has one too: the no-prune row, which needs no recovery, comes first, and a later row
starts only if a row like it fits in what is left. The report lists each recovery's
epochs and seconds and every row not tried, with why. On the 48×48 MobileNetV2 of
``benchmarks.search`` (422,730 parameters; only its head convolution prunable) the walk
judged 29 candidates in 547 s, every recovery ending by early stopping in 27-38 s.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from device_agent.errors import EdgeError
from edge_sdk.passes.base import GraphPass, PassContext
from edge_sdk.passes.distill.keras import DistillConfig

if TYPE_CHECKING:
    from edge_sdk.measure.device_bench import DeviceTarget

# Wall seconds one recovery (distillation of a pruned model) may take: its epochs stop at
# the one that fits.
RECOVERY_S = 60.0

# Margin (points) beyond the budget within which a failing candidate does not yet end
# its row: small drops are noisy on a few hundred samples.
_SLACK = 0.5


class Objective(str, Enum):
    """What the search minimizes among candidates within the budget."""

    SIZE = "size"
    LATENCY = "latency"
    MACS = "macs"


@dataclass(frozen=True, kw_only=True)
class ShippedConfig:
    """The search's grid, budget, objective and hard limits (``None``: no limit)."""

    max_drop: float = 1.0  # points, against the input model on the selection split
    ratios: tuple[float, ...] = (0.0, 0.25, 0.5, 0.625, 0.75, 0.85)
    dense_ratios: tuple[float, ...] = (0.8, 0.9)  # rows pruning only hidden Dense units
    sparsities: tuple[float, ...] = (0.97,)  # rows zeroing this share of hidden Dense weights
    clusters: tuple[int, ...] = (64, 32, 16, 8, 4)  # tried after "no sharing", most values first
    # Recovery is what lets a ratio through: on the digits LeNet-5, 12 epochs with patience
    # 3 left 50% pruning at -0.95 points where 25% recovered fully; mixup blends took 62.5%
    # from -1.72 to -0.95 points (selection split, 525 calibration samples).
    # time_budget_s: a recovery that would run past it stops after the epoch that fits (the
    # 48×48 MobileNetV2 of benchmarks.search: a first epoch of 12-19 s, which compiles the
    # step, then 11-12 epochs in 27-38 s, ended by early stopping within it).
    distill: DistillConfig | None = field(
        default_factory=lambda: DistillConfig(epochs=40, patience=6, mixup=0.4, time_budget_s=RECOVERY_S))
    # The sparse rows' recovery: sparsity rises over the first 60% of the epochs and only
    # epochs at full sparsity may be kept, so 40 epochs left 16 to recover in. On the digits
    # LeNet-5 at 97%, 80 epochs with patience 12 took the 8-cluster int8 candidate from 3
    # samples lost to 2 on the selection split (29,304 bytes stored; one run on a reduced grid,
    # before the training step was compiled).
    sparse_distill: DistillConfig | None = field(
        default_factory=lambda: DistillConfig(epochs=80, patience=12, mixup=0.4))
    share_fine_tune_steps: int = 60
    objective: Objective = Objective.SIZE
    # Wall seconds for the whole walk (None: no limit). A row starts only if it fits, by
    # the time a row of its family took (the first recovered row: the no-prune row's time
    # plus the recovery budget); rows not tried are listed in the report. LeNet-5's walk
    # takes a few minutes and ends within it; a larger model gets its cheap rows first.
    time_budget_s: float | None = 600.0
    max_bytes: int | None = None
    max_latency_ms: float | None = None
    # --latency-on: each candidate's latency is timed by this device's agent, not here.
    latency_on: DeviceTarget | None = None

    @property
    def latency_where(self) -> str:
        """Where candidate latency is measured, in words for the report."""
        return "this host" if self.latency_on is None else f"device {self.latency_on.name}"

    def __post_init__(self) -> None:
        if self.max_drop < 0:
            raise EdgeError(f"--max-drop must be >= 0 points, got {self.max_drop}")
        if not self.ratios or any(not 0 <= r < 1 for r in self.ratios) or list(self.ratios) != sorted(self.ratios):
            raise EdgeError(f"search ratios must be increasing and in [0, 1), got {self.ratios}")
        if any(not 0 < r < 1 for r in self.dense_ratios) or list(self.dense_ratios) != sorted(self.dense_ratios):
            raise EdgeError(f"search dense ratios must be increasing and in (0, 1), got {self.dense_ratios}")
        if any(not 0 < r < 1 for r in self.sparsities) or list(self.sparsities) != sorted(self.sparsities):
            raise EdgeError(f"search sparsities must be increasing and in (0, 1), got {self.sparsities}")
        if list(self.clusters) != sorted(self.clusters, reverse=True) or any(k < 2 for k in self.clusters):
            raise EdgeError(f"search cluster counts must be decreasing and >= 2, got {self.clusters}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise EdgeError(f"search time budget must be > 0 seconds (None: no limit), got {self.time_budget_s}")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise EdgeError(f"--max-bytes must be a positive number of bytes, got {self.max_bytes}")
        if self.max_latency_ms is not None and self.max_latency_ms <= 0:
            raise EdgeError(f"--max-latency must be a positive number of milliseconds, got {self.max_latency_ms}")

    def describe(self) -> dict[str, Any]:
        """The settings as the report records them (``kind`` tells the two searches apart)."""
        return {"kind": "shipped", "budget_points": self.max_drop, "ratios": list(self.ratios),
                "dense_ratios": list(self.dense_ratios), "sparsities": list(self.sparsities),
                "clusters": list(self.clusters), "distill": self.distill is not None,
                "time_budget_s": self.time_budget_s,
                "recovery_budget_s": None if self.distill is None else self.distill.time_budget_s,
                "objective": self.objective.value, "max_bytes": self.max_bytes,
                "max_latency_ms": self.max_latency_ms, "latency_measured_on": self.latency_where}


@dataclass(frozen=True)
class Shipped:
    """One candidate as it ships: measured on the selection split through the runtime."""

    accuracy: float  # percent
    bytes: int  # the model member as stored in the bundle (compressed)
    latency_ms: float  # p50, one sample
    params: int
    macs: int
    data: builtins.bytes = field(default=b"", repr=False, compare=False)  # the model file, uncompressed


Judge = Callable[[Any], Shipped]


@dataclass(frozen=True)
class Candidate:
    """A point of the grid, its steps (name, detail, model) and what it measured."""

    index: int
    ratio: float
    clusters: int | None
    shipped: Shipped
    drop: float
    steps: tuple[tuple[str, str, Any], ...] = ()
    dense_only: bool = False  # the ratio applies to the hidden Dense layers' units alone
    sparsity: float = 0.0  # the share of the hidden Dense weights zeroed (no unit removed)

    @property
    def label(self) -> str:
        """The candidate in words, e.g. ``prune 50%, 16 clusters`` or ``dense 90%, 16 clusters``."""
        prune = _row_label(self.ratio, self.dense_only, self.sparsity)
        return f"{prune}, {'no sharing' if self.clusters is None else f'{self.clusters} clusters'}"

    def row(self) -> dict[str, Any]:
        """The candidate's settings and shipped figures as one JSON row."""
        s = self.shipped
        return {"index": self.index, "ratio": self.ratio, "dense_only": self.dense_only, "sparsity": self.sparsity,
                "clusters": self.clusters, "label": self.label,
                "accuracy": s.accuracy, "drop_points": self.drop, "bytes": s.bytes,
                "latency_ms": s.latency_ms, "params": s.params, "macs": s.macs}


@dataclass(frozen=True)
class ShippedResult:
    """Every candidate measured, the Pareto front, and the chosen one."""

    baseline_accuracy: float
    candidates: tuple[Candidate, ...]
    front: tuple[int, ...]  # candidate indices on the Pareto front, by bytes
    chosen: int
    seconds: float
    config: ShippedConfig
    skipped: tuple[str, ...] = ()  # rows not judged, each with why
    recovery: tuple[str, ...] = ()  # each recovered row: epochs and seconds of distillation

    @property
    def best(self) -> Candidate:
        """The chosen candidate."""
        return self.candidates[self.chosen]

    def front_files(self, ext: str) -> dict[str, bytes]:
        """The front's model files, ``N.EXT`` by candidate index (for ``NAME.candidates/``)."""
        return {f"{i}.{ext}": self.candidates[i].shipped.data for i in self.front
                if self.candidates[i].shipped.data}

    def summary(self) -> dict[str, Any]:
        """What the report and the manifest record about the search."""
        best = self.best
        return {
            "kind": "shipped", "baseline_accuracy": self.baseline_accuracy,
            "objective": self.config.objective.value, "seconds": round(self.seconds, 1),
            "latency_measured_on": self.config.latency_where,
            "chosen_index": best.index, "chosen_label": best.label,
            "chosen": [{"step": n, "detail": d} for n, d, _ in best.steps],
            "front": list(self.front),
            "candidates": [c.row() for c in self.candidates],
            "time_budget_s": self.config.time_budget_s, "skipped": list(self.skipped),
            "recovery": list(self.recovery),
            "layer_ratios": {"dense" if best.dense_only else "all": best.ratio}, "clusters": best.clusters,
        }


# --- pure choices ----------------------------------------------------------------------


def pareto(points: Sequence[tuple[float, float, float]]) -> list[int]:
    """Indices of the points not dominated in (bytes ↓, accuracy ↑, latency ↓), by bytes."""
    def dominates(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
        no_worse = a[0] <= b[0] and a[1] >= b[1] and a[2] <= b[2]
        return no_worse and (a[0] < b[0] or a[1] > b[1] or a[2] < b[2])

    keep = [i for i, p in enumerate(points) if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]
    return sorted(keep, key=lambda i: (points[i][0], -points[i][1]))


def feasible(c: Candidate, config: ShippedConfig) -> bool:
    """Within the budget and the hard limits."""
    s = c.shipped
    return (c.drop <= config.max_drop + 1e-9
            and (config.max_bytes is None or s.bytes <= config.max_bytes)
            and (config.max_latency_ms is None or s.latency_ms <= config.max_latency_ms))


def choose(cands: Sequence[Candidate], config: ShippedConfig) -> int | None:
    """The feasible candidate best for the objective (ties: fewer bytes, then higher accuracy)."""
    ok = [c for c in cands if feasible(c, config)]
    if not ok:
        return None
    key: dict[Objective, Callable[[Candidate], tuple[float, ...]]] = {
        Objective.SIZE: lambda c: (c.shipped.bytes, -c.shipped.accuracy),
        Objective.LATENCY: lambda c: (c.shipped.latency_ms, c.shipped.bytes),
        Objective.MACS: lambda c: (c.shipped.macs, c.shipped.bytes),
    }
    return min(ok, key=key[config.objective]).index


# --- the measured search ---------------------------------------------------------------


def search(model: Any, ctx: PassContext, config: ShippedConfig, judge: Judge,
           baseline_accuracy: float) -> ShippedResult:
    """Walk the grid, judging every candidate as it ships; fail with the best achievable."""
    if not hasattr(model, "layers"):
        raise EdgeError("--max-drop search needs a Keras model (the ONNX path is post-training: "
                        "give --prune/--share explicitly)")
    t0 = time.perf_counter()
    cands: list[Candidate] = []
    skipped: list[str] = []
    recovery: list[str] = []
    dense = hidden_dense(model)
    rows: list[tuple[float, tuple[str, ...], float]] = [(r, (), 0.0) for r in config.ratios]
    if dense:
        rows += [(r, dense, 0.0) for r in config.dense_ratios] + [(0.0, (), s) for s in config.sparsities]
    misses, family = 0, (False, False)
    took: dict[tuple[bool, bool], float] = {}  # the longest row of each family so far, seconds
    last_row_s, removed_before = 0.0, -1
    for i, (ratio, layers, sparsity) in enumerate(rows):
        if (bool(layers), sparsity > 0) != family or i == 0:
            misses, family, removed_before = 0, (bool(layers), sparsity > 0), -1  # a new family of rows
        label = _row_label(ratio, bool(layers), sparsity)
        if misses == 2:  # two ratios in a row over budget: more pruning only loses more
            skipped.append(f"{label}: not tried, the two rows before it had no candidate within the budget")
            continue
        spent = time.perf_counter() - t0
        guess = took.get(family, last_row_s + (_recovery_s(config) if ratio or sparsity else 0.0))
        if config.time_budget_s is not None and cands and spent + guess > config.time_budget_s:
            skipped.append(f"{label}: not tried, over the search's {config.time_budget_s:g} s time budget "
                           f"({spent:.0f} s spent, a row like it ~{guess:.0f} s)")
            continue
        ctx.progress("search: shipped candidates", i, len(rows))
        start = time.perf_counter()
        pruned = _pruned(model, ctx, ratio, layers) if ratio else None
        if pruned is not None and pruned[2] in (0, removed_before):
            why = ("the same channels as the ratio before" if pruned[2] else "no channel") + \
                " (its prunable groups are too small, or blocked by layers the analysis leaves whole)"
            skipped.append(f"{label}: not tried, " + (pruned[1] if pruned[0] is None else f"it removes {why}"))
            continue
        removed_before = pruned[2] if pruned is not None else removed_before
        row, note = _row(model, ctx, config, judge, baseline_accuracy, ratio, len(cands), layers, sparsity,
                         pruned)
        if note:
            recovery.append(f"{label}: {note}")
        cands += row
        last_row_s = time.perf_counter() - start
        took[family] = max(took.get(family, 0.0), last_row_s)
        misses = 0 if any(c.drop <= config.max_drop for c in row) else misses + 1
    front = tuple(pareto([(c.shipped.bytes, c.shipped.accuracy, c.shipped.latency_ms) for c in cands]))
    chosen = choose(cands, config)
    if chosen is None:
        raise EdgeError(_nothing_met(cands, config))
    return ShippedResult(baseline_accuracy, tuple(cands), front, chosen, time.perf_counter() - t0, config,
                         tuple(skipped), tuple(recovery))


def _recovery_s(config: ShippedConfig) -> float:
    """What one recovery may add to a row: its time budget (none: nothing to go by)."""
    d = config.distill
    return 0.0 if d is None or d.time_budget_s is None else d.time_budget_s


def _row_label(ratio: float, dense_only: bool, sparsity: float) -> str:
    """A row in words, as its candidates' labels begin: ``prune 50%``, ``dense 90%``, ``sparse 97%``."""
    if ratio:
        return f"dense {_pct(ratio)}" if dense_only else f"prune {_pct(ratio)}"
    return f"sparse {_pct(sparsity)}" if sparsity else "no prune"


def _pct(share: float) -> str:
    """``0.625`` as ``62.5%``, ``0.5`` as ``50%``."""
    return f"{round(share * 100, 1):g}%"


# The pruned model, what was removed in words, channels removed (no model: why none could be).
Pruned = tuple[Any, str, int]


def _row(model: Any, ctx: PassContext, config: ShippedConfig, judge: Judge, base: float,
         ratio: float, start: int, layers: tuple[str, ...] = (), sparsity: float = 0.0,
         pruned: Pruned | None = None) -> tuple[list[Candidate], str]:
    """One prune ratio (``pruned``, recovered; of ``layers`` alone when given) or weight
    sparsity, then sharing from many clusters to few; and how the recovery went."""
    if sparsity:
        steps, note = _sparse(model, ctx, config, sparsity), ""
    else:
        steps, note = _recovered(model, ctx, config, pruned)
    current = steps[-1][2] if steps else model
    dense = bool(layers)
    out = [_candidate(start, ratio, None, steps, judge(current), base, dense, sparsity)]
    if out[0].drop > config.max_drop + _SLACK:
        return out, note  # sharing only loses more
    for k in config.clusters:
        shared = _share(current, ctx, config, k)
        c = _candidate(start + len(out), ratio, k, (*steps, shared), judge(shared[2]), base, dense, sparsity)
        out.append(c)
        if c.drop > config.max_drop + _SLACK:
            break
    return out, note


def _candidate(index: int, ratio: float, clusters: int | None, steps: Sequence[tuple[str, str, Any]],
               shipped: Shipped, base: float, dense_only: bool = False, sparsity: float = 0.0) -> Candidate:
    return Candidate(index, ratio, clusters, shipped, round(base - shipped.accuracy, 4), tuple(steps),
                     dense_only, sparsity)


def _sparse(model: Any, ctx: PassContext, config: ShippedConfig,
            sparsity: float) -> tuple[tuple[str, str, Any], ...]:
    from dataclasses import replace

    from edge_sdk.passes.sparsify.keras import SparsifyConfig, SparsifyPass

    cfg = SparsifyConfig(dense=sparsity) if config.sparse_distill is None else SparsifyConfig(
        dense=sparsity, distill=config.sparse_distill)
    teacher_ctx = ctx if ctx.teacher is not None else replace(ctx, teacher=model)
    out = SparsifyPass(cfg).apply(model, teacher_ctx)
    return (("sparsify", f"{sparsity:.0%} of hidden Dense and {cfg.conv:.0%} of convolution weights zeroed "
             f"({out.changes['zeroed_weights']:,} of {out.changes['of_weights']:,}), distilled", out.model),)


def hidden_dense(model: Any) -> tuple[str, ...]:
    """Names of the top-level Dense layers other than the output layer, in model order."""
    return tuple(lay.name for lay in model.layers[:-1] if type(lay).__name__ == "Dense")


def _pruned(model: Any, ctx: PassContext, ratio: float, layers: tuple[str, ...] = ()) -> Pruned:
    """``ratio`` of every group's channels (of ``layers``' units alone when given) removed:
    cheap next to the recovery, so a ratio that removes nothing new is caught before it."""
    from edge_sdk.passes.prune.keras import PruneConfig, PrunePass

    if layers:
        cfg = PruneConfig(ratio=0.0, layer_ratios=tuple((name, ratio) for name in layers))
        what = f"{ratio:.0%} of the units of {', '.join(layers)}"
    else:
        cfg, what = PruneConfig(ratio=ratio), f"{ratio:.0%} of every group's channels"
    try:
        out = PrunePass(cfg).apply(model, ctx)
    except EdgeError as e:  # no prunable group at all: the row has nothing to try
        return None, str(e), 0
    return out.model, what, int(out.changes["channel_units_removed"])


def _recovered(model: Any, ctx: PassContext, config: ShippedConfig,
               pruned: Pruned | None) -> tuple[tuple[tuple[str, str, Any], ...], str]:
    """The prune step and its recovery by distillation from ``model``; and, in words, how
    many epochs the recovery ran in how long (and whether its time budget stopped it)."""
    from dataclasses import replace

    from edge_sdk.passes.distill.keras import DistillPass

    if pruned is None:
        return (), ""
    steps: list[tuple[str, str, Any]] = [("prune", pruned[1], pruned[0])]
    if config.distill is None:
        return tuple(steps), ""
    teacher_ctx = ctx if ctx.teacher is not None else replace(ctx, teacher=model)
    out = DistillPass(config.distill).apply(pruned[0], teacher_ctx)
    ch = out.changes
    timed = any("time budget" in n for n in out.notes)
    budget = config.distill.time_budget_s
    ran = (f"{ch['epochs']} of {config.distill.epochs} epochs in {ch['seconds']} s (first epoch "
           f"{ch['first_epoch_seconds']} s"
           + ("" if budget is None else f"; budget {budget:g} s{', reached' if timed else ''}") + ")")
    steps.append(("distill", f"T={config.distill.temperature}, alpha={config.distill.alpha}; {ran}", out.model))
    return tuple(steps), ran


def _share(model: Any, ctx: PassContext, config: ShippedConfig, clusters: int) -> tuple[str, str, Any]:
    from edge_sdk.passes.share.keras import ShareConfig, SharePass

    cfg = ShareConfig(clusters=clusters, fine_tune_steps=config.share_fine_tune_steps)
    return ("share", f"{clusters} clusters per kernel", SharePass(cfg).apply(model, ctx).model)


def _nothing_met(cands: Sequence[Candidate], config: ShippedConfig) -> str:
    limits = [f"--max-drop {config.max_drop}"]
    if config.max_bytes is not None:
        limits.append(f"--max-bytes {config.max_bytes}")
    if config.max_latency_ms is not None:
        limits.append(f"--max-latency {config.max_latency_ms}")
    best = min(cands, key=lambda c: c.drop) if cands else None
    got = (f"; the most accurate candidate ({best.label}) drops {best.drop:.2f} points at "
           f"{best.shipped.bytes:,} bytes, {best.shipped.latency_ms:.3f} ms") if best else ""
    return (f"{' and '.join(limits)}: no candidate met them{got}. Nothing was written: loosen "
            "the limits or choose steps with --prune/--share")


def plan_steps(result: ShippedResult) -> tuple[GraphPass, ...]:
    """The chosen candidate's steps as passes the pipeline replays (and measures)."""
    from edge_sdk.recipe.search import ChosenStep

    return tuple(ChosenStep(n, m, d) for n, d, m in result.best.steps)


def candidate_lines(summary: dict[str, Any]) -> list[str]:
    """The recorded candidates (:meth:`ShippedResult.summary`) as plain lines: the Pareto
    front marked ``*``, the chosen point ``>``; then each recovery's epochs and seconds and
    the rows not tried, with why."""
    budget = summary.get("time_budget_s")
    rows = [f"search: {len(summary['candidates'])} candidates judged as shipped in "
            f"{summary['seconds']}s{'' if budget is None else f' of a {budget:g} s time budget'} "
            f"(objective {summary['objective']}; * Pareto front over bytes, "
            "accuracy, latency; > chosen); selection split; latency p50 measured on "
            f"{summary.get('latency_measured_on', 'this host')}",
            "   #  candidate                     accuracy   drop      bytes  latency ms"]
    front = set(summary["front"])
    for c in summary["candidates"]:
        mark = ">" if c["index"] == summary["chosen_index"] else ("*" if c["index"] in front else " ")
        rows.append(f"{mark}{c['index']:>3}  {c['label']:<28}{c['accuracy']:>9.2f}%{c['drop_points']:>7.2f}"
                    f"{c['bytes']:>11,}{c['latency_ms']:>12.4f}")
    rows += [f"recovery {line}" for line in summary.get("recovery", [])]
    rows += [f"skipped {line}" for line in summary.get("skipped", [])]
    return rows


def from_flags(search: bool | None, max_drop: float | None, chosen_steps: bool, *, objective: str = "size",
               max_bytes: int | None = None, max_latency_ms: float | None = None,
               latency_on: DeviceTarget | None = None) -> ShippedConfig | None:
    """The search ``edge optimize`` runs, if any: ``--search`` explicitly, or by default when
    ``--max-drop`` or a hard limit is given and none of ``--prune/--share/--lowrank/--early-exit``
    is. ``--max-drop`` then covers the whole recipe, int8 included."""
    limits = (max_bytes is not None or max_latency_ms is not None or objective != "size"
              or latency_on is not None)
    if search is None:
        search = (max_drop is not None or limits) and not chosen_steps
    if not search:
        if limits:
            raise EdgeError("--objective/--max-bytes/--max-latency/--latency-on steer the --max-drop search; "
                            "leave out --prune/--share/--lowrank/--early-exit/--no-search to use them")
        return None
    if chosen_steps:
        raise EdgeError("--search chooses pruning and sharing itself; leave out --prune/--share/--lowrank/"
                        "--early-exit (or pass --no-search to run exactly those steps)")
    try:
        goal = Objective(objective)
    except ValueError:
        raise EdgeError(f"--objective {objective!r}: expected size, latency or macs") from None
    return ShippedConfig(max_drop=1.0 if max_drop is None else float(max_drop), objective=goal,
                         max_bytes=max_bytes, max_latency_ms=max_latency_ms, latency_on=latency_on)
