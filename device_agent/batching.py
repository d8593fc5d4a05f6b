"""Micro-batching: gather up to ``max_batch`` readings or ``max_wait_ms``, whichever first.

The policy (:func:`batch_complete`) is pure; :func:`micro_batches` is the IO adapter:
a reader thread drains the source into a queue so a slow sensor never blocks a batch
past its deadline, and the serving thread takes batches from the queue.

A *backlogged* source (readings already waiting, e.g. a file replayed without a rate;
it says so with a true ``backlogged`` attribute) needs neither the thread nor the
deadline: :func:`queued_batches` takes up to ``backlog`` readings at a time, which is
how the serve loop batches such sources automatically (``BatchOptions.backlog``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

from device_agent.errors import EdgeError

T = TypeVar("T")
_END = object()


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    """Up to ``max_batch`` inputs per run, waiting at most ``max_wait_ms`` for the batch.

    ``backlog``: when ``max_batch`` is 1 and the source is backlogged, run up to this
    many already-queued readings together anyway (``0`` or ``1``: never). A batch of
    queued readings costs no waiting, and one runtime call per batch amortizes the
    per-call overhead that dominates a small model (see ``benchmarks/run.py``).
    """

    max_batch: int = 1
    max_wait_ms: float = 5.0
    backlog: int = 0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise EdgeError(f"--batch must be at least 1, got {self.max_batch}")
        if self.backlog < 0:
            raise EdgeError(f"--backlog-batch must not be negative, got {self.backlog}")
        if self.max_wait_ms < 0:
            raise EdgeError(f"--batch-ms must not be negative, got {self.max_wait_ms}")


def batch_complete(size: int, first_at: float, now: float, opts: BatchOptions) -> bool:
    """Whether a batch of ``size`` whose first item arrived at ``first_at`` should run now."""
    return size >= opts.max_batch or (now - first_at) * 1000.0 >= opts.max_wait_ms


def micro_batches(
    items: Iterable[T], opts: BatchOptions, *, clock: Callable[[], float] = time.monotonic
) -> Iterator[list[T]]:
    """Group ``items`` into batches; every item is yielded exactly once, in order."""
    q: queue.Queue[object] = queue.Queue(maxsize=opts.max_batch * 4)
    stop = threading.Event()

    def pump() -> None:
        try:
            for it in items:
                if stop.is_set():
                    return
                q.put(it)
        finally:
            q.put(_END)

    threading.Thread(target=pump, name="edge-batch-reader", daemon=True).start()
    try:
        yield from _take(q, opts, clock)
    finally:
        stop.set()


def _take(
    q: queue.Queue[object], opts: BatchOptions, clock: Callable[[], float]
) -> Iterator[list[T]]:
    while True:
        first = q.get()
        if first is _END:
            return
        batch = [first]
        t0 = clock()
        while not batch_complete(len(batch), t0, clock(), opts):
            left = opts.max_wait_ms / 1000.0 - (clock() - t0)
            try:
                nxt = q.get(timeout=max(left, 0.0)) if left > 0 else q.get_nowait()
            except queue.Empty:
                break
            if nxt is _END:
                yield batch  # type: ignore[misc]
                return
            batch.append(nxt)
        yield batch  # type: ignore[misc]


def is_backlogged(source: object) -> bool:
    """Whether ``source`` declares its readings already queued (``backlogged = True``)."""
    return bool(getattr(source, "backlogged", False))


def queued_batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive groups of up to ``size`` items, in order, without waiting or threads."""
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch
