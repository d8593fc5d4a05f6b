"""``edge optimize`` piped at 80 columns: the tables fold instead of cutting cells, and
progress is one plain line per step on stderr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edge_sdk.cli import app
from edge_sdk.report.render import STEP_COLUMNS


def test_optimize_piped_at_80_columns(keras_cnn: Path, digits: Any, tmp_path: Path,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cnn.edgepkg"
    res = CliRunner(env={"COLUMNS": "80"}).invoke(app, [
        "optimize", str(keras_cnn), "--data", str(digits.train), "--eval-data", str(digits.test),
        "--int8", "--prune", "0.25", "--max-drop", "20", "--runs", "3", "-o", str(out)])
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert "…" not in text and "\x1b[" not in text, text
    assert all(len(line) <= 80 for line in text.splitlines() if str(tmp_path) not in line), text
    for col in (*STEP_COLUMNS, "metric", "baseline", "optimized", "change"):
        assert col in text, (col, text)
    report = json.loads(out.with_name("cnn.report.json").read_text())
    for step in report["steps"]:  # every number whole
        assert f"{step['params']:,}" in text and f"{step['macs']:,}" in text
        assert f"{step['bytes']:,}" in text
    # Progress: plain, time-stamped lines on the real stderr, never the rich spinner.
    err = capfd.readouterr().err
    progress = [ln for ln in err.splitlines() if ln.startswith("[")]
    assert any("s] prune: ranking channels 1/3" in ln for ln in progress), err
    assert "⠋" not in err and "━" not in err
