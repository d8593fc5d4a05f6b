"""``results`` messages are typed and versioned like every other message: a real MQTT
sink publishing to a real Mosquitto, read back with ``InferenceResult.from_payload``."""

from __future__ import annotations

import json
import queue

import paho.mqtt.client as mqtt

from device_agent.protocol import topics
from device_agent.protocol.messages import InferenceResult
from device_agent.sinks.base import Result
from device_agent.sinks.mqtt import MqttSink


def test_mqtt_results_carry_version_and_type(broker) -> None:  # type: ignore[no-untyped-def]
    got: queue.Queue[bytes] = queue.Queue()
    subscribed: queue.Queue[object] = queue.Queue()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="results-reader")
    sub.on_message = lambda c, u, m: got.put(m.payload)
    sub.on_subscribe = lambda c, u, mid, codes, p: subscribed.put(codes)
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    sub.subscribe(topics.results("lab", "pi-7"), qos=1)
    subscribed.get(timeout=10)
    sink = MqttSink(broker.url, fleet="lab", device_id="pi-7", qos=1)
    sent = [Result(0, "a", 3, "three", 0.91234567, 1.23456789, stage=1, cached=True, truth=3),
            Result(1, "b", 4, "four", 0.5, 2.0)]  # fmt: skip
    for r in sent:
        sink.emit(r)
    sink.close()
    payloads = [got.get(timeout=10) for _ in sent]
    sub.loop_stop()
    sub.disconnect()
    assert [(json.loads(p)["v"], json.loads(p)["type"]) for p in payloads] == [(1, "result")] * 2
    assert [InferenceResult.from_payload(p) for p in payloads] == [
        InferenceResult(seq=0, input_id="a", index=3, label="three", confidence=0.912346,
                        latency_ms=1.2346, stage=1, cached=True, truth=3),
        InferenceResult(seq=1, input_id="b", index=4, label="four", confidence=0.5, latency_ms=2.0),
    ]  # fmt: skip
