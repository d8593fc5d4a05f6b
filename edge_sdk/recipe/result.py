"""What ``edge optimize`` measured and decided, as typed values: the metrics of each
model, the before/after comparisons, each step's record and the whole :class:`Report`.
Rendering lives in :mod:`edge_sdk.report`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device_agent.protocol.manifest import ExitStage, ModelFormat
from edge_sdk.measure.timing import Measurement
from edge_sdk.passes.quantize.base import Attempt, Decision

if TYPE_CHECKING:
    from edge_sdk.measure.holdout import HeldOut


@dataclass(frozen=True)
class ModelMetrics:
    """What a person compares before and after: one model file, measured."""

    size_bytes: int
    accuracy: float
    error_rate: float
    latency_p50_ms: float
    throughput_per_s: float
    peak_rss_mb: float

    @classmethod
    def of(cls, size: int, accuracy: float, m: Measurement) -> ModelMetrics:
        """ModelMetrics of one file from its size, its accuracy and a timing measurement."""
        return cls(size_bytes=size, accuracy=accuracy, error_rate=round(100.0 - accuracy, 4),
                   latency_p50_ms=m.latency_p50_ms, throughput_per_s=m.throughput_per_s,
                   peak_rss_mb=m.peak_rss_mb)


# (field, label, unit); the order of rows in every rendering.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("size_bytes", "size", "bytes"),
    ("accuracy", "accuracy", "%"),
    ("error_rate", "error rate", "%"),
    ("latency_p50_ms", "latency p50 (batch 1)", "ms"),
    ("throughput_per_s", "throughput (batch 32)", "/s"),
    ("peak_rss_mb", "peak memory (RSS)", "MB"),
)


# Rows whose change is a difference in points, not a relative change.
POINTS = frozenset({"accuracy", "error_rate"})
# Rows measured by timing: their change is noise when within the run-to-run spread.
TIMED = ("latency_p50_ms", "throughput_per_s", "peak_rss_mb")
# Two runs that happen to agree closely still do not make a change of 0.5% real.
MIN_SPREAD_PCT = 1.0
# Decimals per unit, the same in every rendering (terminal, Markdown, PNG labels).
DECIMALS = {"bytes": 0, "%": 2, "ms": 3, "/s": 0, "MB": 1}


def change_pct(before: float, after: float) -> float | None:
    """Relative change in percent; ``None`` when the baseline is zero."""
    if before == 0:
        return None
    return round((after - before) / before * 100.0, 2)


def run_spread(first: ModelMetrics, second: ModelMetrics) -> dict[str, float]:
    """Per timed metric, how far two runs of the same model differ, in percent (at least
    :data:`MIN_SPREAD_PCT`)."""
    a, b = asdict(first), asdict(second)
    out = {}
    for k in TIMED:
        mean = (a[k] + b[k]) / 2
        out[k] = max(MIN_SPREAD_PCT, round(abs(a[k] - b[k]) / mean * 100.0, 2) if mean else 0.0)
    return out


@dataclass(frozen=True)
class Comparison:
    """Baseline (float export) against optimized, for one target format."""

    format: ModelFormat
    baseline: ModelMetrics
    optimized: ModelMetrics
    # Per timed metric: the baseline timed twice differed by this much (percent).
    spread_pct: dict[str, float] = field(default_factory=dict)

    def changes(self) -> dict[str, float | None]:
        """Relative change in percent; for accuracy and error rate, points."""
        b, o = asdict(self.baseline), asdict(self.optimized)
        return {k: round(o[k] - b[k], 4) if k in POINTS else change_pct(b[k], o[k])
                for k, _, _ in ROWS}

    def relative_changes(self) -> dict[str, float | None]:
        """Relative change in percent for every row (the JSON's ``change_pct``)."""
        b, o = asdict(self.baseline), asdict(self.optimized)
        return {k: change_pct(b[k], o[k]) for k, _, _ in ROWS}

    def noise(self) -> dict[str, bool]:
        """Per timed metric: is the change within the run-to-run spread measured?"""
        ch = self.changes()
        return {k: k in self.spread_pct and ch[k] is not None and abs(ch[k]) <= self.spread_pct[k]  # type: ignore[arg-type]
                for k in TIMED}


@dataclass(frozen=True)
class StepRecord:
    """The model measured after one step of the recipe."""

    step: str
    accuracy: float
    params: int
    macs: int
    bytes: int | None  # raw bytes of the step's model file (Keras steps: exported float
    # TFLite); None when not measured (--no-step-metrics)
    note: str = ""
    compressed_bytes: int | None = None  # ``bytes`` after the bundle's codec (xz if none)
    latency_p50_ms: float | None = None  # single-sample p50 in the device runtime


@dataclass(frozen=True)
class TargetResult:
    """One target's files and, for int8, the remedy search that produced it.

    ``float_path`` and ``final_path`` live in the run's scratch folder: valid while the
    pipeline runs (for the bundle and the timing), gone once ``optimize`` returns.
    """

    format: ModelFormat
    float_path: Path
    final_path: Path
    float_accuracy: float
    final_accuracy: float
    decision: Decision | None
    notes: tuple[str, ...]
    # The input model's own float export, when graph passes changed the model: the
    # before/after comparison is against what the user brought, not the compressed float.
    baseline_path: Path | None = None
    baseline_accuracy: float | None = None

    @property
    def reference(self) -> tuple[Path, float]:
        """The file and accuracy the before/after comparison starts from."""
        if self.baseline_path is not None and self.baseline_accuracy is not None:
            return self.baseline_path, self.baseline_accuracy
        return self.float_path, self.float_accuracy

    def to_dict(self) -> dict[str, Any]:
        """This target's accuracies, quantization attempts and notes as the report's JSON."""
        d: dict[str, Any] = {"format": self.format.value, "float_accuracy": self.float_accuracy,
                             "final_accuracy": self.final_accuracy, "notes": list(self.notes)}
        if self.decision is not None:
            d["quantization"] = {
                "chosen": _attempt(self.decision.chosen),
                "attempts": [_attempt(a) for a in self.decision.attempts],
                "max_drop_points": self.decision.budget,
            }
        return d


def _attempt(a: Attempt) -> dict[str, Any]:
    return {"remedy": a.remedy, "reason": a.reason, "config": a.config.describe(),
            "accuracy": a.accuracy, "drop_points": a.drop}


@dataclass(frozen=True)
class Report:
    """Everything ``edge optimize`` measured and decided."""

    name: str
    version: str
    bundle: Path
    source: str
    recipe: dict[str, Any]
    steps: tuple[StepRecord, ...]
    targets: tuple[TargetResult, ...]
    comparisons: tuple[Comparison, ...]
    calibration_samples: int
    validation_samples: int
    cascade: CascadeResult | None = None  # set when the bundle is an early-exit cascade
    bundled_validation: int = 0  # held-out samples the bundle carries for the health check
    held_out: HeldOut | None = None  # the final figures, on a split no choice looked at
    # What ships: "bundle" (the .edgepkg's bytes) and, per target format, its model files
    # as stored in it; set when the bundle is written.
    shipped: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # things a person should look at (a data range mismatch)

    def to_dict(self) -> dict[str, Any]:
        """The whole report as the ``NAME.report.json`` and ``--json`` object."""
        return {
            "bundled_validation_samples": self.bundled_validation,
            "warnings": list(self.warnings),
            "cascade": None if self.cascade is None else self.cascade.to_dict(),
            "held_out": None if self.held_out is None else self.held_out.to_dict(),
            "name": self.name,
            "version": self.version,
            "bundle": str(self.bundle),
            "source": self.source,
            "recipe": self.recipe,
            "calibration_samples": self.calibration_samples,
            "validation_samples": self.validation_samples,
            "steps": [asdict(s) for s in self.steps],
            "targets": [t.to_dict() for t in self.targets],
            "comparisons": [
                {"format": c.format.value, "baseline": asdict(c.baseline),
                 "optimized": asdict(c.optimized), "change_pct": c.relative_changes(),
                 "change_points": {k: v for k, v in c.changes().items() if k in POINTS},
                 "run_spread_pct": c.spread_pct,
                 "noise": [k for k, v in c.noise().items() if v]}
                for c in self.comparisons
            ],
            "shipped_bytes": self.shipped,
        }

    def optimization_summary(self) -> dict[str, Any]:
        """The manifest's ``optimization`` field: recipe, steps, baseline and optimized."""
        d = self.to_dict()
        out = {k: d[k] for k in ("recipe", "steps", "targets", "comparisons", "held_out")}
        found = out["recipe"].get("search_result")
        if found and "candidates" in found:
            # Every candidate's row is the report's and NAME.candidates/index.json's: in the
            # manifest (uncompressed, on every device) the 27 rows of a LeNet-5 search were
            # 6.3 KB of a 62 KB bundle. The manifest keeps the chosen row and the count.
            rows = found["candidates"]
            out["recipe"] = {**out["recipe"], "search_result": {
                **{k: v for k, v in found.items() if k != "candidates"}, "candidates_judged": len(rows),
                "chosen_row": next((c for c in rows if c["index"] == found.get("chosen_index")), None)}}
        # The rest is kept to what a device's operator reads back (``edge inspect``): each
        # step's accuracy and bytes, the quantization chosen, the held-out figures. The
        # full rows, the quantization attempts and the held-out warnings' text are the
        # report's; in a LeNet-5 bundle of 43 KB they were 1.4 KB of a 5.6 KB manifest.
        out["steps"] = [{k: s.get(k) for k in _MANIFEST_STEP} for s in out["steps"]]
        out["targets"] = [{**t, "quantization": {k: v for k, v in t["quantization"].items() if k != "attempts"}}
                          if isinstance(t.get("quantization"), dict) else t for t in out["targets"]]
        if isinstance(out.get("held_out"), dict):
            out["held_out"] = {k: v for k, v in out["held_out"].items() if k != "warnings"}
        if self.cascade is not None:
            out["early_exit"] = d["cascade"]
        return out


# A step's fields the manifest keeps (the report keeps all of them).
_MANIFEST_STEP = ("step", "accuracy", "bytes", "compressed_bytes", "note")


@dataclass(frozen=True)
class CascadeTarget:
    """One target's stage files and what the shipped cascade does on validation."""

    format: ModelFormat
    files: tuple[Path, ...]  # scratch paths, valid while the pipeline runs
    accuracy: float  # percent, cascade
    full_accuracy: float  # percent, the full model as shipped without exits
    exit_counts: tuple[int, ...]
    latency_full_ms: float  # mean per input, batch 1, device engine
    latency_cascade_ms: float
    sizes: tuple[int, ...] = ()  # bytes per stage file (the files go with the scratch folder)

    @property
    def bytes(self) -> int:
        """All stage files of this target together, in bytes."""
        return sum(self.sizes)

    @property
    def speedup(self) -> float:
        """The full model's latency over the cascade's (0 when the cascade was not timed)."""
        return self.latency_full_ms / self.latency_cascade_ms if self.latency_cascade_ms else 0.0

    def to_dict(self) -> dict[str, Any]:
        """This target as the report's JSON records it (file names, not scratch paths)."""
        return {
            "format": self.format.value,
            "files": [p.name for p in self.files],
            "bytes": self.bytes,
            "stage_bytes": list(self.sizes),
            "accuracy": self.accuracy,
            "full_accuracy": self.full_accuracy,
            "exits": {str(k): c for k, c in enumerate(self.exit_counts)},
            "latency_full_ms": self.latency_full_ms,
            "latency_cascade_ms": self.latency_cascade_ms,
            "speedup": round(self.speedup, 3),
        }


@dataclass(frozen=True)
class CascadeResult:
    """The early-exit part of a run: where it splits, thresholds, and per-target results."""

    split_layers: tuple[str, ...]
    criterion: str
    exits: tuple[ExitStage, ...]
    stage_macs: tuple[int, ...]
    full_macs: int
    mean_macs: float
    full_accuracy: float  # fraction, validation, first target's last stage
    cascade_accuracy: float  # fraction, validation, first target
    exit_rates: tuple[float, ...]
    max_drop: float
    calibrated_on: tuple[ModelFormat, ...]
    targets: tuple[CascadeTarget, ...]
    params: int = 0  # backbone and heads

    def summary(self) -> dict[str, Any]:
        """The manifest's ``optimization.early_exit`` (same keys as ``write_cascade_bundle``)."""
        return {
            "split_layers": list(self.split_layers),
            "criterion": self.criterion,
            "thresholds": [e.threshold for e in self.exits],
            "stage_macs": list(self.stage_macs),
            "full_accuracy": self.full_accuracy,
            "cascade_accuracy": self.cascade_accuracy,
            "exit_rates": list(self.exit_rates),
            "mean_macs": self.mean_macs,
            "full_macs": self.full_macs,
            "max_drop": self.max_drop,
            "calibrated_on": [f.value for f in self.calibrated_on],
            "params": self.params,
        }

    def to_dict(self) -> dict[str, Any]:
        """The manifest's summary plus each target's figures, for the report's JSON."""
        return {**self.summary(), "targets": [t.to_dict() for t in self.targets]}
