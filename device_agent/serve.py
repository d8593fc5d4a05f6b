"""The serve loop: source → engine → sinks, with observers for stats and telemetry.

One bad reading never stops the loop: it is counted, logged and skipped. Observers
(run statistics, telemetry windows) see every result and every error; they are the
extension point for telemetry, and ``engine_ref`` is the one for model swaps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from device_agent.engine import Engine
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
) -> RunStats:
    """Serve every reading of ``source`` until it ends (or ``limit`` results)."""
    ref = engine if isinstance(engine, EngineRef) else EngineRef(engine)
    stats = RunStats()
    everyone = [StatsObserver(stats), *observers]
    seq = 0
    start = time.perf_counter()
    try:
        for reading in source:
            result = _serve_one(ref.engine, reading, seq, everyone)
            if result is None:
                continue
            seq += 1
            for sink in sinks:
                sink.emit(result)
            if limit is not None and seq >= limit:
                break
    finally:
        stats.elapsed_s = time.perf_counter() - start
        source.close()
        for sink in sinks:
            sink.close()
    return stats


def _serve_one(engine: Engine, reading: Reading, seq: int, observers: Sequence[Observer]) -> Result | None:
    if reading.value is None:
        _fail(reading, reading.error or "source gave no value", observers)
        return None
    t0 = time.perf_counter()
    try:
        x = np.asarray(reading.value, dtype=np.float32)[None, ...]
        pred = engine.infer(x)[0]
    except (EdgeError, ValueError) as e:
        _fail(reading, str(e), observers)
        return None
    latency_ms = (time.perf_counter() - t0) * 1000.0
    result = Result(
        seq=seq,
        input_id=reading.id,
        index=pred.index,
        label=pred.label,
        confidence=round(pred.confidence, 6),
        latency_ms=round(latency_ms, 4),
        stage=pred.stage,
        cached=pred.cached,
        truth=reading.meta.get("label"),
    )
    for o in observers:
        o.on_result(result)
    return result


def _fail(reading: Reading, reason: str, observers: Sequence[Observer]) -> None:
    log.warning("input %s skipped: %s", reading.id, reason)
    for o in observers:
        o.on_error(reading, reason)
    return None
