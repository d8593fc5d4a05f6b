"""Cache keys collide exactly as intended; the LRU respects its byte cap and counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from device_agent.cache import ENTRY_OVERHEAD, CacheConfig, CacheMode, LRUCache, input_key
from device_agent.errors import EdgeError


def test_exact_keys() -> None:
    x = np.arange(12, dtype=np.float32)
    assert input_key(x) == input_key(x.copy())
    assert input_key(x) != input_key(x.reshape(3, 4)), "shape is part of the key"
    assert input_key(x) != input_key(x.astype(np.float64)), "dtype is part of the key"
    y = x.copy()
    y[5] = np.nextafter(y[5], np.float32(100))
    assert input_key(x) != input_key(y), "one ulp apart is a different input"
    assert input_key(x[::2]) == input_key(np.ascontiguousarray(x[::2]))


def test_near_keys_share_a_grid_cell() -> None:
    x = np.array([0.101, 0.52, -0.3], dtype=np.float32)
    assert input_key(x, tolerance=0.01) == input_key(x + 0.002, tolerance=0.01)
    assert input_key(x, tolerance=0.01) != input_key(x + 0.02, tolerance=0.01)
    assert input_key(x, tolerance=0.01) != input_key(x)
    assert input_key(np.array([-0.0]), tolerance=0.1) == input_key(np.array([0.0]), tolerance=0.1)


@settings(max_examples=200, deadline=None)
@given(
    a=arrays(np.float32, 6, elements=st.floats(-50, 50, width=32)),
    b=arrays(np.float32, 6, elements=st.floats(-50, 50, width=32)),
    tol=st.sampled_from([0.01, 0.1, 1.0]),
)
def test_near_keys_collide_iff_same_cells(a: np.ndarray, b: np.ndarray, tol: float) -> None:
    cells_a = np.round(a.astype(np.float64) / tol)
    cells_b = np.round(b.astype(np.float64) / tol)
    same = bool((cells_a == cells_b).all())
    assert (input_key(a, tolerance=tol) == input_key(b, tolerance=tol)) == same


def test_lru_evicts_by_bytes_and_counts() -> None:
    t = np.zeros(100, dtype=np.float32)  # 400 bytes
    per = ENTRY_OVERHEAD + 16 + 400
    c = LRUCache(max_bytes=per * 2)
    ka, kb, kc = (bytes([i]) * 16 for i in range(3))
    c.put(ka, t)
    c.put(kb, t)
    assert c.get(ka) is not None  # a becomes most recent
    c.put(kc, t)  # evicts b
    assert kb not in c and ka in c and kc in c
    assert c.get(kb) is None
    assert c.counters() == {"hits": 1, "misses": 1, "evictions": 1, "entries": 2, "bytes": per * 2}


def test_oversized_entry_is_not_kept_and_replace_keeps_bytes_right() -> None:
    c = LRUCache(max_bytes=1000)
    c.put(b"k", np.zeros(1000, np.float32))
    assert len(c) == 0 and c.bytes == 0
    c.put(b"k", np.zeros(10, np.float32))
    c.put(b"k", np.zeros(20, np.float32))
    assert len(c) == 1 and c.bytes == ENTRY_OVERHEAD + 1 + 80


def test_drop_results_keeps_tensors() -> None:
    c = LRUCache(max_bytes=10_000)
    c.put(b"k", np.zeros(4, np.float32), result="answer")
    before = c.bytes
    c.drop_results()
    e = c.get(b"k")
    assert e is not None and e.result is None and e.tensor is not None and c.bytes < before


def test_parse_config() -> None:
    assert CacheConfig.parse("off").mode is CacheMode.OFF
    assert CacheConfig.parse("exact", max_bytes=10).max_bytes == 10
    near = CacheConfig.parse("near:0.01")
    assert near.mode is CacheMode.NEAR and near.tolerance == 0.01
    for bad in ("near:", "near:-1", "near:x", "fuzzy", "near:nan"):
        with pytest.raises(EdgeError, match="--cache"):
            CacheConfig.parse(bad)


def test_read_ahead_past_the_limit_is_not_counted(int8_tflite: Path, tmp_path: Path) -> None:
    """``--cache exact --limit 300`` with batching: hits + misses is what was served."""
    from device_agent.batching import BatchOptions
    from device_agent.cache import CacheConfig
    from device_agent.engine import Engine, EngineOptions
    from device_agent.runtimes import load_model
    from device_agent.serve import serve
    from device_agent.sources.file import FileSource

    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, (20, 8, 8, 1)).astype(np.float32)
    data = tmp_path / "repeats.npz"
    np.savez(data, x=base[rng.integers(0, 20, 1000)])
    for batch in (BatchOptions(backlog=32), BatchOptions(max_batch=16, max_wait_ms=5)):
        engine = Engine(load_model(int8_tflite), options=EngineOptions(cache=CacheConfig.parse("exact")))
        stats = serve(FileSource(data), engine, limit=300, batch=batch)
        assert stats.count == 300 and stats.cache is not None
        assert stats.cache["hits"] + stats.cache["misses"] == 300, stats.cache
