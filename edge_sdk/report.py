"""The before/after report of ``edge optimize``: typed values, and their JSON, Markdown,
PNG chart and terminal table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device_agent.manifest import ModelFormat
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


def change_pct(before: float, after: float) -> float | None:
    """Relative change in percent; ``None`` when the baseline is zero."""
    if before == 0:
        return None
    return round((after - before) / before * 100.0, 2)


@dataclass(frozen=True)
class Comparison:
    """Baseline (float export) against optimized, for one target format."""

    format: ModelFormat
    baseline: Metrics
    optimized: Metrics

    def changes(self) -> dict[str, float | None]:
        b, o = asdict(self.baseline), asdict(self.optimized)
        return {k: change_pct(b[k], o[k]) for k, _, _ in ROWS}


@dataclass(frozen=True)
class StepRecord:
    """The model measured after one step of the recipe."""

    step: str
    accuracy: float
    params: int
    macs: int
    bytes: int  # raw bytes of the step's model file (Keras steps: exported float TFLite)
    note: str = ""
    compressed_bytes: int | None = None  # ``bytes`` after the bundle's codec (zstd if none)
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
    held_out: HeldOut | None = None  # the final figures, on a split no choice looked at

    def to_dict(self) -> dict[str, Any]:
        return {
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
                 "optimized": asdict(c.optimized), "change_pct": c.changes()}
                for c in self.comparisons
            ],
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
    if unit == "bytes":
        return f"{int(v):,}"
    return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.4g}"


def _pct(p: float | None) -> str:
    return "n/a" if p is None else f"{p:+.1f}%"


def table_rows(c: Comparison) -> list[tuple[str, str, str, str]]:
    """(metric, baseline, optimized, change) rows, formatted."""
    b, o, ch = asdict(c.baseline), asdict(c.optimized), c.changes()
    return [(f"{label} [{unit}]", _fmt(b[k], unit), _fmt(o[k], unit), _pct(ch[k]))
            for k, label, unit in ROWS]


STEP_COLUMNS = ("step", "accuracy %", "params", "MACs", "raw bytes", "compressed bytes",
                "latency p50 ms", "note")


def step_row(s: StepRecord) -> tuple[str, ...]:
    """One step, formatted in :data:`STEP_COLUMNS` order ("-" where not measured)."""
    opt = "-" if s.compressed_bytes is None else f"{s.compressed_bytes:,}"
    lat = "-" if s.latency_p50_ms is None else f"{s.latency_p50_ms:.4g}"
    return (s.step, f"{s.accuracy:.2f}", f"{s.params:,}", f"{s.macs:,}", f"{s.bytes:,}", opt, lat, s.note)


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
        lines += [f"- {n}" for n in t.notes]
    if report.cascade is not None:
        lines += ["", *cascade_markdown(report.cascade)]
    from edge_sdk.report_extra import held_out_lines, search_lines

    if search_lines(report):
        lines += ["", "## Search candidates", "", "```", *search_lines(report), "```"]
    if report.held_out is not None:
        lines += ["", "## Held-out accuracy (the before/after accuracies; steps: selection split)", "",
                  *(f"- {ln}" for ln in held_out_lines(report))]
    return "\n".join(lines) + "\n"


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


def write_chart(report: Report, path: Path) -> None:
    """Bars of size, latency and accuracy, baseline against optimized, per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("size_bytes", "size (KB)", 1 / 1024), ("latency_p50_ms", "latency p50 (ms)", 1.0),
              ("accuracy", "accuracy (%)", 1.0))
    from edge_sdk.report_extra import front_panel, has_front

    panels_n = 3 + (report.cascade is not None) + has_front(report)
    fig, axes = plt.subplots(1, panels_n, figsize=(3.6 * panels_n + 0.2, 3.6))
    labels = [c.format.value for c in report.comparisons]
    pos = list(range(len(labels)))
    if report.cascade is not None:
        _cascade_panel(axes[3], report.cascade)
    if has_front(report):
        front_panel(axes[-1], report)
    for ax, (key, title, k) in zip(axes[:3], panels, strict=True):
        b = [getattr(c.baseline, key) * k for c in report.comparisons]
        o = [getattr(c.optimized, key) * k for c in report.comparisons]
        ax.bar([p - 0.2 for p in pos], b, 0.4, label="baseline (float32)")
        ax.bar([p + 0.2 for p in pos], o, 0.4, label="optimized")
        ax.set_xticks(pos, labels)
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{report.name} {report.version}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _cascade_panel(ax: Any, c: CascadeResult) -> None:
    """Exit distribution per target: the share of validation inputs leaving at each stage."""
    width = 0.8 / max(len(c.targets), 1)
    for i, t in enumerate(c.targets):
        n = max(sum(t.exit_counts), 1)
        xs = [k + (i - (len(c.targets) - 1) / 2) * width for k in range(len(t.exit_counts))]
        ax.bar(xs, [100 * cnt / n for cnt in t.exit_counts], width,
               label=f"{t.format.value} {t.speedup:.1f}x faster")
    ax.set_xticks(range(len(c.stage_macs)), [f"stage {k}" for k in range(len(c.stage_macs))])
    ax.set_title("exits (% of inputs)")
    ax.legend(fontsize=8)


def print_table(report: Report, console: Any = None) -> None:
    """The before/after table(s) and the steps, with rich."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = console or Console()
    for c in report.comparisons:
        t = Table(title=f"{report.name}: {c.format.value} float32 → optimized")
        for col, just in (("metric", "left"), ("baseline", "right"), ("optimized", "right"),
                          ("change", "right")):
            t.add_column(col, justify=just)  # type: ignore[arg-type]
        for r in table_rows(c):
            t.add_row(*(escape(cell) for cell in r))
        con.print(t)
    steps = Table(title=f"{report.name}: after each step")
    for col in STEP_COLUMNS:
        steps.add_column(col, justify="left" if col in ("step", "note") else "right",
                         no_wrap=col != "note")
    for s in report.steps:
        steps.add_row(*(escape(cell) for cell in step_row(s)))
    con.print(steps)
    for tr in report.targets:
        if tr.decision is not None:
            ch = tr.decision.chosen
            con.print(f"int8 {tr.format.value}: remedy [bold]{escape(ch.remedy)}[/] "
                      f"({escape(ch.reason)}); "
                      f"drop {ch.drop:+.2f} points (budget {tr.decision.budget})")
        for n in tr.notes:
            con.print(f"note: {escape(n)}")
    if report.cascade is not None:
        _print_cascade(con, report.cascade)
    from edge_sdk.report_extra import held_out_lines, search_lines

    for ln in search_lines(report):
        con.print(escape(ln), highlight=False, soft_wrap=True)
    for ln in held_out_lines(report):
        con.print(escape(ln), style="bold red" if ln.startswith("warning:") else None)
    con.print(f"bundle: {escape(str(report.bundle))}")


def _print_cascade(con: Any, c: CascadeResult) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"early exit after {', '.join(c.split_layers)} ({c.criterion}): full model → "
                    "cascade, validation, batch 1")
    for col in ("target", "accuracy %", "mean latency ms", "speedup", "exits per stage"):
        t.add_column(col, justify="left" if col in ("target", "exits per stage") else "right")
    for r in cascade_rows(c):
        t.add_row(*(escape(cell) for cell in r))
    con.print(t)
    con.print(f"thresholds {[round(e.threshold, 4) for e in c.exits]}; mean MACs per input "
              f"{c.mean_macs:,.0f} of {c.full_macs:,}")
