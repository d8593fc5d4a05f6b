"""The before/after report of ``edge optimize``: typed values, and their JSON, Markdown,
PNG chart and terminal table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device_agent.protocol.manifest import ModelFormat
from edge_sdk.measure import Measurement
from edge_sdk.passes.quantize import Attempt, Decision

if TYPE_CHECKING:
    from edge_sdk.cascade_export import CascadeResult
    from edge_sdk.holdout import HeldOut


@dataclass(frozen=True)
class Metrics:
    """What a person compares before and after: one model file, measured."""

    size_bytes: int
    accuracy: float
    error_rate: float
    latency_p50_ms: float
    throughput_per_s: float
    peak_rss_mb: float

    @classmethod
    def of(cls, size: int, accuracy: float, m: Measurement) -> Metrics:
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


def run_spread(first: Metrics, second: Metrics) -> dict[str, float]:
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
    baseline: Metrics
    optimized: Metrics
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
        if self.cascade is not None:
            out["early_exit"] = d["cascade"]
        return out


def report_paths(bundle: Path) -> dict[str, Path]:
    """``NAME.report.{json,md,png}`` beside the bundle."""
    stem = bundle.name[: -len(".edgepkg")] if bundle.name.endswith(".edgepkg") else bundle.stem
    return {ext: bundle.with_name(f"{stem}.report.{ext}") for ext in ("json", "md", "png")}


def write_reports(report: Report, paths: dict[str, Path]) -> None:
    """Write the JSON, Markdown and PNG renderings to ``paths`` (keys json, md, png)."""
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
    paths["md"].write_text(to_markdown(report))
    write_chart(report, paths["png"])


def _fmt(v: float | int, unit: str) -> str:
    """A value with its unit's fixed number of decimals (see :data:`DECIMALS`)."""
    return f"{v:,.{DECIMALS.get(unit, 2)}f}"


def _pct(p: float | None) -> str:
    return "n/a" if p is None else f"{p:+.1f}%"


def _change(key: str, p: float | None, noise: bool) -> str:
    if key in POINTS:
        return "n/a" if p is None else f"{p:+.2f} pts"
    return f"{_pct(p)} (noise)" if noise else _pct(p)


def table_rows(c: Comparison) -> list[tuple[str, str, str, str]]:
    """(metric, baseline, optimized, change) rows, formatted: accuracy changes in points,
    a timed change within the run-to-run spread marked ``(noise)``."""
    b, o, ch, noise = asdict(c.baseline), asdict(c.optimized), c.changes(), c.noise()
    return [(f"{label} [{unit}]", _fmt(b[k], unit), _fmt(o[k], unit),
             _change(k, ch[k], noise.get(k, False))) for k, label, unit in ROWS]


def noise_note(c: Comparison) -> str | None:
    """The sentence that says which changes are noise, and why."""
    ch, noise = c.changes(), c.noise()
    keys = [(k, label) for k, label, _ in ROWS if noise.get(k)]
    if not keys:
        return None
    changes = ", ".join(f"{label} {_pct(ch[k])}" for k, label in keys)
    spread = ", ".join(f"{c.spread_pct[k]:.1f}%" for k, _ in keys)
    return (f"noise: {changes}: within the run-to-run spread measured (the baseline timed "
            f"twice differed by {spread}, counted as at least {MIN_SPREAD_PCT:g}%), so not a "
            "measured change")


STEP_COLUMNS = ("step", "accuracy %", "params", "MACs", "raw bytes", "compressed bytes",
                "latency p50 ms", "note")


def step_row(s: StepRecord) -> tuple[str, ...]:
    """One step, formatted in :data:`STEP_COLUMNS` order ("-" where not measured)."""
    opt = "-" if s.compressed_bytes is None else f"{s.compressed_bytes:,}"
    lat = "-" if s.latency_p50_ms is None else _fmt(s.latency_p50_ms, "ms")
    raw = "-" if s.bytes is None else f"{s.bytes:,}"
    return (s.step, f"{s.accuracy:.2f}", f"{s.params:,}", f"{s.macs:,}", raw, opt, lat, s.note)


