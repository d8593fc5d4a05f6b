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
    distill: DistillConfig | None = field(
        default_factory=lambda: DistillConfig(epochs=40, patience=6, mixup=0.4))
    # The sparse rows' recovery: sparsity rises over the first 60% of the epochs and only
    # epochs at full sparsity may be kept, so 40 epochs left 16 to recover in. On the digits
    # LeNet-5 at 97%, 80 epochs with patience 12 took the 8-cluster int8 candidate from 3
    # samples lost to 2 on the selection split (29,304 bytes stored).
    sparse_distill: DistillConfig | None = field(
        default_factory=lambda: DistillConfig(epochs=80, patience=12, mixup=0.4))
    share_fine_tune_steps: int = 60
    objective: Objective = Objective.SIZE
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
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise EdgeError(f"--max-bytes must be a positive number of bytes, got {self.max_bytes}")
        if self.max_latency_ms is not None and self.max_latency_ms <= 0:
            raise EdgeError(f"--max-latency must be a positive number of milliseconds, got {self.max_latency_ms}")

    def describe(self) -> dict[str, Any]:
        """The settings as the report records them (``kind`` tells the two searches apart)."""
        return {"kind": "shipped", "budget_points": self.max_drop, "ratios": list(self.ratios),
                "dense_ratios": list(self.dense_ratios), "sparsities": list(self.sparsities),
                "clusters": list(self.clusters), "distill": self.distill is not None,
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
        prune = (f"dense {self.ratio:.0%}" if self.dense_only else f"prune {self.ratio:.0%}") if self.ratio \
            else (f"sparse {self.sparsity:.0%}" if self.sparsity else "no prune")
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
    dense = hidden_dense(model)
    rows: list[tuple[float, tuple[str, ...], float]] = [(r, (), 0.0) for r in config.ratios]
    if dense:
        rows += [(r, dense, 0.0) for r in config.dense_ratios] + [(0.0, (), s) for s in config.sparsities]
    misses, family = 0, None
    for i, (ratio, layers, sparsity) in enumerate(rows):
        if (bool(layers), sparsity > 0) != family:
            misses, family = 0, (bool(layers), sparsity > 0)  # a new family of rows
        if misses == 2:
            continue  # two ratios in a row over budget: more pruning only loses more
        ctx.progress("search: shipped candidates", i, len(rows))
        row = _row(model, ctx, config, judge, baseline_accuracy, ratio, len(cands), layers, sparsity)
        cands += row
        misses = 0 if any(c.drop <= config.max_drop for c in row) else misses + 1
    front = tuple(pareto([(c.shipped.bytes, c.shipped.accuracy, c.shipped.latency_ms) for c in cands]))
    chosen = choose(cands, config)
    if chosen is None:
        raise EdgeError(_nothing_met(cands, config))
    return ShippedResult(baseline_accuracy, tuple(cands), front, chosen, time.perf_counter() - t0, config)


def _row(model: Any, ctx: PassContext, config: ShippedConfig, judge: Judge, base: float,
         ratio: float, start: int, layers: tuple[str, ...] = (), sparsity: float = 0.0) -> list[Candidate]:
    """One prune ratio (recovered; of ``layers`` alone when given) or weight sparsity,
    then sharing from many clusters to few."""
    steps = _sparse(model, ctx, config, sparsity) if sparsity else _recovered(model, ctx, config, ratio, layers)
    current = steps[-1][2] if steps else model
    dense = bool(layers)
    out = [_candidate(start, ratio, None, steps, judge(current), base, dense, sparsity)]
    if out[0].drop > config.max_drop + _SLACK:
        return out  # sharing only loses more
    for k in config.clusters:
        shared = _share(current, ctx, config, k)
        c = _candidate(start + len(out), ratio, k, (*steps, shared), judge(shared[2]), base, dense, sparsity)
        out.append(c)
        if c.drop > config.max_drop + _SLACK:
            break
    return out


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


def _recovered(model: Any, ctx: PassContext, config: ShippedConfig, ratio: float,
               layers: tuple[str, ...] = ()) -> tuple[tuple[str, str, Any], ...]:
    from dataclasses import replace

    from edge_sdk.passes.distill.keras import DistillPass
    from edge_sdk.passes.prune.keras import PruneConfig, PrunePass

    if ratio == 0:
        return ()
    if layers:
        cfg = PruneConfig(ratio=0.0, layer_ratios=tuple((name, ratio) for name in layers))
        what = f"{ratio:.0%} of the units of {', '.join(layers)}"
    else:
        cfg, what = PruneConfig(ratio=ratio), f"{ratio:.0%} of every group's channels"
    pruned = PrunePass(cfg).apply(model, ctx).model
    steps: list[tuple[str, str, Any]] = [("prune", what, pruned)]
    if config.distill is not None:
        teacher_ctx = ctx if ctx.teacher is not None else replace(ctx, teacher=model)
        student = DistillPass(config.distill).apply(pruned, teacher_ctx).model
        steps.append(("distill", f"T={config.distill.temperature}, alpha={config.distill.alpha}", student))
    return tuple(steps)


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
    front marked ``*``, the chosen point ``>``."""
    rows = [f"search: {len(summary['candidates'])} candidates judged as shipped in "
            f"{summary['seconds']}s (objective {summary['objective']}; * Pareto front over bytes, "
            "accuracy, latency; > chosen); selection split; latency p50 measured on "
            f"{summary.get('latency_measured_on', 'this host')}",
            "   #  candidate                     accuracy   drop      bytes  latency ms"]
    front = set(summary["front"])
    for c in summary["candidates"]:
        mark = ">" if c["index"] == summary["chosen_index"] else ("*" if c["index"] in front else " ")
        rows.append(f"{mark}{c['index']:>3}  {c['label']:<28}{c['accuracy']:>9.2f}%{c['drop_points']:>7.2f}"
                    f"{c['bytes']:>11,}{c['latency_ms']:>12.4f}")
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
