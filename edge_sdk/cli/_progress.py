"""Rich progress for long steps (calibration, conversion), as a pass ``Progress`` callback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from edge_sdk.passes.base import Progress, no_progress


@contextlib.contextmanager
def rich_progress(*, enabled: bool = True) -> Iterator[Progress]:
    """A spinner with the current step on stderr; ``enabled=False`` yields a no-op."""
    if not enabled:
        yield no_progress
        return
    from rich.console import Console
    from rich.progress import BarColumn, SpinnerColumn, TextColumn
    from rich.progress import Progress as RichProgress

    from edge_sdk._quiet import terminal_stderr

    # Its own handle on stderr: converter logs are swallowed meanwhile, progress is not.
    with terminal_stderr() as err, RichProgress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
        console=Console(file=err), transient=True,
    ) as bar:
        task = bar.add_task("starting", total=1)

        def update(desc: str, done: int, total: int) -> None:
            bar.update(task, description=desc, completed=done, total=max(total, 1))

        yield update