def to_markdown(report: Report) -> str:
    lines = [f"# {report.name} {report.version}: optimization report", "",
             f"Source `{report.source}`; bundle `{report.bundle.name}`; "
             f"{report.calibration_samples} calibration / {report.validation_samples} "
             "validation samples.", ""]
    for c in report.comparisons:
        lines += [f"## {c.format.value}: float32 → optimized", "",
                  "| metric | baseline | optimized | change |", "|---|---:|---:|---:|"]
        lines += [f"| {' | '.join(r)} |" for r in table_rows(c)]
        lines.append("")
        note = noise_note(c)
        if note:
            lines += [note, ""]
    if report.shipped:
        lines += [f"Shipped: {shipped_line(report)}.", ""]
    lines += ["## Steps", "", "| step | accuracy % | params | MACs | raw bytes | compressed bytes "
              "| latency p50 ms | note |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {' | '.join(step_row(s))} |" for s in report.steps]
    for t in report.targets:
        if t.decision is None:
            continue
        ch = t.decision.chosen
        lines += ["", f"## int8 {t.format.value}: remedy `{ch.remedy}` ({ch.reason})", "",
                  "| attempt | settings | accuracy % | drop (points) |", "|---|---|---:|---:|"]
        lines += [f"| {a.remedy} | {a.config.describe()} | {a.accuracy:.2f} | {a.drop:+.2f} |"
                  for a in t.decision.attempts]
        lines += ["", budget_line(t, report)]
        if t.notes:
            lines += ["", *(f"- {n}" for n in t.notes)]
    if report.cascade is not None:
        lines += ["", *cascade_markdown(report.cascade)]
    from edge_sdk.report_extra import held_out_lines, search_lines

    if search_lines(report):
        lines += ["", "## Search candidates", "", "```", *search_lines(report), "```"]
    if report.held_out is not None:
        lines += ["", "## Held-out accuracy (the before/after accuracies; steps: selection split)", "",
                  *(f"- {ln}" for ln in held_out_lines(report))]
    return "\n".join(lines) + "\n"


def budget_line(t: TargetResult, report: Report) -> str:
    """The chosen int8 remedy, its drop and its budget, in points."""
    assert t.decision is not None
    ch, budget = t.decision.chosen, t.decision.budget
    line = (f"int8 {t.format.value}: remedy {ch.remedy} ({ch.reason}); drop {ch.drop:+.2f} points "
            f"(budget {budget:.2f} points")
    asked = report.recipe.get("max_drop_points")
    if isinstance(asked, (int, float)) and abs(float(asked) - budget) > 0.005:
        line += (f": what --max-drop {float(asked):g} leaves after the earlier steps, measured "
                 "from the model before int8")
    return line + ")"


def shipped_line(report: Report) -> str:
    """``bundle 38,400 bytes (tflite model 31,632 bytes stored)``."""
    parts = [f"{fmt} model {n:,} bytes stored" for fmt, n in report.shipped.items() if fmt != "bundle"]
    return f"bundle {report.shipped.get('bundle', 0):,} bytes ({'; '.join(parts)})"


def cascade_rows(c: CascadeResult) -> list[tuple[str, str, str, str, str]]:
    """(format, accuracy full → cascade, mean latency full → cascade, speedup, exits) rows."""
    rows = []
    for t in c.targets:
        n = max(sum(t.exit_counts), 1)
        exits = " / ".join(f"{k}: {cnt} ({100 * cnt / n:.0f}%)"
                           for k, cnt in enumerate(t.exit_counts))
        rows.append((t.format.value, f"{t.full_accuracy:.2f} → {t.accuracy:.2f}",
                     f"{t.latency_full_ms:.4f} → {t.latency_cascade_ms:.4f}",
                     f"{t.speedup:.2f}x", exits))
    return rows


def cascade_markdown(c: CascadeResult) -> list[str]:
    lines = [f"## Early exit: exits after {', '.join(c.split_layers)} ({c.criterion})", "",
             f"Thresholds {[round(e.threshold, 4) for e in c.exits]} calibrated on "
             f"{'+'.join(f.value for f in c.calibrated_on)} within {c.max_drop} points of the full model; mean MACs "
             f"per input {c.mean_macs:,.0f} of {c.full_macs:,} (validation).", "",
             "| target | accuracy % full → cascade | mean latency ms full → cascade | speedup "
             "| exits per stage |", "|---|---:|---:|---:|---|"]
    lines += [f"| {' | '.join(r)} |" for r in cascade_rows(c)]
    return lines


BASELINE_COLOR, OPTIMIZED_COLOR, CASCADE_COLOR = "#9e9e9e", "#1f77b4", "#2ca02c"


