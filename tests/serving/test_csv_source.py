"""The agent on CSV files as README documents: a header is detected, a ``label`` column is
the truth, a short row is one bad reading (the agent goes on), an empty file is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from device_agent.sources.csv_rows import parse_csv
from tests.conftest import DigitsSplit
from tests.support.agent_cli import AgentRun, agent

N = 20


def _write(path: Path, digits: DigitsSplit, *, header: bool, label: bool, short: int | None = None) -> Path:
    x = digits.x_test[:N].reshape(N, -1)
    lines = []
    if header:
        lines.append(",".join([*(f"p{i}" for i in range(x.shape[1])), *(["label"] if label else [])]))
    for i, row in enumerate(x):
        cells = [f"{v:g}" for v in row] + ([str(digits.y_test[i])] if label else [])
        lines.append(",".join(cells[:10] if i == short else cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def _summary(res: AgentRun) -> dict:  # type: ignore[type-arg]
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.splitlines()[-1])["summary"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("label", [False, True])
def test_header_and_label_column(int8_tflite: Path, digits: DigitsSplit, tmp_path: Path,
                                 label: bool) -> None:
    csv = _write(tmp_path / "rows.csv", digits, header=True, label=label)
    s = _summary(agent("run", str(int8_tflite), "--source", f"file:{csv}", "-q"))
    assert (s["count"], s["errors"]) == (N, 0)
    if label:
        assert s["accuracy"] >= 0.9  # the label column is the truth, not a 65th input value
    else:
        assert "accuracy" not in s


def test_a_short_row_is_one_bad_reading(int8_tflite: Path, digits: DigitsSplit, tmp_path: Path) -> None:
    csv = _write(tmp_path / "rows.csv", digits, header=True, label=True, short=5)
    res = agent("run", str(int8_tflite), "--source", f"file:{csv}")
    s = _summary(res)
    assert (s["count"], s["errors"]) == (N - 1, 1)
    served = [json.loads(ln)["input_id"] for ln in res.stdout.splitlines()[:-1]]
    assert "rows.csv:5" not in served and "rows.csv:6" in served


def test_an_empty_csv_is_one_error_line(int8_tflite: Path, tmp_path: Path) -> None:
    for text in ("", "p0,p1,label\n"):
        csv = tmp_path / "empty.csv"
        csv.write_text(text)
        res = agent("run", str(int8_tflite), "--source", f"file:{csv}")
        assert res.exit_code == 2, res.output
        assert res.output.strip().startswith("error: ") and len(res.output.strip().splitlines()) == 1
        assert "Warning" not in res.output and str(csv) in res.output


def test_parse_csv_rules() -> None:
    rows = parse_csv([["a", "b", "Label"], ["1", "2", "3"], ["1", "x", "0"], ["4"], [""], ["5", "6", "1"]],
                     "t.csv")
    assert rows.header == ("a", "b", "Label")
    assert rows.x.shape == (4, 2) and rows.y is not None and rows.y.tolist() == [3, -1, -1, 1]
    assert rows.errors[0] is None and rows.errors[3] is None
    assert rows.errors[1] == "line 3: 'x' is not a number"
    assert rows.errors[2] == "line 4: expected 3 values, found 1"
    plain = parse_csv([["1", "2"], ["3", "4"]], "t.csv")
    assert plain.header is None and plain.y is None and np.array_equal(plain.x, [[1, 2], [3, 4]])


def test_a_run_that_serves_nothing_exits_2(int8_tflite: Path, tmp_path: Path) -> None:
    csv = tmp_path / "nan.csv"
    # The right width for the 64-value model (so it is not refused at load), but every
    # value NaN: each reading is skipped as bad.
    csv.write_text(",".join(f"p{i}" for i in range(64)) + "\n" + (",".join(["nan"] * 64) + "\n") * 2)
    res = agent("run", str(int8_tflite), "--source", f"file:{csv}", "-q")
    assert res.exit_code == 2, res.output
    assert json.loads(res.stdout.splitlines()[-1])["summary"]["errors"] == 2
    assert "error: no reading was served: all 2 failed" in res.stderr


def test_a_simulator_the_model_cannot_take_is_refused_at_load(int8_tflite: Path) -> None:
    # (6, 100) IMU windows for an 8x8 digits model: refused once, not skipped forever.
    res = agent("run", str(int8_tflite), "--source", "sim:imu", "-q")
    assert res.exit_code == 2, res.output
    said = [ln for ln in res.stderr.splitlines() if not ln.startswith("warning:")]
    assert len(said) == 1 and said[0].startswith("error: source sim:imu") and "(6, 100)" in said[0], res.stderr
