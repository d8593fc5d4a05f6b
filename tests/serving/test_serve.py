"""The serve loop on real runtimes: reshaping, bad input, cache, batching, preprocessing."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device_agent.batching import BatchOptions
from device_agent.cache import CacheConfig
from device_agent.engine import Engine, EngineOptions
from device_agent.loader import engine_for
from device_agent.protocol.manifest import ModelFormat
from device_agent.runtimes import load_model
from device_agent.serve import serve
from device_agent.sinks import StdoutSink
from device_agent.sources.base import Reading
from device_agent.sources.file import FileSource
from device_agent.sources.stdin import StdinSource
from edge_sdk.bundle.writer import ModelPayload, build_bundle
from tests.conftest import DigitsSplit


class ListSource:
    def __init__(self, readings: list[Reading]):
        self.readings = readings
        self.closed = False

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.readings)

    def close(self) -> None:
        self.closed = True


def _reference(model_path: Path, x: np.ndarray) -> np.ndarray:
    return load_model(model_path).predict1(x).argmax(axis=1)


def test_flat_csv_rows_are_reshaped_to_the_model_input(
    int8_tflite: Path, digits: DigitsSplit, tmp_path: Path
) -> None:
    csv = tmp_path / "rows.csv"
    np.savetxt(csv, digits.x_test[:30].reshape(30, -1), delimiter=",")
    buf = io.StringIO()
    engine = Engine(load_model(int8_tflite))
    stats = serve(FileSource(csv), engine, sinks=[StdoutSink(buf)])
    lines = [json.loads(s) for s in buf.getvalue().splitlines()]
    assert stats.count == 30 and stats.errors == 0
    assert [r["index"] for r in lines] == _reference(int8_tflite, digits.x_test[:30]).tolist()
    assert [r["seq"] for r in lines] == list(range(30))


def test_bad_readings_are_counted_and_serving_goes_on(
    float_tflite: Path, digits: DigitsSplit
) -> None:
    good = digits.x_test[0]
    nan = good.copy()
    nan[3, 3, 0] = np.nan
    inf = good.copy()
    inf[0, 0, 0] = np.inf
    readings = [
        Reading("ok0", good),
        Reading("nan", nan),
        Reading("shape", np.zeros((5, 5), np.float32)),
        Reading("inf", inf),
        Reading("text", np.array(["a", "b"])),
        Reading("gone", None, error="sensor silent"),
        Reading("ok1", good),
    ]
    errors: list[tuple[str, str]] = []

    class Obs:
        def on_result(self, result):  # type: ignore[no-untyped-def]
            pass

        def on_error(self, reading, reason):  # type: ignore[no-untyped-def]
            errors.append((reading.id, reason))

    src = ListSource(readings)
    stats = serve(src, Engine(load_model(float_tflite)), observers=[Obs()])
    assert stats.count == 2 and stats.errors == 5 and src.closed
    why = dict(errors)
    assert "NaN or infinite" in why["nan"] and "NaN or infinite" in why["inf"]
    assert "(5, 5) (25 values) does not fit" in why["shape"]
    assert "not numeric" in why["text"]
    assert why["gone"] == "sensor silent"


def test_large_finite_values_are_not_mistaken_for_inf(float_tflite: Path) -> None:
    x = np.full((8, 8, 1), 3e38, dtype=np.float32)  # the sum overflows, the values do not
    assert Engine(load_model(float_tflite)).infer_one(x).index >= 0


def test_exact_cache_hits_repeat_readings(float_tflite: Path, digits: DigitsSplit) -> None:
    xs = list(digits.x_test[:10]) * 3
    engine = Engine(
        load_model(float_tflite), options=EngineOptions(cache=CacheConfig.parse("exact"))
    )
    stats = serve(ListSource([Reading(str(i), x) for i, x in enumerate(xs)]), engine)
    assert stats.cache_hits == 20
    assert stats.summary()["cache"] == {
        "hits": 20,
        "misses": 10,
        "evictions": 0,
        "entries": 10,
        "bytes": engine.cache.bytes,
    }  # type: ignore[union-attr]


def test_near_cache_answers_jittered_readings(float_tflite: Path, digits: DigitsSplit) -> None:
    engine = Engine(
        load_model(float_tflite), options=EngineOptions(cache=CacheConfig.parse("near:0.25"))
    )
    base = np.round(digits.x_test[0] * 4) / 4  # centre of grid cells
    first = engine.infer_one(base)
    again = engine.infer_one(base + 0.01)
    assert not first.cached and again.cached and again.index == first.index
    assert not engine.infer_one(base + 0.2).cached


def test_micro_batches_give_the_same_answers(float_tflite: Path, digits: DigitsSplit) -> None:
    readings = [Reading(str(i), x) for i, x in enumerate(digits.x_test[:50])]
    readings.insert(7, Reading("bad", np.full((8, 8, 1), np.nan, np.float32)))
    one, many = io.StringIO(), io.StringIO()
    serve(ListSource(readings), Engine(load_model(float_tflite)), sinks=[StdoutSink(one)])
    stats = serve(
        ListSource(readings),
        Engine(load_model(float_tflite)),
        sinks=[StdoutSink(many)],
        batch=BatchOptions(max_batch=8, max_wait_ms=50),
    )
    key = [(r["input_id"], r["index"]) for r in map(json.loads, one.getvalue().splitlines())]
    got = [(r["input_id"], r["index"]) for r in map(json.loads, many.getvalue().splitlines())]
    assert got == key and stats.errors == 1 and stats.count == 50


def test_preprocessing_from_the_manifest(
    float_tflite: Path, digits: DigitsSplit, tmp_path: Path
) -> None:
    m = load_model(float_tflite)
    bundle, _ = build_bundle(
        tmp_path / "pre.edgepkg",
        name="pre",
        version="1.0.0",
        models=[
            ModelPayload(
                float_tflite.read_bytes(), ModelFormat.TFLITE, inputs=m.inputs, outputs=m.outputs
            )
        ],
        preprocessing=({"op": "scale", "factor": 1 / 16.0},),
    )
    raw = digits.x_test[:20] * 16.0  # sensor units; the bundle scales them back
    with engine_for(bundle) as e:
        got = [e.infer_one(x).index for x in raw]
    assert got == _reference(float_tflite, digits.x_test[:20]).tolist()


def test_stdin_lines_through_the_loop(float_tflite: Path, digits: DigitsSplit) -> None:
    lines = [
        json.dumps(digits.x_test[0].ravel().tolist()),
        "{not json",
        "",
        json.dumps({"id": "a", "x": digits.x_test[1].ravel().tolist(), "label": 3}),
        "[1, 2]",
    ]
    stats = serve(
        StdinSource(io.StringIO("\n".join(lines) + "\n")), Engine(load_model(float_tflite))
    )
    assert stats.count == 2 and stats.errors == 2 and stats.labelled == 1


def test_cli_run_prints_json_lines_and_summary(cascade_bundle, digits: DigitsSplit) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_agent",
            "run",
            str(cascade_bundle.path),
            "--source",
            f"file:{digits.test}",
            "--limit",
            "25",
            "--cache",
            "exact",
            "--batch",
            "4",
            "--batch-ms",
            "2",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [json.loads(s) for s in out.stdout.strip().splitlines()]
    assert len(lines) == 26 and lines[-1]["summary"]["count"] == 25
    assert {
        "seq",
        "input_id",
        "index",
        "label",
        "confidence",
        "latency_ms",
        "stage",
        "truth",
    } <= set(lines[0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cache", "near:-1"], "near mode needs a positive tolerance"),
        (["--exit-threshold", "2"], "threshold must be in [0, 1]"),
        (["--batch", "0"], "--batch must be at least 1"),
        (["--source", "sim:radar"], "unknown simulated sensor"),
    ],
)
def test_cli_refuses_bad_options(
    cascade_bundle, digits: DigitsSplit, args: list[str], message: str
) -> None:  # type: ignore[no-untyped-def]
    base = ["--source", f"file:{digits.test}"] if "--source" not in args else []
    out = subprocess.run(
        [sys.executable, "-m", "device_agent", "run", str(cascade_bundle.path), *base, *args],
        capture_output=True,
        text=True,
    )
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1 and message in errors[0]


@pytest.mark.parametrize("batched", [False, True])
def test_latencies_kept_for_the_summary_are_bounded(
    float_tflite: Path, digits: DigitsSplit, monkeypatch: pytest.MonkeyPatch, batched: bool
) -> None:
    # A long-running agent must not keep every latency it ever measured.
    import device_agent.serve
    import device_agent.stats

    monkeypatch.setattr(device_agent.serve, "TRIM_EVERY", 50)
    monkeypatch.setattr(device_agent.stats, "LATENCIES_KEPT", 40)
    xs = list(digits.x_test[:25]) * 40
    engine = Engine(load_model(float_tflite))
    opts = BatchOptions(max_batch=4, max_wait_ms=1.0) if batched else None
    stats = serve(ListSource([Reading(str(i), x) for i, x in enumerate(xs)]), engine, batch=opts)
    assert stats.count == 1000
    assert 40 <= len(stats.latencies_ms) <= 80
    assert stats.summary()["count"] == 1000


def test_cached_tensors_survive_a_source_that_reuses_its_buffer(cascade_bundle, digits: DigitsSplit) -> None:  # type: ignore[no-untyped-def]
    """A cascade's entries keep the input tensor (new thresholds answer it again): the
    cache must hold its own copy, not a view of the source's buffer."""
    options = EngineOptions(cache=CacheConfig.parse("exact"))
    with engine_for(cascade_bundle.path) as plain, engine_for(cascade_bundle.path, engine_options=options) as engine:
        x = digits.x_test[:50].astype(np.float32)
        plain.set_thresholds({None: 1.0})  # every input runs to the last stage
        full = [plain.infer_one(v).index for v in x]
        a = next(i for i in range(50) if full[i] != full[0])
        buf = x[0].copy()
        engine.infer_one(buf)  # a miss: stored
        buf[...] = x[a]  # the source refills its buffer with the next reading
        engine.set_thresholds({None: 1.0})  # answers dropped: the stored tensor runs again
        again = engine.infer_one(x[0].copy())
        assert again.stage == 2 and again.index == full[0]


def test_a_model_without_exits_caches_answers_only(float_tflite: Path, digits: DigitsSplit) -> None:
    """Its answers never change, so entries hold no copy of the input."""
    engine = Engine(load_model(float_tflite), options=EngineOptions(cache=CacheConfig.parse("exact")))
    first = engine.infer_one(digits.x_test[0])
    again = engine.infer_one(digits.x_test[0].copy())
    assert again.cached and again.index == first.index
    assert engine.cache is not None and len(engine.cache) == 1
    entry = next(iter(engine.cache._d.values()))
    assert entry.tensor is None and entry.result is not None
    engine.set_thresholds({None: 0.5})  # no exit to apply it to: the answers stand
    assert engine.infer_one(digits.x_test[0].copy()).cached
