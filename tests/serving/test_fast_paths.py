"""The serve loop's fast paths give the same answers as the general ones, on real LiteRT.

Reused quantization buffers, top-1 from raw int8 logits, the one-array micro-batch and
automatic batching of a backlogged source are speed-ups only: every test here compares
one of them with the path it shortcuts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_agent.batching import BatchOptions, queued_batches
from device_agent.engine import Engine, to_model_dtype
from device_agent.errors import EdgeError, InputError
from device_agent.protocol.manifest import TensorSpec
from device_agent.quant import RowQuantizer, quantize
from device_agent.runtimes import load_model
from device_agent.serve import serve
from device_agent.sinks.base import Result
from device_agent.sources.file import FileSource
from tests.conftest import DigitsSplit


class Collect:
    def __init__(self) -> None:
        self.results: list[Result] = []

    def emit(self, result: Result) -> None:
        self.results.append(result)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("dtype", "scale", "zp"), [("int8", 1 / 255, -128), ("uint8", 0.05, 3), ("int8", 0.1, 7)])
def test_row_quantizer_equals_the_allocating_quantizer(dtype: str, scale: float, zp: int) -> None:
    spec = TensorSpec(name="x", shape=(-1, 4, 4, 1), dtype=dtype, scale=scale, zero_point=zp)
    q = RowQuantizer(spec)
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = (rng.normal(size=(1, 4, 4, 1)) * 20 * scale).astype(np.float32)
        # exact ties (x.5 steps, where round-half-even matters) and far out of range
        x.flat[:6] = np.float32(scale) * np.array([0.5, 1.5, -2.5, 3.5, 1e6, -1e6], np.float32)
        got = q(x).copy()
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, to_model_dtype(x, spec))
        np.testing.assert_array_equal(got, quantize(x, spec))
    batch = rng.normal(size=(5, 4, 4, 1)).astype(np.float32)  # another shape, its own buffers
    np.testing.assert_array_equal(q(batch), quantize(batch, spec))


def test_int8_one_reading_path_matches_the_batched_path(int8_tflite: Path, digits: DigitsSplit) -> None:
    engine = Engine(load_model(int8_tflite))
    assert engine.stages[0].logits_quantized  # the raw-integer top-1 is what is tested
    assert engine.stages[0]._qexp is not None  # with the softmax from the exp table
    x = digits.x_test[:60]
    batched = engine.infer(x)
    for row, ref in zip(x, batched, strict=True):
        one = engine.infer_one(row)
        assert one.index == ref.index
        assert one.confidence == pytest.approx(ref.confidence, rel=1e-5, abs=1e-6)


def test_float_one_reading_path_matches_the_batched_path(float_tflite: Path, digits: DigitsSplit) -> None:
    engine = Engine(load_model(float_tflite))
    x = digits.x_test[:30]
    for row, ref in zip(x, engine.infer(x), strict=True):
        one = engine.infer_one(row)
        assert (one.index, one.confidence) == (ref.index, pytest.approx(ref.confidence, rel=1e-5))


def test_top1_softmax_is_exact_for_huge_and_tiny_logits(float_tflite: Path, digits: DigitsSplit) -> None:
    """exp(top)/sum(exp(v)) is used while every exp stays finite; beyond, the shifted form."""
    engine = Engine(load_model(float_tflite))
    engine.infer_one(digits.x_test[0])  # the stage has seen an output: logits, not probabilities
    st = engine.stages[0]
    for logits in ([3.0, -1.0, 2.5, 0.0], [800.0, 790.0, -5.0, 799.5], [-900.0, -905.0, -899.0, -950.0]):
        q = np.array([logits + [-1e4] * 6], dtype=np.float32)
        i, conf, score, _ = st.top(q, None)
        z = q[0].astype(np.float64)
        ref = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        assert i == int(ref.argmax()) and conf == pytest.approx(ref.max(), rel=1e-9) and score == conf


def test_runtime_resizes_between_batch_sizes(int8_tflite: Path, digits: DigitsSplit) -> None:
    engine = Engine(load_model(int8_tflite))
    x = digits.x_test[:9]
    ones = [engine.infer_one(r).index for r in x]
    assert [p.index for p in engine.infer(x[:4])] == ones[:4]
    assert engine.infer_one(x[8]).index == ones[8]  # back to one row after a batch of 4
    assert [p.index for p in engine.infer(x)] == ones


def test_one_array_micro_batch_still_names_the_bad_reading(int8_tflite: Path, digits: DigitsSplit) -> None:
    engine = Engine(load_model(int8_tflite))
    x = list(digits.x_test[:6])
    good = engine.infer_many(x)
    assert all(not isinstance(p, Exception) for p in good)
    bad = [r.copy() for r in x]
    bad[3][0, 0, 0] = np.nan
    out = engine.infer_many(bad)
    assert isinstance(out[3], InputError) and "NaN" in str(out[3])
    for i in (0, 1, 2, 4, 5):
        assert out[i].index == good[i].index  # type: ignore[union-attr]


def test_backlogged_file_source_is_batched_with_the_same_answers(
    int8_tflite: Path, digits: DigitsSplit
) -> None:
    engine = Engine(load_model(int8_tflite))
    one, auto = Collect(), Collect()
    serve(FileSource(digits.test), engine, sinks=[one])
    stats = serve(FileSource(digits.test), engine, sinks=[auto], batch=BatchOptions(backlog=8))
    n = len(digits.y_test)
    assert stats.count == n and stats.errors == 0
    assert [r.index for r in auto.results] == [r.index for r in one.results]
    assert [r.input_id for r in auto.results] == [r.input_id for r in one.results]
    assert stats.summary()["accuracy"] == pytest.approx(np.mean([r.index == r.truth for r in one.results]))
    # batched results carry their batch's latency: groups of 8 share one value; one by one
    # they are timed apart (timings on a fast machine repeat at the clock's resolution,
    # so "more values than batches", not "mostly distinct")
    batches = -(-n // 8)
    assert len({r.latency_ms for r in auto.results}) <= batches
    assert len({r.latency_ms for r in one.results}) > batches


def test_paced_source_is_not_backlogged(digits: DigitsSplit) -> None:
    assert FileSource(digits.test).backlogged
    assert not FileSource(digits.test, rate=100.0).backlogged


def test_queued_batches_keep_order_and_every_item() -> None:
    assert list(queued_batches(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(queued_batches([], 3)) == []
    with pytest.raises(EdgeError, match="--backlog-batch"):
        BatchOptions(backlog=-1)


def test_int8_features_pass_between_stages_unchanged_when_quantization_matches() -> None:
    from device_agent.engine import same_quantization

    out = TensorSpec(name="f", shape=(-1, 4), dtype="int8", scale=0.005791344679892063, zero_point=-128)
    same = TensorSpec(name="g", shape=(-1, 4), dtype="int8", scale=0.005791344214230776, zero_point=-128)
    assert same_quantization(out, same)  # one float32 ulp apart, as converters write them
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, size=(64, 4)).astype(np.int8)
    from device_agent.quant import dequantize

    np.testing.assert_array_equal(quantize(dequantize(q, out), same), q)  # what skipping saves
    other_zp = TensorSpec(name="g", shape=(-1, 4), dtype="int8", scale=same.scale, zero_point=0)
    other_scale = TensorSpec(name="g", shape=(-1, 4), dtype="int8", scale=0.01, zero_point=-128)
    as_float = TensorSpec(name="g", shape=(-1, 4), dtype="float32")
    assert not any(same_quantization(out, s) for s in (other_zp, other_scale, as_float))


@pytest.fixture(scope="module")
def int8_cascade(keras_cnn: Path, digits: DigitsSplit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two all-int8 stages (``float_first=False``): an exit after conv1, then the rest."""
    import keras

    from edge_sdk.model.data import Dataset
    from edge_sdk.passes.early_exit.keras import EarlyExitConfig
    from edge_sdk.recipe.cascade_export import write_cascade_bundle

    model = keras.models.load_model(keras_cnn)
    cfg = EarlyExitConfig(at_layers=("conv1",), epochs=5, max_drop=0.5, float_first=False)
    path, _ = write_cascade_bundle(
        tmp_path_factory.mktemp("casc8") / "c8.edgepkg",
        model,
        Dataset(digits.x_train, digits.y_train, "train"),
        Dataset(digits.x_test, digits.y_test, "test"),
        cfg,
        name="c8",
        int8=True,
    )
    return path


