"""The serve loop: source → engine → sinks, with observers for stats and telemetry.

One bad reading never stops the loop: it is counted, logged and skipped. Observers
(run statistics, telemetry windows) see every result and every error; they are the
extension point for telemetry, and ``engine_ref`` is the one for model swaps.

The loop is kept cheap on purpose (issue 2 asks for ≥ 0.9 of a bare ``invoke()`` loop):
per reading it does one float conversion, a one-sum finiteness check, a cached shape
plan, the runtime call and one result object; everything else is computed once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from device_agent.batching import BatchOptions, is_backlogged, micro_batches, queued_batches
from device_agent.engine import Engine, Prediction
from device_agent.errors import EdgeError
from device_agent.sinks.base import Result, Sink
from device_agent.sources.base import Reading, Source
from device_agent.stats import RunStats

log = logging.getLogger(__name__)


class Observer(Protocol):
    def on_result(self, result: Result) -> None: ...

    def on_error(self, reading: Reading, reason: str) -> None: ...


class StatsObserver:
    """Feeds :class:`RunStats` for the end-of-run summary."""

    def __init__(self, stats: RunStats):
        self.stats = stats

    def on_result(self, result: Result) -> None:
        s = self.stats
        s.count += 1
        s.latencies_ms.append(result.latency_ms)
        s.exits[result.stage] = s.exits.get(result.stage, 0) + 1
        s.cache_hits += int(result.cached)
        if result.truth is not None:
            s.labelled += 1
            s.correct += int(result.truth == result.index)

    def on_error(self, reading: Reading, reason: str) -> None:
        self.stats.errors += 1


@dataclass
class EngineRef:
    """A swappable reference: an update replaces ``engine`` between two inferences."""

    engine: Engine


def serve(
    source: Source,
    engine: Engine | EngineRef,
    *,
    sinks: Sequence[Sink] = (),
    observers: Sequence[Observer] = (),
    limit: int | None = None,
    batch: BatchOptions | None = None,
) -> RunStats:
    """Serve every reading of ``source`` until it ends (or ``limit`` results).

    ``batch.max_batch > 1`` micro-batches every source; otherwise ``batch.backlog > 1``
    batches a backlogged source (see ``device_agent.batching``) when the model takes a
    batch dimension. Batched results carry their batch's latency.
    """
    ref = engine if isinstance(engine, EngineRef) else EngineRef(engine)
    stats = RunStats()
    everyone = [StatsObserver(stats), *observers]
    start = time.perf_counter()
    try:
        if batch is not None and batch.max_batch > 1 and _can_batch(ref.engine):
            _loop_batched(micro_batches(source, batch), ref, sinks, everyone, limit)
        elif batch is not None and batch.backlog > 1 and is_backlogged(source) and ref.engine.batchable:
            _loop_batched(queued_batches(source, batch.backlog), ref, sinks, everyone, limit)
        else:
            _loop(source, ref, sinks, everyone, limit)
    finally:
        stats.elapsed_s = time.perf_counter() - start
        source.close()
        for sink in sinks:
            sink.close()
        if ref.engine.cache is not None:
            stats.cache = ref.engine.cache.counters()
    return stats


def _loop(
    source: Source,
    ref: EngineRef,
    sinks: Sequence[Sink],
    observers: Sequence[Observer],
    limit: int | None,
) -> None:
    seq = 0
    for reading in source:
        result = _serve_one(ref.engine, reading, seq, observers)
        if result is None:
            continue
        seq += 1
        for sink in sinks:
            sink.emit(result)
        if limit is not None and seq >= limit:
            return


def _loop_batched(
    batches: Iterable[list[Reading]],
    ref: EngineRef,
    sinks: Sequence[Sink],
    observers: Sequence[Observer],
    limit: int | None,
) -> None:
    seq = 0
    for readings in batches:
        for result in _serve_batch(ref.engine, readings, seq, observers):
            seq += 1
            for o in observers:
                o.on_result(result)
            for sink in sinks:
                sink.emit(result)
            if limit is not None and seq >= limit:
                return


def _can_batch(engine: Engine) -> bool:
    if engine.batchable:
        return True
    log.warning("the model's input has a fixed batch size of 1; serving one input at a time")
    return False


def _serve_one(
    engine: Engine, reading: Reading, seq: int, observers: Sequence[Observer]
) -> Result | None:
    if reading.value is None:
        return _fail(reading, reading.error or "source gave no value", observers)
    t0 = time.perf_counter()
    try:
        pred = engine.infer_one(reading.value)
    except (EdgeError, ValueError) as e:
        return _fail(reading, str(e), observers)
    result = _result(seq, reading, pred, (time.perf_counter() - t0) * 1000.0)
    for o in observers:
        o.on_result(result)
    return result


def _serve_batch(
    engine: Engine, readings: list[Reading], seq: int, observers: Sequence[Observer]
) -> list[Result]:
    good = [r for r in readings if r.value is not None]
    for r in readings:
        if r.value is None:
            _fail(r, r.error or "source gave no value", observers)
    t0 = time.perf_counter()
    try:
        preds = engine.infer_many([r.value for r in good])  # type: ignore[misc]
    except (EdgeError, ValueError) as e:  # the runtime refused the whole batch
        for r in good:
            _fail(r, str(e), observers)
        return []
    latency_ms = (time.perf_counter() - t0) * 1000.0
    out: list[Result] = []
    for r, p in zip(good, preds, strict=True):
        if isinstance(p, Exception):
            _fail(r, str(p), observers)
            continue
        out.append(_result(seq + len(out), r, p, latency_ms))
    return out


def _result(seq: int, reading: Reading, pred: Prediction, latency_ms: float) -> Result:
    return Result(
        seq=seq,
        input_id=reading.id,
        index=pred.index,
        label=pred.label,
        confidence=pred.confidence,
        latency_ms=latency_ms,
        stage=pred.stage,
        cached=pred.cached,
        truth=reading.meta.get("label"),
    )


def _fail(reading: Reading, reason: str, observers: Sequence[Observer]) -> Result | None:
    """Log and count a reading that produced no result; always ``None``."""
    log.warning("input %s skipped: %s", reading.id, reason)
    for o in observers:
        o.on_error(reading, reason)
    return None
