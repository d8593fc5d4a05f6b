"""Every source and sink, the MQTT ones against a real Mosquitto on a free port."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from device_agent.batching import BatchOptions, batch_complete, micro_batches
from device_agent.engine import Engine
from device_agent.errors import EdgeError
from device_agent.mqtt import BrokerOptions, MqttClient
from device_agent.runtimes import load_model
from device_agent.serve import serve
from device_agent.sinks import open_sink
from device_agent.sources import open_source
from device_agent.sources._png import decode_png, encode_png
from tests.conftest import DigitsSplit
from tests.serving.conftest import Broker


def test_sim_sources_are_seeded() -> None:
    a = [r.value for r in open_source("sim:imu?seed=3&n=4")]
    b = [r.value for r in open_source("sim:imu?seed=3&n=4")]
    c = [r.value for r in open_source("sim:imu?seed=4&n=4")]
    assert all(x.shape == (6, 100) for x in a)  # type: ignore[union-attr]  # BasicMotions layout
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    assert not np.array_equal(a[0], c[0])  # type: ignore[arg-type]
    vib = list(open_source("sim:vibration?seed=1&n=3&window=512"))
    assert [r.value.shape for r in vib] == [(512,)] * 3  # type: ignore[union-attr]
    held = [r.value for r in open_source("sim:vibration?seed=1&n=4&hold=2")]
    assert np.abs(held[0] - held[1]).max() < 1e-3 < np.abs(held[1] - held[2]).max()  # type: ignore[operator]


def test_sim_rate_paces_readings() -> None:
    t0 = time.monotonic()
    assert len(list(open_source("sim:vibration?n=5&rate=50"))) == 5
    assert time.monotonic() - t0 >= 0.09


def test_dir_source_reads_new_files_and_counts_bad_ones(tmp_path: Path) -> None:
    img = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    np.save(tmp_path / "a.npy", np.ones((8, 8, 1), np.float32))
    (tmp_path / "b.png").write_bytes(encode_png(img))
    (tmp_path / "c.npy").write_bytes(b"definitely not numpy")
    (tmp_path / ".partial.npy").write_bytes(b"half")
    src = open_source(f"dir:{tmp_path}?poll=0.05&idle=1.0")
    got: list = []

    def late() -> None:
        time.sleep(0.3)
        np.save(tmp_path / "d.npy", np.zeros(3, np.float32))

    threading.Thread(target=late).start()
    for r in src:
        got.append(r)
    assert [r.id for r in got] == ["a.npy", "b.png", "c.npy", "d.npy"]
    np.testing.assert_array_equal(got[1].value, img)
    assert got[2].value is None and "unreadable" in got[2].error
    with pytest.raises(EdgeError, match="no such folder"):
        open_source(f"dir:{tmp_path / 'missing'}")


def test_png_decoder_handles_filters_and_refuses_garbage() -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for shape in ((9, 7), (5, 6, 3), (4, 4, 4)):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        import io

        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", optimize=True)  # Pillow picks filters 1-4
        np.testing.assert_array_equal(decode_png(buf.getvalue()), img)
    with pytest.raises(ValueError, match="signature"):
        decode_png(b"GIF89a")


def test_unknown_source_is_refused() -> None:
    with pytest.raises(EdgeError, match="expected one of: file:, sim:, dir:, mqtt:, stdin:"):
        open_source("camera:0")
    with pytest.raises(EdgeError, match="not a number"):
        open_source("sim:imu?rate=fast")


def test_micro_batches_flush_on_size_and_on_time() -> None:
    opts = BatchOptions(max_batch=4, max_wait_ms=30)
    assert batch_complete(4, 0.0, 0.0, opts) and batch_complete(1, 0.0, 0.031, opts)
    assert not batch_complete(3, 0.0, 0.02, opts)
    assert [len(b) for b in micro_batches(range(10), opts)] == [4, 4, 2]

    def slow():  # type: ignore[no-untyped-def]
        for i in range(3):
            yield i
            time.sleep(0.1)

    batches = list(micro_batches(slow(), opts))
    assert [x for b in batches for x in b] == [0, 1, 2] and all(len(b) == 1 for b in batches)


def _client(port: int, client_id: str) -> MqttClient:
    c = MqttClient(BrokerOptions(url=f"mqtt://127.0.0.1:{port}", client_id=client_id)).start()
    c.require_connected(10)
    return c


def _publish(url_port: int, topic: str, payloads: list[bytes]) -> None:
    try:
        c = _client(url_port, "test-pub")
    except EdgeError as e:
        raise OSError(str(e)) from None  # the broker is still starting: the caller retries
    for p in payloads:
        c.publish(topic, p, qos=1).wait_for_publish(5)
    c.stop()


def test_mqtt_source_to_mqtt_results(
    broker: Broker, float_tflite: Path, digits: DigitsSplit
) -> None:
    got: list[dict] = []
    sub = MqttClient(BrokerOptions(url=broker.url, client_id="test-sub"))
    sub.subscribe("edge/v1/lab/pi-7/results", qos=1, handler=lambda m: got.append(json.loads(m.payload)))
    sub.start()
    assert sub.wait_subscribed("edge/v1/lab/pi-7/results", 10)
    src = open_source(f"mqtt:sensors/cam?broker={broker.url}&n=4&timeout=5")
    x = digits.x_test[:3]
    payloads = [
        json.dumps(x[0].ravel().tolist()).encode(),
        json.dumps(
            {"id": "frame-1", "x": x[1].ravel().tolist(), "label": int(digits.y_test[1])}
        ).encode(),
        b"\xff\x00\x01",  # neither JSON nor float32
        x[2].astype("<f4").tobytes(),
    ]
    threading.Thread(target=_publish, args=(broker.port, "sensors/cam", payloads)).start()
    sink = open_sink(broker.url, fleet="lab", device_id="pi-7", qos=1)
    stats = serve(src, Engine(load_model(float_tflite)), sinks=[sink])
    deadline = time.monotonic() + 5
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    sub.stop()
    assert stats.count == 3 and stats.errors == 1
    want = load_model(float_tflite).predict1(x).argmax(axis=1).tolist()
    assert [r["index"] for r in got] == want
    assert got[1]["input_id"] == "frame-1" and got[1]["truth"] == int(digits.y_test[1])


def test_silent_sensor_and_stopped_broker_are_counted_not_fatal(
    broker: Broker, float_tflite: Path, digits: DigitsSplit
) -> None:
    src = open_source(f"mqtt:sensors/imu?broker={broker.url}&timeout=0.3")
    errors: list[str] = []

    class Obs:
        def on_result(self, result):  # type: ignore[no-untyped-def]
            pass

        def on_error(self, reading, reason):  # type: ignore[no-untyped-def]
            errors.append(reason)

    def scenario() -> None:
        time.sleep(0.8)  # the sensor is silent: errors, not an exit
        broker.stop()  # the broker dies: still serving
        time.sleep(0.5)
        broker.start()  # paho reconnects and resubscribes
        for _ in range(40):
            with contextlib.suppress(OSError):  # the broker may still be starting
                _publish(broker.port, "sensors/imu", [digits.x_test[0].astype("<f4").tobytes()])
            if results:
                break
            time.sleep(0.5)
        src.close()

    results: list = []

    class Res:
        def on_result(self, result):  # type: ignore[no-untyped-def]
            results.append(result)

        def on_error(self, reading, reason):  # type: ignore[no-untyped-def]
            pass

    threading.Thread(target=scenario).start()
    stats = serve(src, Engine(load_model(float_tflite)), observers=[Obs(), Res()])
    assert any("sensor silent" in e for e in errors)
    assert stats.errors >= 2 and stats.count >= 1, (stats.summary(), os.getpid())


def test_mqtt_refuses_bad_addresses() -> None:
    with pytest.raises(EdgeError, match="expected mqtt://HOST"):
        open_source("mqtt:t?broker=http://x")
    with pytest.raises(EdgeError, match="fleet: expected 1-64 characters"):
        open_sink("mqtt://127.0.0.1:1", fleet="a/b", device_id="d")


@pytest.mark.parametrize("model", ["float_tflite", "int8_tflite"])
def test_file_rows_checked_in_bulk_still_count_each_bad_one(
    model: str, digits: DigitsSplit, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """FileSource marks rows finite once, up front; rows that are not (NaN, inf, a float64
    beyond float32's range) go through the engine's own check and are counted."""
    from device_agent.sources.file import FileSource

    x = digits.x_test[:6].astype(np.float64)
    x[1, 0, 0, 0] = np.nan
    x[3, 2, 2, 0] = -np.inf
    x[4, 5, 5, 0] = 1e300
    path = tmp_path / "rows.npz"
    np.savez(path, x=x)
    assert [r.finite for r in FileSource(path)] == [True, False, True, False, False, True]
    engine = Engine(load_model(request.getfixturevalue(model)))
    stats = serve(FileSource(path), engine)
    assert (stats.count, stats.errors) == (3, 3)
    good = [engine.infer_one(x[i]).index for i in (0, 2, 5)]
    checked = [engine.infer_one(x[i], finite=True).index for i in (0, 2, 5)]
    assert checked == good
