"""The table layout and the plain progress lines: pure functions, exact answers."""

from __future__ import annotations

from edge_sdk.cli._progress import StepLines, format_step
from edge_sdk.report.tables import Column, Table, fold, plain_lines


def test_fold_keeps_the_key_column_in_every_block() -> None:
    assert fold([10, 10, 10, 10], [False] * 4, 80, gap=2) == [[0, 1, 2, 3]]
    assert fold([10, 30, 30, 30], [False] * 4, 80, gap=2) == [[0, 1, 2], [0, 3]]
    # A column wider than the width still gets a block; it is never cut.
    assert fold([10, 100], [False, False], 40, gap=2) == [[0, 1]]


def test_plain_lines_never_cut_numbers_and_wrap_text() -> None:
    t = Table.of("t", ["name", Column("big", right=True), Column("note", wrap=True)],
                 [("a", "1,234,567,890", "word " * 12)])
    lines = plain_lines(t, 40)
    assert any("1,234,567,890" in ln for ln in lines)
    assert all(len(ln) <= 40 for ln in lines), lines
    assert " ".join(" ".join(ln.split()) for ln in lines).count("word") == 12


def test_step_lines_one_per_step_and_at_most_every_interval() -> None:
    now = [0.0]
    out: list[str] = []
    lines = StepLines(out.append, every=5.0, clock=lambda: now[0])
    for epoch in range(40):
        now[0] = 1.0 + epoch * 0.5
        lines("distill: epochs", epoch, 40)
    now[0] = 30.0
    lines("writing bundle", 0, 1)
    assert out[0] == "[1.0s] distill: epochs 0/40"
    details: list[str] = []
    now[0] = 0.0
    with_detail = StepLines(details.append, every=5.0, clock=lambda: now[0])
    with_detail("distill: epochs, validation 97.0%", 0, 40)
    now[0] = 1.0
    with_detail("distill: epochs, validation 98.0%", 1, 40)  # same step: no new line yet
    now[0] = 6.0
    with_detail("distill: epochs, validation 98.9%", 14, 40)
    assert details == ["[0.0s] distill: epochs 0/40, validation 97.0%",
                       "[6.0s] distill: epochs 14/40, validation 98.9%, about 11s left"]
    assert len(out) == 5  # at 1, 6, 11 and 16 s over the epochs, then the next step
    assert out[1] == "[6.0s] distill: epochs 10/40, about 15s left"
    assert out[-1] == "[30.0s] writing bundle"


def test_format_step_without_counts() -> None:
    assert format_step(2.0, "loading model", 0, 1, 0.0) == "[2.0s] loading model"
