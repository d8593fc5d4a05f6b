"""One or two examples per ``edge-agent`` command, shown at the end of its ``--help``."""

from __future__ import annotations

EXAMPLES: dict[str, tuple[str, ...]] = {
    "run": (
        "edge-agent run digits.edgepkg --source file:test.npz --rate 50",
        'edge-agent run imu.edgepkg --source "sim:imu?seed=1&n=500" --cache near:0.01',
    ),
    "install": ("edge-agent install m-1.2.0.edgepkg --store /var/lib/edge-agent",),
    "status": ("edge-agent status --store /var/lib/edge-agent",),
    "healthcheck": ("edge-agent healthcheck /var/lib/edge-agent/slots/SLOT",),
    "listen": ("edge-agent listen --store /var/lib/edge-agent --broker mqtt://broker:1883 --device-id pi-01",),
    "daemon": (
        "edge-agent daemon --config /etc/edge-agent/agent.toml",
                "edge-agent daemon --store /var/lib/edge-agent --source file:data.npz?rate=10 "
        "--broker mqtt://broker:1883 --device-id pi-01",
    ),
}
