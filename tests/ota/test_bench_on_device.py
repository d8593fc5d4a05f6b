"""``edge optimize --latency-on``: a real agent process on a real Mosquitto times a signed
candidate model and answers p50/p95; an untrusted or absent signer is refused, an absent
device is one bounded ``error:`` line."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from device_agent.errors import EdgeError
from device_agent.mqtt import BrokerOptions
from device_agent.protocol import topics
from device_agent.protocol.messages import BenchRequest, BenchResult, BenchSpec, MessageError
from edge_sdk.bundle.signing import new_key_pair
from edge_sdk.measure.device_bench import DeviceBench, DeviceTarget
from tests.conftest import DigitsSplit
from tests.support.mosquitto import Mosquitto

from .conftest import Factory, onnx_model
from .test_agent_network import ENV, _agent, _wait_text

FLEET, DEVICE = "lab", "pi-bench"


@dataclass(frozen=True)
class Running:
    broker: Mosquitto
    log: Path


@pytest.fixture(scope="module")
def agent(factory: Factory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """``edge-agent listen`` trusting the factory's key, on its own broker."""
    root = tmp_path_factory.mktemp("bench")
    mq = Mosquitto(root / "mosq").start()
    log = root / "agent.log"
    proc = _agent(["listen", "--store", str(root / "store"), "--broker", mq.url, "--device-id", DEVICE,
                   "--fleet", FLEET, "--key", str(factory.key.public)], ENV, log)
    try:
        _wait_text(log, "listening on", 60, proc)
        yield Running(mq, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        mq.stop()


def _model(factory: Factory) -> bytes:
    return onnx_model(*factory.weights(3))


def _target(run: Running, key: Path, device: str = DEVICE, timeout: float = 60.0) -> DeviceTarget:
    return DeviceTarget(fleet=FLEET, device=device, broker=BrokerOptions(url=run.broker.url), key=key,
                        timeout_s=timeout, runs=30, max_seconds=5.0)


def test_the_device_times_a_signed_candidate_and_answers_p50_p95(agent: Running, factory: Factory) -> None:
    with DeviceBench(_target(agent, factory.key.private)) as bench:
        got = bench.measure(_model(factory), "onnx")
    assert got.device == f"{FLEET}/{DEVICE}" and got.runs == 30
    assert got.runtime == "onnxruntime"
    # A 64×10 linear model on a loaded 2-core machine: well under a second per call.
    assert 0 < got.p50_ms <= got.p95_ms < 1000, got


def test_an_untrusted_signature_is_refused_with_an_error_result(agent: Running, factory: Factory,
                                                                tmp_path: Path) -> None:
    other = new_key_pair(tmp_path / "other-key")
    with DeviceBench(_target(agent, other.private)) as bench, pytest.raises(EdgeError) as e:
        bench.measure(_model(factory), "onnx")
    msg = str(e.value)
    assert f"--latency-on {FLEET}/{DEVICE}" in msg and "does not verify with any key this device trusts" in msg


def test_a_model_that_is_not_the_signed_one_is_refused(agent: Running, factory: Factory) -> None:
    """The signature covers the model's sha256: swapping the bytes under a valid spec fails."""
    import hashlib

    from edge_sdk.bundle.signing import load_signer

    real, fake = _model(factory), onnx_model(*factory.weights(4))
    spec = BenchSpec(request_id="swap1", fleet=FLEET, device=DEVICE, format="onnx",
                     sha256=hashlib.sha256(real).hexdigest(), size=len(real))
    body = spec.to_bytes()
    got = _exchange(agent, BenchRequest(body, load_signer(factory.key.private)(body), fake).to_payload())
    assert not got.ok and got.request_id == "swap1" and "do not match" in got.error


def test_an_unsigned_request_is_refused(agent: Running, factory: Factory) -> None:
    import hashlib

    model = _model(factory)
    spec = BenchSpec(request_id="unsigned1", fleet=FLEET, device=DEVICE, format="onnx",
                     sha256=hashlib.sha256(model).hexdigest(), size=len(model))
    got = _exchange(agent, BenchRequest(spec.to_bytes(), b"", model).to_payload())
    assert not got.ok and got.request_id == "unsigned1" and got.error.startswith("refused: the request is unsigned")


def _exchange(run: Running, payload: bytes) -> BenchResult:
    import queue

    from device_agent.mqtt import MqttClient

    answers: queue.Queue[bytes] = queue.Queue()
    c = MqttClient(BrokerOptions(url=run.broker.url, client_id="bench-raw"), log_outages=False)
    c.subscribe(topics.bench_result(FLEET, DEVICE), handler=lambda m: answers.put(bytes(m.payload)))
    c.start()
    try:
        c.require_connected(10)
        assert c.wait_subscribed(topics.bench_result(FLEET, DEVICE), 10)
        c.publish(topics.bench(FLEET, DEVICE), payload)
        return BenchResult.from_payload(answers.get(timeout=60))
    finally:
        c.stop()


def test_an_absent_device_is_one_bounded_error(agent: Running, factory: Factory) -> None:
    start = time.monotonic()
    with DeviceBench(_target(agent, factory.key.private, device="nobody", timeout=1.0)) as bench, \
            pytest.raises(EdgeError) as e:
        bench.measure(_model(factory), "onnx")
    assert time.monotonic() - start < 30  # bounded: not a hang (no timing claim)
    msg = str(e.value)
    assert msg.startswith(f"--latency-on {FLEET}/nobody: no answer to a benchmark request within 1 s")
    assert "--device-id nobody" in msg


def test_messages_round_trip_and_refuse_what_cannot_be() -> None:
    spec = BenchSpec(request_id="r1", fleet=FLEET, device=DEVICE, format="tflite", sha256="a" * 64, size=10)
    assert BenchSpec.from_bytes(spec.to_bytes()) == spec
    req = BenchRequest(spec.to_bytes(), b"s" * 64, b"m" * 10)
    assert BenchRequest.from_payload(req.to_payload()) == req
    with pytest.raises(MessageError, match="format"):
        BenchSpec.from_bytes(BenchSpec(request_id="r1", fleet=FLEET, device=DEVICE, format="pt",
                                       sha256="a" * 64, size=10).to_bytes())
    r = BenchResult(request_id="r1", device=DEVICE, ok=True, p50_ms=1.0, p95_ms=2.0, runs=5, runtime="litert")
    assert BenchResult.from_payload(r.to_payload()) == r
    with pytest.raises(MessageError, match="p50 <= p95"):
        BenchResult.from_payload(BenchResult(request_id="r1", device=DEVICE, ok=True, p50_ms=3.0, p95_ms=2.0,
                                             runs=5).to_payload())
    assert topics.bench(FLEET, DEVICE) == "edge/v1/lab/pi-bench/bench"
    assert topics.parse("edge/v1/lab/pi-bench/bench/result") == topics.Parsed(FLEET, DEVICE,
                                                                              topics.Kind.BENCH_RESULT)


def test_the_search_times_candidates_through_the_device(agent: Running, factory: Factory, tmp_path: Path) -> None:
    """``_judge``'s latency hook with --latency-on: the device's p50, and its refusal as the error."""
    from edge_sdk.recipe.pipeline import candidate_latency
    from edge_sdk.recipe.shipped_search import ShippedConfig, candidate_lines

    path = tmp_path / "candidate.onnx"
    path.write_bytes(_model(factory))
    x = factory.x.reshape(len(factory.x), 64)
    config = ShippedConfig(latency_on=_target(agent, factory.key.private))
    with candidate_latency(config, x) as latency:
        assert latency(path, path.read_bytes()) > 0
    assert config.describe()["latency_measured_on"] == f"device {FLEET}/{DEVICE}"
    summary = {"candidates": [], "seconds": 1, "objective": "latency", "front": [], "chosen_index": 0,
               "latency_measured_on": config.latency_where}
    assert candidate_lines(summary)[0].endswith(f"latency p50 measured on device {FLEET}/{DEVICE}")
    untrusted = ShippedConfig(latency_on=_target(agent, new_key_pair(tmp_path / "k").private))
    with candidate_latency(untrusted, x) as latency, pytest.raises(EdgeError, match=f"{FLEET}/{DEVICE}"):
        latency(path, path.read_bytes())
    assert ShippedConfig().latency_where == "this host"
    with candidate_latency(ShippedConfig(), x) as here:  # without --latency-on: timed in this process
        assert here(path, path.read_bytes()) > 0


def test_optimize_latency_on_an_absent_device_is_one_error_line(agent: Running, factory: Factory,
                                                                keras_cnn: Path, digits: DigitsSplit,
                                                                tmp_path: Path) -> None:
    from edge_sdk.cli import app as edge_app

    out = tmp_path / "m.edgepkg"
    res = CliRunner().invoke(edge_app, [
        "optimize", str(keras_cnn), "--data", str(digits.train), "-o", str(out), "--max-drop", "1",
        "--latency-on", "nobody", "--fleet", FLEET, "--broker", agent.broker.url,
        "--key", str(factory.key.private), "--latency-timeout", "1", "--no-step-metrics", "--json"])
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith(f"error: --latency-on {FLEET}/nobody: no answer to a benchmark request within 1 s"), \
        res.output
    assert not out.exists()


def test_optimize_latency_on_needs_a_broker_and_a_key_before_any_work(factory: Factory, tmp_path: Path) -> None:
    from edge_sdk.cli import app as edge_app

    junk = tmp_path / "model.keras"  # never loaded: the flags are checked first
    junk.write_bytes(b"not a model")
    base = ["optimize", str(junk), "--data", str(junk), "-o", str(tmp_path / "m.edgepkg"), "--max-drop", "1",
            "--latency-on", DEVICE]
    res = CliRunner().invoke(edge_app, base)
    assert res.exit_code == 2 and res.output.startswith("error: --latency-on: expected --broker"), res.output
    res = CliRunner().invoke(edge_app, [*base, "--broker", "mqtt://127.0.0.1:1"])
    assert res.exit_code == 2 and res.output.startswith("error: --latency-on: expected --key"), res.output