@pytest.mark.parametrize("hand_off", [True, False])
def test_int8_cascade_answers_do_not_depend_on_the_handoff(
    int8_cascade: Path, digits: DigitsSplit, hand_off: bool
) -> None:
    from device_agent.engine import EngineOptions
    from device_agent.loader import engine_for

    x = digits.x_test[:40]
    last = EngineOptions(thresholds={None: 1.0})  # every row goes through both stages
    with engine_for(int8_cascade, engine_options=last) as ref, engine_for(int8_cascade, engine_options=last) as e:
        assert ref.stages[0].hands_off_raw  # the converter wrote one quantization for both sides
        ref.stages[0].hands_off_raw = False  # the reference dequantizes and quantizes again
        e.stages[0].hands_off_raw = hand_off
        p_ref, s_ref = ref.cascade(x)
        p, s = e.cascade(x)
        ones = [e.infer_one(r) for r in x]
    assert (s == 1).all() and (s_ref == 1).all()
    np.testing.assert_array_equal(p, p_ref)
    assert [o.index for o in ones] == p_ref.argmax(axis=1).tolist()
    assert {o.stage for o in ones} == {1}


def test_keys_are_the_data_or_a_digest_without_xxhash(monkeypatch: pytest.MonkeyPatch) -> None:
    from device_agent import cache
    from device_agent.cache import VERBATIM_BYTES, float32_key, input_key

    monkeypatch.setattr(cache, "_xxh3", None)  # the stdlib scheme, as on a device without xxhash
    small = np.linspace(0, 1, 784, dtype=np.float32).reshape(28, 28, 1)
    assert small.nbytes <= VERBATIM_BYTES
    assert input_key(small).endswith(small.tobytes())  # the key is the data: no collision
    assert float32_key(small) == input_key(small)
    _check_digest_keys(np.linspace(0, 1, 4096, dtype=np.float32))


