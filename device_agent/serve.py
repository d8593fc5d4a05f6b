"""The serve loop: source → engine → sinks, counting into a :class:`RunStats`.

One bad reading never stops the loop: it is counted, logged and skipped. Observers see
every result and every error (model swaps' probation uses them); telemetry reads the
``RunStats`` at each window's end instead, so it costs nothing per inference.

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
from device_agent.stats import TRIM_EVERY, RunStats

log = logging.getLogger(__name__)
LOG_FIRST = 20  # skipped readings logged one by one, then one in LOG_EVERY
LOG_EVERY = 10_000


class Observer(Protocol):
    """Sees every result and every failed reading of the serve loop (probation counts them)."""

    def on_result(self, result: Result) -> None:
        """Called on the serve loop's thread for each served result; must be cheap."""

    def on_error(self, reading: Reading, reason: str) -> None:
        """Called on the serve loop's thread for each reading that failed, with why."""


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
    stats: RunStats | None = None,
) -> RunStats:
    """Serve every reading of ``source`` until it ends (or ``limit`` readings are taken,
    answered or not).

    ``batch.max_batch > 1`` micro-batches every source; otherwise ``batch.backlog > 1``
    batches a backlogged source (see ``device_agent.batching``) when the model takes a
    batch dimension. Batched results carry their batch's latency.

    ``stats``: count into this (e.g. one that telemetry watches) rather than a new one.
    """
    ref = engine if isinstance(engine, EngineRef) else EngineRef(engine)
    stats = RunStats() if stats is None else stats
    start = time.perf_counter()
    try:
        if batch is not None and batch.max_batch > 1 and _can_batch(ref.engine):
            _loop_batched(micro_batches(source, batch), ref, sinks, observers, stats, limit)
        elif batch is not None and batch.backlog > 1 and is_backlogged(source) and ref.engine.batchable:
            _loop_batched(queued_batches(source, batch.backlog), ref, sinks, observers, stats, limit)
        else:
            _loop(source, ref, sinks, observers, stats, limit)
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
    stats: RunStats,
    limit: int | None,
) -> None:
    """Serve one reading at a time, counting results in ``stats.count``."""
    # The per-reading path, kept flat: one engine call, one clock pair, and a Result only
    # when a sink or observer reads it.
    seq, taken, clock = 0, 0, time.perf_counter
    latencies, exits, trim_every = stats.latencies_ms, stats.exits, TRIM_EVERY
    consumers = bool(sinks or observers)
    try:
        for reading in source:
            taken += 1
            value = reading.value
            if value is None:
                _fail(reading, reading.error or "source gave no value", observers, stats)
                if limit is not None and taken >= limit:
                    return
                continue
            t0 = clock()
            try:
                engine = ref.engine
                pred = (engine.infer_one(value, reading.finite, reading.meta.get("stream", ""))
                        if engine.state is not None else engine.infer_one(value, reading.finite))
            except (EdgeError, ValueError) as e:
                _fail(reading, str(e), observers, stats)
                if limit is not None and taken >= limit:
                    return
                continue
            ms = (clock() - t0) * 1000.0
            truth = reading.meta.get("label")
            # RunStats.add, inlined: a call level costs ~0.5 µs here
            latencies.append(ms)
            exits[pred.stage] = exits.get(pred.stage, 0) + 1
            if pred.cached:
                stats.cache_hits += 1
            if truth is not None and pred.outputs is None:  # a class to score: classifiers only
                stats.labelled += 1
                stats.correct += int(truth == pred.index)
            if consumers:  # a Result only for someone to read it (-q with telemetry: nobody)
                result = Result(seq, reading.id, pred.index, pred.label, pred.confidence, ms,
                                pred.stage, pred.cached, truth, pred.outputs)
                for o in observers:
                    o.on_result(result)
                for sink in sinks:
                    sink.emit(result)
            seq += 1
            if not seq % trim_every:
                stats.trim()
            if limit is not None and taken >= limit:
                return
    finally:
        stats.count += seq  # also when the source or a sink raises, or on a signal


def _loop_batched(
    batches: Iterable[list[Reading]],
    ref: EngineRef,
    sinks: Sequence[Sink],
    observers: Sequence[Observer],
    stats: RunStats,
    limit: int | None,
) -> None:
    seq = taken = 0
    for readings in batches:
        if limit is not None:
            readings = readings[: max(0, limit - taken)]
        taken += len(readings)
        for result in _serve_batch(ref.engine, readings, seq, observers, stats):
            seq += 1
            stats.add(result)
            if not stats.count % TRIM_EVERY:
                stats.trim()
            for o in observers:
                o.on_result(result)
            for sink in sinks:
                sink.emit(result)
        if limit is not None and taken >= limit:
            return


def _can_batch(engine: Engine) -> bool:
    if engine.batchable:
        return True
    log.warning("the model's input has a fixed batch size of 1; serving one input at a time")
    return False


def _serve_batch(
    engine: Engine, readings: list[Reading], seq: int, observers: Sequence[Observer], stats: RunStats
) -> list[Result]:
    good = [r for r in readings if r.value is not None]
    for r in readings:
        if r.value is None:
            _fail(r, r.error or "source gave no value", observers, stats)
    t0 = time.perf_counter()
    try:
        preds = engine.infer_many([r.value for r in good])  # type: ignore[misc]
    except (EdgeError, ValueError) as e:  # the runtime refused the whole batch
        for r in good:
            _fail(r, str(e), observers, stats)
        return []
    latency_ms = (time.perf_counter() - t0) * 1000.0
    out: list[Result] = []
    for r, p in zip(good, preds, strict=True):
        if isinstance(p, Exception):
            _fail(r, str(p), observers, stats)
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
        outputs=pred.outputs,
    )


def _fail(reading: Reading, reason: str, observers: Sequence[Observer], stats: RunStats) -> None:
    """Count a reading that produced no result; log the first ones and then one in
    ``LOG_EVERY`` (a source failing every reading must not flood the log)."""
    stats.errors += 1
    if stats.errors <= LOG_FIRST:
        log.warning("input %s skipped: %s", reading.id, reason)
    elif stats.errors % LOG_EVERY == 0:
        log.warning("input %s skipped: %s (%d readings skipped so far; logging one in %d)",
                    reading.id, reason, stats.errors, LOG_EVERY)
    for o in observers:
        o.on_error(reading, reason)
