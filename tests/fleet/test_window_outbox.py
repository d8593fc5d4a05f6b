"""Window aggregation (pure, exact) and the durable outbox (real SQLite files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from device_agent.telemetry.outbox import Outbox
from device_agent.telemetry.system import read_temperature
from device_agent.telemetry.window import SystemSample, WindowAggregator


def test_window_aggregates_exactly_and_rolls_over() -> None:
    agg = WindowAggregator(boot_id="b", start=100.0)
    lat = [float(i) for i in range(1, 101)]
    for i, v in enumerate(lat):
        agg.record(v, stage=i % 2, cached=i % 10 == 0)
    agg.error()
    w = agg.close(110.0, system=SystemSample(cpu_percent=5.0, rss_bytes=7), dropped=3)
    assert (w.seq, w.boot_id, w.start, w.end) == (0, "b", 100.0, 110.0)
    assert (w.inferences, w.errors, w.cache_hits, w.dropped) == (100, 1, 10, 3)
    assert w.throughput == 10.0
    assert w.latency_p50 == round(float(np.percentile(lat, 50)), 4)
    assert w.latency_p95 == round(float(np.percentile(lat, 95)), 4)
    assert w.latency_p99 == round(float(np.percentile(lat, 99)), 4)
    assert w.exits == {"0": 50, "1": 50}
    assert (w.cpu_percent, w.rss_bytes, w.temperature_c) == (5.0, 7, None)
    empty = agg.close(120.0)
    assert (empty.seq, empty.start, empty.inferences, empty.throughput) == (1, 110.0, 0, 0.0)
    assert empty.exits == {} and empty.errors == 0


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
