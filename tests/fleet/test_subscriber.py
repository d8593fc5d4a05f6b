"""The collector's MQTT client against a real Mosquitto: keepalive while only receiving,
and text the databases cannot store refused at parse time."""

from __future__ import annotations

import json
import threading
import time

import pytest

from device_agent.mqtt import BrokerOptions, MqttClient
from device_agent.protocol.messages import MessageError, State
from edge_sdk.fleet.subscriber import Subscriber
from edge_sdk.fleet.window_decoder import decode_window


def test_a_subscriber_that_only_receives_qos0_keeps_its_connection(broker) -> None:  # type: ignore[no-untyped-def]
    mq = broker()
    connects, got, subscribed = [], [], threading.Event()
    sub = Subscriber(
        BrokerOptions(url=mq.url, client_id="recv-only", keepalive=1), "t/#", qos=0,
        on_messages=lambda msgs, gen: got.extend(msgs), on_connect=lambda: connects.append(1),
        on_subscribe=subscribed.set,
    ).start()  # fmt: skip
    assert subscribed.wait(10)
    pub = MqttClient(BrokerOptions(url=mq.url, client_id="qos0-pub"))
    pub.start()
    assert pub.wait_connected(10)
    for i in range(80):  # 8 s of steady QoS 0 traffic (Mosquitto 2.0 drops late: ~4x keepalive)
        pub.publish("t/x", str(i).encode(), qos=0)
        time.sleep(0.1)
    time.sleep(0.3)
    pub.stop()
    sub.stop()
    assert len(connects) == 1, "the broker dropped the subscriber (no PINGREQ while receiving)"
    assert [m.payload for m in got] == [str(i).encode() for i in range(80)]


@pytest.mark.parametrize("text", ["a\x00b", "a\ud800"])
def test_text_no_database_can_store_is_refused(text: str) -> None:
    state = {"v": 1, "type": "state", "status": "online", "boot_id": text, "ts": 1.0}
    with pytest.raises(MessageError, match="boot_id"):
        State.from_payload(json.dumps(state))
    window = {"v": 1, "type": "telemetry", "seq": 1, "boot_id": text, "start": 1, "end": 2}
    with pytest.raises(MessageError):
        decode_window(json.dumps(window).encode())
