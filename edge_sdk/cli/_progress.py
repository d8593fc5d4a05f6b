"""Progress of long steps (calibration, conversion, training) as a pass ``Progress``
callback: counts, elapsed and estimated time on a terminal; elsewhere (a pipe, a log)
one plain line per step and at most one every few seconds within a step, e.g.
``[12.3s] distill: epochs 14/40, about 20s left``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import IO

from edge_sdk.passes.base import Progress, no_progress

PLAIN_EVERY_S = 5.0


def step_key(desc: str) -> str:
    """What names a step: the description up to its first ``, `` (details may change)."""
    return desc.split(", ", 1)[0]


def format_step(elapsed: float, desc: str, done: int, total: int, step_elapsed: float) -> str:
    """``[12.3s] distill: epochs 14/40, validation 98.9%, about 20s left`` (no count for a
    one-shot step)."""
    name, _, detail = desc.partition(", ")
    line = f"[{elapsed:.1f}s] {name}"
    if total > 1:
        line += f" {done}/{total}"
    if detail:
        line += f", {detail}"
    if total > 1 and 0 < done < total and step_elapsed / done * (total - done) >= 1:
        line += f", about {step_elapsed / done * (total - done):.0f}s left"
    return line


class StepLines:
    """The plain rendering: a line when a step starts, then at most one per ``every`` s."""

    def __init__(self, write: Callable[[str], None], *, every: float = PLAIN_EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
        self._write, self._every, self._clock = write, every, clock
        self._start = clock()
        self._step: tuple[str, int] | None = None
        self._step_start = self._last = self._start

    def __call__(self, desc: str, done: int, total: int) -> None:
        now = self._clock()
        if (step_key(desc), total) != self._step:
            self._step, self._step_start = (step_key(desc), total), now
        elif now - self._last < self._every:
            return
        self._last = now
        self._write(format_step(now - self._start, desc, done, total, now - self._step_start))


@contextlib.contextmanager
def rich_progress(*, enabled: bool = True) -> Iterator[Progress]:
    """Progress on stderr; ``enabled=False`` yields a no-op."""
    if not enabled:
        yield no_progress
        return
    from edge_sdk._quiet import terminal_stderr

    # Its own handle on stderr: converter logs are swallowed meanwhile, progress is not.
    with terminal_stderr() as err:
        if not err.isatty():
            yield StepLines(lambda line: print(line, file=err, flush=True))
            return
        with _bar(err) as update:
            yield update


@contextlib.contextmanager
def _bar(err: IO[str]) -> Iterator[Progress]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    with RichProgress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
        TextColumn("{task.fields[count]}"), TimeElapsedColumn(), TextColumn("eta"),
        TimeRemainingColumn(), console=Console(file=err), transient=True,
    ) as bar:
        task = bar.add_task("starting", total=1, count="")
        step: list[tuple[str, int]] = []

        def update(desc: str, done: int, total: int) -> None:
            count = f"{done}/{total}" if total > 1 else ""
            if step != [(step_key(desc), total)]:
                # A new step: restart the clock the estimate is based on.
                step[:] = [(step_key(desc), total)]
                bar.reset(task, description=desc, completed=done, total=max(total, 1), count=count)
                return
            bar.update(task, description=desc, completed=done, total=max(total, 1), count=count)

        yield update
