"""What this machine can run: 32-bit ARM gets no LiteRT or ONNX Runtime wheels.

Kept apart from :mod:`device_agent.runtimes` (which imports numpy), so the CLI can say it
at start of any command for the cost of one ``uname``.
"""

from __future__ import annotations

import os


def unsupported_machine() -> str | None:
    """Why no runtime can exist on this machine (32-bit ARM), or ``None``."""
    machine = os.uname().machine.lower()  # what platform.machine() reads, without importing it
    if machine.startswith("armv") or machine in ("arm", "armhf", "armel"):
        return (
            f"this is a 32-bit ARM system ({machine}): LiteRT and ONNX Runtime publish no wheels for "
            "it, so no model can run here; install a 64-bit OS (Raspberry Pi OS 64-bit, Ubuntu arm64)"
        )
    return None