def test_keys_are_a_128_bit_digest_with_xxhash() -> None:
    from device_agent import cache
    from device_agent.cache import float32_key, input_key

    if cache._xxh3 is None:
        pytest.skip("xxhash is not installed")
    small = np.linspace(0, 1, 784, dtype=np.float32).reshape(28, 28, 1)
    _check_digest_keys(small)
    assert float32_key(small) == input_key(small)
    flipped = small[:, ::-1]  # not contiguous: keyed by its values in C order
    assert float32_key(flipped) == input_key(flipped) == input_key(flipped.copy()) != input_key(small)
    assert input_key(small.astype(">f4")) != input_key(small)  # same values, other bytes and dtype


def _check_digest_keys(x: np.ndarray) -> None:
    from device_agent.cache import input_key

    k = input_key(x)
    assert len(k) == len(f"{x.dtype.str}{x.shape}") + 16
    nudged = x.copy()
    nudged.flat[-1] = np.nextafter(nudged.flat[-1], np.float32(2))
    assert input_key(nudged) != k and input_key(x.copy()) == k


def test_cli_batches_a_file_backlog_by_default_and_not_with_zero(int8_tflite: Path, digits: DigitsSplit) -> None:
    import json
    import subprocess
    import sys

    def run(*extra: str) -> list[dict[str, object]]:
        cmd = [sys.executable, "-m", "device_agent", "run", str(int8_tflite), "--source", f"file:{digits.test}"]
        out = subprocess.run([*cmd, *extra], capture_output=True, text=True, check=True, timeout=120)
        return [json.loads(s) for s in out.stdout.strip().splitlines()]

    auto, one = run(), run("--backlog-batch", "0")
    n = len(digits.y_test)
    assert len(auto) == len(one) == n + 1
    assert [r["index"] for r in auto[:n]] == [r["index"] for r in one[:n]]
    assert auto[-1]["summary"]["accuracy"] == one[-1]["summary"]["accuracy"]  # type: ignore[index]
    # batched results share their batch's latency (32 readings each); one by one they vary
    def chunks(rows: list[dict[str, object]]) -> list[set[object]]:
        return [{r["latency_ms"] for r in rows[i : min(i + 32, n)]} for i in range(0, n, 32)]

    assert all(len(c) == 1 for c in chunks(auto))
    assert all(len(c) > 1 for c in chunks(one)[:-1])
