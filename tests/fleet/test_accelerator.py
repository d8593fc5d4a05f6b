"""The accelerator a device runs its model on: chosen by options, fallback logged, and
named in the retained birth message."""

from __future__ import annotations

from tests.fleet.conftest import wait_for


def test_birth_names_the_accelerator_after_a_delegate_fell_back(tiny_model, broker, procs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from device_agent.mqtt import BrokerOptions, MqttClient
    from device_agent.protocol.messages import State

    mq = broker()
    seen: list[State] = []
    watcher = MqttClient(BrokerOptions(url=mq.url, client_id="watcher"),
                         on_message=lambda m: seen.append(State.from_payload(m.payload)))
    watcher.start()
    assert watcher.wait_connected(10)
    watcher.subscribe("edge/v1/lab/pi-07/state")
    missing = tmp_path / "libedgetpu.so.1"
    agent = procs.agent(tiny_model, mq.url, "pi-07", outbox=tmp_path / "ob.db",
                        extra=("--delegate", str(missing)))
    wait_for(lambda: any(s.status.value == "online" for s in seen), 30, "birth")
    procs.stop(agent)
    watcher.stop()
    birth = next(s for s in seen if s.status.value == "online")
    assert birth.accelerator == "xnnpack"  # the delegate did not load: LiteRT's CPU delegate ran it
    log = (tmp_path / "agent-pi-07.log").read_text()
    assert f"LiteRT delegate {missing}: no such file; running on the CPU" in log
