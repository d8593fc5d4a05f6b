"""One table layer for every command: tables that fit the width they are printed at.

Numbers are never cut: a column of numbers keeps its full width. When the columns do
not fit side by side, the later ones fold into a second block under the first, the
first (key) column repeated so each row stays readable; free-text columns wrap. In a
terminal the blocks are rich tables; anywhere else (a pipe, a log) they are plain,
space-aligned lines.

The layout (:func:`fold`) and the plain rendering (:func:`plain_lines`) are pure.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console, Group
    from rich.table import Table as RichTable

PLAIN_GAP = 2  # spaces between plain columns
RICH_GAP = 3  # " │ " between rich columns
RICH_EDGES = 4  # "│ " and " │"
MIN_WRAP = 16  # a wrapping column is never squeezed below this


def count(n: int, noun: str) -> str:
    """``1 device``, ``2 devices``: a count with its noun (regular plurals only)."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


@dataclass(frozen=True)
class Column:
    """One column: its header, alignment and whether its cells may wrap (free text)."""

    name: str
    right: bool = False
    wrap: bool = False


@dataclass(frozen=True)
class Table:
    """A titled table of already formatted cells."""

    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, ...], ...]
    styles: dict[str, str] | None = None  # cell text -> rich style (terminal only)

    @classmethod
    def of(cls, title: str, columns: Sequence[Column | str], rows: Sequence[Sequence[str]],
           styles: dict[str, str] | None = None) -> Table:
        """A table from column names or :class:`Column` values and rows of any printable cells."""
        cols = tuple(c if isinstance(c, Column) else Column(c) for c in columns)
        return cls(title, cols, tuple(tuple(str(c) for c in r) for r in rows), styles)

    def widths(self) -> list[int]:
        """Each column's natural width: its longest cell or header."""
        return [max([len(c.name), *(len(r[i]) for r in self.rows)])
                for i, c in enumerate(self.columns)]


def fold(widths: Sequence[int], wraps: Sequence[bool], width: int, *, gap: int,
         edges: int = 0, key: int = 1) -> list[list[int]]:
    """Column indexes per block: every block starts with the ``key`` columns and holds as
    many further columns as fit in ``width`` (wrapping columns counted at :data:`MIN_WRAP`
    at most). A single column wider than ``width`` gets a block of its own."""
    def need(i: int) -> int:
        return min(widths[i], MIN_WRAP) if wraps[i] else widths[i]

    key = min(key, len(widths))
    base = edges + sum(need(i) for i in range(key)) + gap * max(key - 1, 0)
    blocks: list[list[int]] = []
    cur, used = list(range(key)), base
    for i in range(key, len(widths)):
        if len(cur) > key and used + gap + need(i) > width:
            blocks.append(cur)
            cur, used = list(range(key)), base
        cur.append(i)
        used += gap + need(i)
    blocks.append(cur)
    return blocks


def _wrap_widths(table: Table, block: list[int], width: int, gap: int, edges: int) -> list[int]:
    """Widths of the block's columns; wrapping columns share what is left of ``width``."""
    natural = table.widths()
    fixed = sum(natural[i] for i in block if not table.columns[i].wrap)
    wrapping = [i for i in block if table.columns[i].wrap]
    spare = width - edges - gap * (len(block) - 1) - fixed
    each = max(MIN_WRAP, spare // max(len(wrapping), 1))
    return [min(natural[i], each) if table.columns[i].wrap else natural[i] for i in block]


def plain_lines(table: Table, width: int) -> list[str]:
    """The table as plain, space-aligned lines, folded to ``width``; cells never cut."""
    cols = table.columns
    blocks = fold(table.widths(), [c.wrap for c in cols], width, gap=PLAIN_GAP)
    lines = [table.title] if table.title else []
    for n, block in enumerate(blocks):
        if n:
            lines.append("")
        ws = _wrap_widths(table, block, width, PLAIN_GAP, 0)
        lines.append(_join([cols[i].name for i in block], [cols[i].right for i in block], ws))
        for row in table.rows:
            cells = [textwrap.wrap(row[i], w, break_on_hyphens=False) or [""] if cols[i].wrap
                     else [row[i]]
                     for i, w in zip(block, ws, strict=True)]
            for k in range(max(len(c) for c in cells)):
                parts = [c[k] if k < len(c) else "" for c in cells]
                lines.append(_join(parts, [cols[i].right for i in block], ws))
    return lines


def _join(cells: list[str], right: list[bool], widths: list[int]) -> str:
    sep = " " * PLAIN_GAP
    return sep.join(c.rjust(w) if r else c.ljust(w)
                    for c, r, w in zip(cells, right, widths, strict=True)).rstrip()


def rich_tables(table: Table, width: int) -> list[RichTable]:
    """The table as rich tables (one per folded block), each fitting ``width``."""
    from rich.markup import escape
    from rich.table import Table as RichTable

    cols, natural = table.columns, table.widths()
    blocks = fold(natural, [c.wrap for c in cols], width, gap=RICH_GAP, edges=RICH_EDGES)
    out = []
    for n, block in enumerate(blocks):
        t = RichTable(title=table.title if n == 0 else None)
        ws = _wrap_widths(table, block, width, RICH_GAP, RICH_EDGES)
        for i, w in zip(block, ws, strict=True):
            c = cols[i]
            t.add_column(escape(c.name), justify="right" if c.right else "left",
                         no_wrap=not c.wrap, overflow="fold",
                         min_width=None if c.wrap else w, max_width=w if c.wrap else None)
        styles = table.styles or {}
        for row in table.rows:
            t.add_row(*(_styled(escape(row[i]), styles.get(row[i])) for i in block))
        out.append(t)
    return out


def _styled(text: str, style: str | None) -> str:
    return f"[{style}]{text}[/]" if style else text


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stdout by default) is a terminal, which decides rich tables or plain lines."""
    s = stream or sys.stdout
    return bool(getattr(s, "isatty", lambda: False)())


def output_width() -> int:
    """The terminal's width; elsewhere ``COLUMNS`` or 80."""
    return shutil.get_terminal_size((80, 24)).columns


def render(table: Table, *, terminal: bool | None = None, width: int | None = None) -> Group | str:
    """Something to print for ``table``: rich renderables in a terminal, else plain text."""
    term = is_terminal() if terminal is None else terminal
    w = width or output_width()
    if term:
        from rich.console import Group

        return Group(*rich_tables(table, w))
    return "\n".join(plain_lines(table, w))


def print_table(table: Table, console: Console | None = None) -> None:
    """Print ``table`` to stdout (or ``console``), fitted to its width: rich tables in a
    terminal, plain lines elsewhere."""
    if console is None:
        if not is_terminal():
            sys.stdout.write("\n".join(plain_lines(table, output_width())) + "\n")
            return
        from rich.console import Console

        console = Console()
    if console.is_terminal:
        for t in rich_tables(table, console.width):
            console.print(t)
        return
    console.print("\n".join(plain_lines(table, console.width)), markup=False, highlight=False,
                  soft_wrap=True)
