"""Window aggregation (pure, exact) and the durable outbox (real SQLite files)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from device_agent.sinks.base import Result
from device_agent.stats import LATENCIES_KEPT, RunStats, StatsCursor
from device_agent.telemetry.outbox import Outbox
from device_agent.telemetry.system import read_temperature
from device_agent.telemetry.window import SystemSample, WindowAggregator


def test_window_aggregates_exactly_and_rolls_over() -> None:
    stats = RunStats()
    cursor = StatsCursor(stats)
    agg = WindowAggregator(boot_id="b", start=100.0)
    lat = [float(i) for i in range(1, 101)]
    for i, v in enumerate(lat):
        _count(stats, v, stage=i % 2, cached=i % 10 == 0)
        if i == 49:
            agg.add(cursor.read())  # a window may be read in parts
    stats.errors += 1
    agg.add(cursor.read())
    w = agg.close(110.0, system=SystemSample(cpu_percent=5.0, rss_bytes=7), dropped=3)
    assert (w.seq, w.boot_id, w.start, w.end) == (0, "b", 100.0, 110.0)
    assert (w.inferences, w.errors, w.cache_hits, w.dropped) == (100, 1, 10, 3)
    assert w.throughput == 10.0
    assert w.latency_p50 == round(float(np.percentile(lat, 50)), 4)
    assert w.latency_p95 == round(float(np.percentile(lat, 95)), 4)
    assert w.latency_p99 == round(float(np.percentile(lat, 99)), 4)
    assert w.exits == {"0": 50, "1": 50}
    assert (w.cpu_percent, w.rss_bytes, w.temperature_c) == (5.0, 7, None)
    agg.add(cursor.read())
    empty = agg.close(120.0)
    assert (empty.seq, empty.start, empty.inferences, empty.throughput) == (1, 110.0, 0, 0.0)
    assert empty.exits == {} and empty.errors == 0


def _count(stats: RunStats, ms: float, *, stage: int = 0, cached: bool = False) -> None:
    stats.add(Result(seq=0, input_id="x", index=0, label="0", confidence=1.0, latency_ms=ms,
                     stage=stage, cached=cached))


def test_cursor_reads_across_trims_and_carries_an_early_hit() -> None:
    stats = RunStats()
    cursor = StatsCursor(stats)
    n = 2 * LATENCIES_KEPT + 10
    for i in range(n):
        _count(stats, float(i))
    stats.trim()  # drops the oldest latencies, some never read
    d = cursor.read()
    assert d.inferences == n and d.exits == {0: n}
    assert d.latencies_ms == [float(i) for i in range(n - LATENCIES_KEPT, n)]
    _count(stats, 1.0)
    stats.trim()  # nothing to trim
    assert cursor.read().latencies_ms == [1.0]
    # A reader racing the loop may see a reading's exit but not yet its cache hit (the
    # loop writes the exit first): the hit then shows up in a read with no new inference
    # and waits for a delta that has one to carry it.
    stats.exits[0] += 1
    stats.latencies_ms.append(1.0)
    assert (cursor.read().inferences, 0) == (1, 0)
    stats.cache_hits += 1
    early = cursor.read()
    assert (early.inferences, early.cache_hits) == (0, 0)
    _count(stats, 2.0)
    late = cursor.read()
    assert (late.inferences, late.cache_hits) == (1, 1)


def test_cursor_counts_a_running_serve_loop_exactly(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    """A reader thread reads as fast as it can while the loop serves: nothing is counted
    twice or lost, and no delta has more hits than inferences."""
    from device_agent.cache import CacheConfig
    from device_agent.engine import Engine, EngineOptions
    from device_agent.runtimes import load_model
    from device_agent.serve import serve
    from device_agent.sources import open_source

    model, data = tiny_model
    x = np.load(data)["x"]
    np.savez(tmp_path / "x.npz", x=np.concatenate([x, x[:32]]))  # a third of them repeat
    engine = Engine(load_model(model), options=EngineOptions(cache=CacheConfig.parse("exact")))
    stats = RunStats()
    cursor = StatsCursor(stats)
    deltas = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            deltas.append(cursor.read())
        deltas.append(cursor.read())

    t = threading.Thread(target=read)
    t.start()
    try:
        serve(open_source(f"file:{tmp_path / 'x.npz'}?loop=1"), engine, stats=stats, limit=9_600)
    finally:
        done.set()
        t.join()
    assert len(deltas) >= 3  # the reader ran while the loop served
    assert sum(d.inferences for d in deltas) == stats.count == 9_600
    assert sum(d.cache_hits for d in deltas) == stats.cache_hits == 9_600 - 64
    assert all(d.cache_hits <= d.inferences for d in deltas)
    assert sum(len(d.latencies_ms) for d in deltas) == 9_600


def test_temperature_reads_the_hottest_zone(tmp_path: Path) -> None:
    for i, milli in enumerate(["41000", "55500", "garbage"]):
        (tmp_path / f"thermal_zone{i}").mkdir()
        (tmp_path / f"thermal_zone{i}" / "temp").write_text(milli + "\n")
    assert read_temperature(tmp_path) == 55.5
    assert read_temperature(tmp_path / "none") is None


def _put(box: Outbox, seq: int) -> None:
    box.put("t", lambda dropped: json.dumps({"seq": seq, "dropped": dropped}).encode())


def test_outbox_keeps_order_survives_reopen_and_reports_drops_once(tmp_path: Path) -> None:
    path = tmp_path / "ob.db"
    box = Outbox(path, cap=3)
    for seq in range(5):  # the cap drops 0 (while 3 is stored) and 1 (while 4 is stored)
        _put(box, seq)
    payloads = [json.loads(e.payload) for e in box.pending()]
    assert [p["seq"] for p in payloads] == [2, 3, 4]
    assert [p["dropped"] for p in payloads] == [0, 0, 1]  # 4 reports the drop of 0
    assert box.dropped() == 1  # the drop of 1 waits for the next window
    box.close()
    box = Outbox(path, cap=3)  # rows and the pending drop count are durable
    assert [json.loads(e.payload)["seq"] for e in box.pending()] == [2, 3, 4]
    assert box.dropped() == 1
    box.delete(box.pending()[0].id)  # acknowledged: room for one more, nothing dropped
    _put(box, 5)
    payloads = [json.loads(e.payload) for e in box.pending()]
    assert [(p["seq"], p["dropped"]) for p in payloads] == [(3, 0), (4, 1), (5, 1)]
    assert box.dropped() == 0  # every drop reported exactly once: 1 + 1 == 2 dropped
    first = box.pending()[0].id
    assert [e.id for e in box.pending(after_id=first)] == [e.id for e in box.pending()[1:]]
    box.close()
