"""The budget covers every step; the final figures come from a split no choice looked at."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from device_agent.bundle import read_manifest
from device_agent.errors import EdgeError
from edge_sdk.cli import app
from edge_sdk.measure.holdout import HeldOut, lines, paired_drop, stratified_split
from edge_sdk.recipe.budget import check_step, last_line, summary


def _run(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


# -- pure -------------------------------------------------------------------------------


def test_a_step_over_the_budget_is_refused_with_its_cost() -> None:
    assert check_step("prune", before=99.0, after=98.5, baseline=99.0, budget=1.0, force=False) is None
    with pytest.raises(EdgeError, match=r"--prune: prune costs 2\.00 points .*exceeds --max-drop 1\.0"):
        check_step("prune", before=99.0, after=97.0, baseline=99.0, budget=1.0, force=False)
    over = check_step("share", before=98.5, after=97.5, baseline=99.0, budget=1.0, force=True)
    assert over is not None and over.cost_points == 1.0 and over.total_drop_points == 1.5
    line = last_line(summary(1.0, True, [over]))
    assert line == "OVER BUDGET (--force): share cost 1.00 points; total drop 1.50 points, over the budget of 1.0"
    assert last_line(summary(1.0, False, [])) is None


def test_the_held_out_split_is_stratified_seeded_and_disjoint() -> None:
    y = np.repeat(np.arange(5), [40, 40, 20, 8, 1])
    held, rest = stratified_split(y, 0.25, seed=11)
    assert np.intersect1d(held, rest).size == 0 and len(held) + len(rest) == len(y)
    assert np.bincount(y[held], minlength=5).tolist() == [10, 10, 5, 2, 0]  # one-sample class stays
    again, _ = stratified_split(y, 0.25, seed=11)
    other, _ = stratified_split(y, 0.25, seed=12)
    np.testing.assert_array_equal(held, again)
    assert not np.array_equal(held, other)


def test_paired_drop_counts_samples_and_gives_an_interval() -> None:
    y = np.zeros(400, dtype=np.int64)
    base = y.copy()
    base[:4] = 1  # the baseline misses 4
    opt = y.copy()
    opt[2:11] = 1  # misses 9: 7 lost (rows 4..10), 2 gained (rows 0..1)
    d = paired_drop(y, base, opt)
    assert (d.lost, d.gained, d.net, d.samples) == (7, 2, 5, 400)
    assert d.baseline_accuracy == 99.0 and d.accuracy == pytest.approx(97.75)
    assert d.drop_points == pytest.approx(1.25) and d.points_per_sample == 0.25
    diffs = np.r_[np.full(7, 1.0), np.full(2, -1.0), np.zeros(391)]
    half = 1.959964 * diffs.std(ddof=1) / math.sqrt(400) * 100
    assert d.low_points == pytest.approx(1.25 - half, abs=1e-3)
    assert d.high_points == pytest.approx(1.25 + half, abs=1e-3)
    h = HeldOut(source="split of --data d.npz", from_data=True, samples=400, selection_samples=500,
                seed=1, fraction=0.25, budget=1.0, drops={"tflite": d}, selection_drops={"tflite": 0.4})
    text = "\n".join(lines(h))
    assert "drop +1.25 points (5 net samples of 400: 7 lost, 2 gained; 95% interval" in text
    assert "EXCEEDS the budget of 1.0 points (the selection split said 0.40)" in text
    assert "optimistic if that data trained the model" in text
    assert "probably seen this data" not in text  # the baseline is 99.0%, not near-perfect
    assert "coarser than" not in text  # one selection sample is 0.20 points, within 1.0
    coarse = HeldOut(source="split of --data d.npz", from_data=True, samples=24, selection_samples=16,
                     seed=1, fraction=0.25, budget=0.5, drops={}, selection_drops={})
    (w,) = [w for w in coarse.warnings() if "coarser" in w]
    assert w.startswith("the selection split has 16 samples (one = 6.25 points), coarser than the 0.5-point")


# -- through the CLI ----------------------------------------------------------------------


def test_prune_without_int8_is_held_to_the_default_budget(keras_cnn: Path, digits: Any,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "p.edgepkg"
    res = _run("optimize", keras_cnn, "--data", digits.train, "--prune", "0.9", "--runs", "2",
               "--no-step-metrics", "-o", out)
    assert res.exit_code == 2, res.output
    (line,) = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert "--prune: prune costs" in line and "exceeds --max-drop 1.0" in line and "--force" in line
    assert not out.exists() and not list(tmp_path.iterdir())


def test_forced_overrun_is_the_last_line_and_in_the_manifest(keras_cnn: Path, digits: Any,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "f.edgepkg"
    res = _run("optimize", keras_cnn, "--data", digits.train, "--prune", "0.9", "--force", "--runs", "2",
               "--no-step-metrics", "-o", out)
    assert res.exit_code == 0, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("OVER BUDGET (--force): prune cost "), last
    budget = read_manifest(out).optimization["recipe"]["budget"]
    (over,) = budget["overruns"]
    assert budget["force"] is True and over["step"] == "prune" and over["total_drop_points"] > 1.0
    rep = json.loads((tmp_path / "f.report.json").read_text())
    held = rep["held_out"]
    # No --eval-data: a stratified quarter of --data, which the selection split never touched.
    n_train = len(digits.y_train)
    assert held["from_data"] and abs(held["samples"] - n_train / 4) <= 10
    assert rep["validation_samples"] + rep["calibration_samples"] <= n_train - held["samples"]
    assert "tflite" in held["over_budget"]
    text = " ".join(res.output.split())
    assert "EXCEEDS the budget" in text and "optimistic if that data trained the model" in text
    d = held["drops"]["tflite"]
    assert rep["comparisons"][0]["optimized"]["accuracy"] == d["accuracy"]  # the table is held-out
    assert d["net_samples"] == d["lost"] - d["gained"] and d["low_points"] <= d["drop_points"] <= d["high_points"]
