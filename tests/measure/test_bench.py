"""``edge bench`` through the CLI on real artifacts, and its pure statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_sdk.cli import app
from edge_sdk.measure.bench import ProcessProbe, cost_per_1k, cpu_share, throughput
from tests.conftest import DigitsSplit
from tests.measure.conftest import Artifacts

runner = CliRunner()
KINDS = ["tflite", "tflite_int8", "onnx", "bundle"]


def _bench_json(*args: str) -> dict:
    res = runner.invoke(app, ["bench", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.mark.parametrize("kind", KINDS)
def test_bench_json_keys_and_consistency(kind: str, artifacts: Artifacts) -> None:
    path = getattr(artifacts, kind)
    r = _bench_json(str(path), "--runs", "30", "--warmup", "3", "--batch", "4", "--threads", "1")
    lat = r["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert r["load_ms"] > 0 and r["peak_rss_mb"] > 0
    assert 0 < r["cpu_util"] <= 1.05
    assert r["file_bytes"] == path.stat().st_size
    assert r["runs"] == 30 and r["batch"] == 4 and r["threads"] == 1
    # Throughput is samples over the whole timed loop, so it cannot beat the mean call.
    assert 0 < r["throughput_per_s"] <= 4 * 1000.0 / lat["mean"] * 1.001
    assert r["cost_per_1k"] is None
    assert r["runtime"] == ("onnxruntime" if kind == "onnx" else "litert")


def test_bench_bundle_member_follows_runtime(artifacts: Artifacts) -> None:
    r = _bench_json(str(artifacts.bundle_both), "--runs", "5", "--runtime", "onnxruntime")
    assert r["runtime"] == "onnxruntime"
    assert _bench_json(str(artifacts.bundle_both), "--runs", "5")["runtime"] == "litert"


def test_bench_device_cost(artifacts: Artifacts) -> None:
    r = _bench_json(str(artifacts.onnx), "--runs", "20", "--device-cost", "0.5")
    assert r["cost_per_1k"] == pytest.approx(0.5 / 3600 / r["throughput_per_s"] * 1000)


def test_bench_with_data(artifacts: Artifacts, digits: DigitsSplit) -> None:
    r = _bench_json(str(artifacts.tflite_int8), "--runs", "10", "--data", str(digits.test))
    assert r["input_source"] == str(digits.test)


def test_bench_human_output(artifacts: Artifacts) -> None:
    res = runner.invoke(app, ["bench", str(artifacts.bundle), "--runs", "10", "--device-cost", "1"])
    assert res.exit_code == 0, res.output
    for word in ("latency:", "throughput:", "peak RSS:", "CPU:", "cost:"):
        assert word in res.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--runs", "0"], "--runs"),
        (["--batch", "0"], "--batch"),
        (["--device-cost", "-1"], "--device-cost"),
    ],
)
def test_bench_bad_options(args: list[str], needle: str, artifacts: Artifacts) -> None:
    res = runner.invoke(app, ["bench", str(artifacts.tflite), *args])
    assert res.exit_code == 2 and needle in res.stderr, res.output


def test_bench_corrupt_and_missing(artifacts: Artifacts, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(artifacts.onnx.read_bytes()[:200])
    for p in (bad, tmp_path / "missing.tflite"):
        res = runner.invoke(app, ["bench", str(p)])
        assert res.exit_code == 2, res.output
        assert p.name in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_bench_refuses_what_it_cannot_run(artifacts: Artifacts) -> None:
    for args, needle in (
        ([str(artifacts.keras)], "expected .tflite or .onnx"),
        ([str(artifacts.tflite), "--runtime", "onnxruntime"], "runs onnx, not tflite"),
        ([str(artifacts.tflite), "--runtime", "nosuch"], "unknown runtime"),
    ):
        res = runner.invoke(app, ["bench", *args])
        assert res.exit_code == 2 and needle in res.stderr, res.output


def test_bench_without_xnnpack_still_runs(artifacts: Artifacts) -> None:
    r = _bench_json(str(artifacts.tflite_int8), "--runs", "5", "--no-xnnpack")
    assert r["runtime"] == "litert" and r["latency_ms"]["p50"] > 0


def test_bench_data_shape_mismatch(artifacts: Artifacts, tmp_path: Path) -> None:
    p = tmp_path / "wrong.npz"
    np.savez(p, x=np.zeros((3, 7), np.float32))
    res = runner.invoke(app, ["bench", str(artifacts.tflite), "--data", str(p)])
    assert res.exit_code == 2 and "wrong.npz" in res.stderr, res.output


def test_pure_stats() -> None:
    assert throughput(100, 2.0) == 50.0 and throughput(5, 0.0) == 0.0
    assert cost_per_1k(3.6, 1.0) == pytest.approx(1.0)  # 0.001 per second, 1 inference/s
    assert cpu_share(3.0, 2.0, 2) == (0.75, 1.5)


def test_peak_rss_probe_sees_a_real_allocation() -> None:
    probe = ProcessProbe()
    probe.reset_peak()
    before = probe.peak_rss_mb()
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MB, touched
    after = probe.peak_rss_mb()
    del block
    assert after - before >= 50