def shipped_accuracy(report: Report, c: Comparison) -> float:
    """The accuracy of what ships for ``c``'s target: the cascade's when there is one."""
    if report.cascade is not None:
        for t in report.cascade.targets:
            if t.format == c.format:
                return t.accuracy
    return c.optimized.accuracy


def headline(report: Report) -> str:
    """The chart's title: what was gained and what it cost, first target."""
    if not report.comparisons:
        return f"{report.name} {report.version}"
    c = report.comparisons[0]
    shipped = report.shipped.get(c.format.value, c.optimized.size_bytes)
    ratio = c.baseline.size_bytes / shipped if shipped else 0.0
    ch = c.changes()
    lat = "latency within noise" if c.noise().get("latency_p50_ms") else \
        f"latency {_pct(ch['latency_p50_ms'])}"
    if report.cascade is not None:
        t = next((t for t in report.cascade.targets if t.format == c.format), None)
        if t is not None:
            lat = f"early exit {t.speedup:.2f}x faster"
    acc = shipped_accuracy(report, c) - c.baseline.accuracy
    return f"{report.name} {report.version}: {ratio:.1f}x smaller, {lat}, accuracy {acc:+.2f} points"


def write_chart(report: Report, path: Path) -> None:
    """Write :func:`chart` as a PNG."""
    import matplotlib.pyplot as plt

    fig = chart(report)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def chart(report: Report) -> Any:
    """Size, latency and accuracy, baseline (float32) against what ships, per target, each
    bar labelled with its value; the accuracy axis is zoomed so a drop is visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge_sdk.report_extra import front_panel, has_front

    n = 3 + (report.cascade is not None) + has_front(report)
    fig, axes = plt.subplots(1, n, figsize=(4.0 * n, 4.0))
    labels = [c.format.value for c in report.comparisons]
    _size_panel(axes[0], report, labels)
    if report.cascade is not None:
        _cascade_latency_panel(axes[1], report.cascade)
        _cascade_panel(axes[3], report.cascade)
    else:
        _latency_panel(axes[1], report, labels)
    _accuracy_panel(axes[2], report, labels)
    if has_front(report):
        front_panel(axes[-1], report)
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(headline(report), fontsize=11, fontweight="bold")
    fig.tight_layout()
    return fig


def _pair(ax: Any, labels: list[str], base: list[float], opt: list[float], fmt: str,
          names: tuple[str, str] = ("before: float32", "after: shipped")) -> None:
    pos = list(range(len(labels)))
    b = ax.bar([p - 0.2 for p in pos], base, 0.4, label=names[0], color=BASELINE_COLOR)
    o = ax.bar([p + 0.2 for p in pos], opt, 0.4, label=names[1], color=OPTIMIZED_COLOR)
    ax.bar_label(b, labels=[fmt.format(v) for v in base], fontsize=8, padding=2)
    ax.bar_label(o, labels=[fmt.format(v) for v in opt], fontsize=8, padding=2)
    ax.set_xticks(pos, labels)
    ax.margins(y=0.15)


def _size_panel(ax: Any, report: Report, labels: list[str]) -> None:
    base = [c.baseline.size_bytes / 1024 for c in report.comparisons]
    opt = [report.shipped.get(c.format.value, c.optimized.size_bytes) / 1024
           for c in report.comparisons]
    _pair(ax, labels, base, opt, "{:,.1f}")
    total = report.shipped.get("bundle")
    ax.set_title("model size (KB)" + (f"\nwhole bundle {total / 1024:,.1f} KB" if total else ""))


def _latency_panel(ax: Any, report: Report, labels: list[str]) -> None:
    base = [c.baseline.latency_p50_ms for c in report.comparisons]
    opt = [c.optimized.latency_p50_ms for c in report.comparisons]
    _pair(ax, labels, base, opt, "{:.3f}")
    noisy = [c.format.value for c in report.comparisons if c.noise().get("latency_p50_ms")]
    ax.set_title("latency p50, batch 1 (ms)" + ("\nchange within run-to-run noise: "
                                                 + ", ".join(noisy) if noisy else ""))


def _cascade_latency_panel(ax: Any, c: CascadeResult) -> None:
    labels = [t.format.value for t in c.targets]
    _pair(ax, labels, [t.latency_full_ms for t in c.targets],
          [t.latency_cascade_ms for t in c.targets], "{:.3f}", ("full model", "early-exit cascade"))
    ax.set_title("mean latency per input (ms)")
    ax.legend(fontsize=8, loc="upper right")


def _accuracy_panel(ax: Any, report: Report, labels: list[str]) -> None:
    base = [c.baseline.accuracy for c in report.comparisons]
    opt = [shipped_accuracy(report, c) for c in report.comparisons]
    _pair(ax, labels, base, opt, "{:.2f}")
    values = base + opt
    drop = max(abs(b - o) for b, o in zip(base, opt, strict=True)) if values else 0.0
    pad = max(0.5, 3 * drop)
    ax.set_ylim(max(0.0, min(values) - pad), min(100.0, max(values) + pad / 2) + 0.3)
    worst = min((o - b for b, o in zip(base, opt, strict=True)), default=0.0)
    what = "early-exit cascade" if report.cascade is not None else "shipped model"
    ax.set_title(f"accuracy (%), {what}: {worst:+.2f} points\n(axis zoomed to show the change)")


def _cascade_panel(ax: Any, c: CascadeResult) -> None:
    """Exit distribution per target: the share of validation inputs leaving at each stage."""
    width = 0.8 / max(len(c.targets), 1)
    for i, t in enumerate(c.targets):
        n = max(sum(t.exit_counts), 1)
        xs = [k + (i - (len(c.targets) - 1) / 2) * width for k in range(len(t.exit_counts))]
        bars = ax.bar(xs, [100 * cnt / n for cnt in t.exit_counts], width,
                      label=f"{t.format.value} {t.speedup:.2f}x faster")
        ax.bar_label(bars, fmt="%.0f%%", fontsize=8, padding=2)
    ax.set_xticks(range(len(c.stage_macs)), [f"stage {k}" for k in range(len(c.stage_macs))])
    ax.set_ylim(0, 115)
    ax.set_title("exits (% of inputs)")
    ax.legend(fontsize=8)


def print_table(report: Report, console: Any = None) -> None:
    """The before/after table(s), the steps and the remedy lines, fitted to the width
    (rich tables in a terminal, plain lines elsewhere; see :mod:`edge_sdk.tables`)."""
    import textwrap

    from edge_sdk.tables import Column, Table, output_width
    from edge_sdk.tables import print_table as show

    width = console.width if console is not None else output_width()

    def say(line: str) -> None:
        # Prose fits the width too; words (paths, numbers) are never broken.
        text = textwrap.fill(line, width, subsequent_indent="  ", break_long_words=False,
                             break_on_hyphens=False)
        if console is not None:
            console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text)

    for c in report.comparisons:
        show(Table.of(f"{report.name}: {c.format.value} float32 → optimized",
                      ("metric", *(Column(n, right=True) for n in ("baseline", "optimized", "change"))),
                      table_rows(c)), console)
        note = noise_note(c)
        if note:
            say(note)
    cols = [Column(n, right=True, wrap=n == "note") for n in STEP_COLUMNS]
    cols[0], cols[-1] = Column("step"), Column("note", wrap=True)
    show(Table.of(f"{report.name}: after each step", cols, [step_row(s) for s in report.steps]),
         console)
    for tr in report.targets:
        if tr.decision is not None:
            say(budget_line(tr, report))
        for n in tr.notes:
            say(f"note: {n}")
    if report.cascade is not None:
        _print_cascade(report.cascade, console, say)
    for w in report.warnings:
        say(f"warning: {w}")
    say(f"validation set in the bundle: {report.bundled_validation} of {report.validation_samples} "
        "selection-split samples (the device's health check replays them)")
    from edge_sdk.report_extra import held_out_lines, search_lines

    for ln in search_lines(report):
        say(ln)
    for ln in held_out_lines(report):
        say(ln)
    if report.shipped:
        say(f"shipped: {shipped_line(report)}")
    say(f"bundle: {report.bundle}")


def _print_cascade(c: CascadeResult, console: Any, say: Any) -> None:
    from edge_sdk.tables import Column, Table
    from edge_sdk.tables import print_table as show

    cols = (Column("target"), *(Column(n, right=True) for n in ("accuracy %", "mean latency ms",
                                                                  "speedup")),
            Column("exits per stage", wrap=True))
    show(Table.of(f"early exit after {', '.join(c.split_layers)} ({c.criterion}): full model → "
                  "cascade, validation, batch 1", cols, cascade_rows(c)), console)
    say(f"thresholds {[round(e.threshold, 4) for e in c.exits]}; mean MACs per input "
        f"{c.mean_macs:,.0f} of {c.full_macs:,}")
