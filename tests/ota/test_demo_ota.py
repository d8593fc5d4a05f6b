"""``edge demo``'s OTA step on its own: an embedded amqtt broker (MQTT 3.1.1, QoS 1)
carries the chunked transfer to a real ``edge-agent daemon``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from edge_sdk.demo.ota import ota_step
from edge_sdk.demo.state import DemoState
from edge_sdk.demo.steps import STEPS

from .conftest import Factory


def test_demo_ota_step_over_amqtt(tmp_path: Path, factory: Factory, digits_npz: Path) -> None:
    assert "ota" in [name for name, _ in STEPS]
    said: list[str] = []
    state = DemoState(out=tmp_path, say=said.append)
    state.results["report"] = SimpleNamespace(bundle=factory.bundle("9.9.9", name="demo-src.edgepkg",
                                                                     signed=False))
    state.results["train"] = SimpleNamespace(test=digits_npz)
    ota_step(state)
    print("\n".join(said))
    got = state.results["ota"]
    statuses = [d["status"] for d in got["statuses"]]
    assert statuses[0] == "downloading" and statuses[-1] == "active", statuses
    assert {"verifying", "health-check"} <= set(statuses)
    assert got["agent"]["version"] == "0.2.0" and got["agent"]["previous"].startswith("0.1.0-")
    assert any("now serves digits 0.2.0" in line for line in said), said
