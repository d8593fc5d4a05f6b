"""``deploy/status`` names the boot it comes from, as telemetry does, so a report can be
tied to the agent process (and model) that made it."""

from __future__ import annotations

import json

from device_agent.protocol.messages import DeployStatus


def test_deploy_status_carries_the_boot_id() -> None:
    s = DeployStatus("r1", "active", "", "1.0.0", (), "pi-01", 5.0, "b00t1d")
    assert json.loads(s.to_payload())["boot_id"] == "b00t1d"
    assert DeployStatus.from_payload(s.to_payload()) == s
