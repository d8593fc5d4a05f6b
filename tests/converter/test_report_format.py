"""The report's renderings (pure): accuracy in points, fixed decimals, noise said as such,
the chart's labels and zoomed accuracy axis, and Markdown that renders."""

from __future__ import annotations

import itertools
from pathlib import Path

from device_agent.protocol.manifest import ModelFormat
from edge_sdk.passes.quantize.base import Attempt, Decision, QuantizeConfig
from edge_sdk.recipe.result import Comparison, ModelMetrics, Report, StepRecord, TargetResult
from edge_sdk.report.render import (
    budget_line,
    chart,
    headline,
    noise_note,
    table_rows,
    to_markdown,
    write_chart,
)


def _metrics(size: int, acc: float, lat: float, thr: float, rss: float) -> ModelMetrics:
    return ModelMetrics(size_bytes=size, accuracy=acc, error_rate=round(100 - acc, 4), latency_p50_ms=lat,
                   throughput_per_s=thr, peak_rss_mb=rss)


def _report(tmp_path: Path, *, budget: float = 1.0, max_drop: float = 1.0) -> Report:
    c = Comparison(ModelFormat.TFLITE, _metrics(99_736, 99.0, 0.5, 2000.0, 43.7),
                   _metrics(31_632, 98.43, 0.513, 2900.0, 43.5),
                   spread_pct={"latency_p50_ms": 3.0, "throughput_per_s": 2.0, "peak_rss_mb": 1.0})
    attempt = Attempt("none", "the requested settings", QuantizeConfig(), 98.43, 0.57)
    target = TargetResult(ModelFormat.TFLITE, tmp_path / "f.tflite", tmp_path / "q.tflite", 99.0, 98.43,
                          Decision(attempt, (attempt,), b"", budget), ("a note",))
    steps = (StepRecord("baseline", 99.0, 23_946, 194_176, None, "keras"),
             StepRecord("int8 tflite", 98.43, 23_948, 194_176, 31_632, "", 26_262, 0.0443))
    return Report("cnn", "1.0.0", tmp_path / "cnn.edgepkg", "cnn.keras", {"max_drop_points": max_drop},
                  steps, (target,), (c,), 200, 360, shipped={"bundle": 38_400, "tflite": 26_262})


def test_points_decimals_and_noise(tmp_path: Path) -> None:
    rows = {r[0]: r[1:] for r in table_rows(_report(tmp_path).comparisons[0])}
    assert rows["accuracy [%]"] == ("99.00", "98.43", "-0.57 pts")  # points, not -0.6%
    assert rows["size [bytes]"] == ("99,736", "31,632", "-68.3%")
    assert rows["latency p50 (batch 1) [ms]"] == ("0.500", "0.513", "+2.6% (noise)")  # within 3%
    assert rows["throughput (batch 32) [/s]"] == ("2,000", "2,900", "+45.0%")  # beyond 2%: real
    note = noise_note(_report(tmp_path).comparisons[0])
    assert note is not None and "latency p50 (batch 1) +2.6%" in note and "3.0%" in note
    assert "throughput" not in note


def test_budget_in_points_and_why_it_differs(tmp_path: Path) -> None:
    r = _report(tmp_path, budget=0.7519, max_drop=0.5)
    line = budget_line(r.targets[0], r)
    assert "budget 0.75 points" in line and "--max-drop 0.5 leaves" in line and "0.7519" not in line
    same = _report(tmp_path)
    assert budget_line(same.targets[0], same).endswith("(budget 1.00 points)")


def test_markdown_renders(tmp_path: Path) -> None:
    md = to_markdown(_report(tmp_path)).splitlines()
    for above, line in itertools.pairwise(md):
        if line.startswith("- ") or (line and not line.startswith("|") and above.startswith("|")):
            assert not above.startswith("|"), (above, line)  # a blank line ends every table
    assert "Shipped: bundle 38,400 bytes (tflite model 26,262 bytes stored)." in md
    assert any("| baseline | 99.00 | 23,946 | 194,176 | - |" in ln for ln in md)


def test_chart_labels_every_bar_and_zooms_accuracy(tmp_path: Path) -> None:
    r = _report(tmp_path)
    fig = chart(r)
    _size_ax, _, acc_ax = fig.axes
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    for label in ("97.4", "25.6", "0.500", "0.513", "99.00", "98.43"):  # shipped KB: 26,262 / 1024
        assert label in texts, (label, texts)
    lo, hi = acc_ax.get_ylim()
    assert 95 < lo < 98.43 and hi <= 100.3  # the 0.57-point drop is visible
    assert "3.8x smaller, latency within noise" in headline(r)  # 99,736 float32 bytes / 26,262 shipped
    assert "-0.57 points" in headline(r)
    write_chart(r, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_json_keeps_percent_and_adds_points(tmp_path: Path) -> None:
    c = _report(tmp_path).to_dict()["comparisons"][0]
    assert c["change_pct"]["accuracy"] == round((98.43 - 99.0) / 99.0 * 100, 2)  # relative, as before
    assert c["change_points"] == {"accuracy": -0.57, "error_rate": 0.57}
    assert c["noise"] == ["latency_p50_ms", "peak_rss_mb"] and c["run_spread_pct"]["latency_p50_ms"] == 3.0
