"""Image preprocessing from command-line flags: the manifest's declarative steps, applied
to the data on the host exactly as the agent applies them on the device; and the check
that data is in the value range a model was calibrated on."""

from __future__ import annotations

from typing import Any

import numpy as np

from device_agent.errors import EdgeError


def steps_from_flags(*, resize: str | None = None, scale: str | None = None, mean: str | None = None,
                     std: str | None = None, grayscale: bool = False, bgr: bool = False,
                     layout: str | None = None) -> tuple[dict[str, Any], ...]:
    """Flags → steps in a fixed order: grayscale, resize, channel order, scale, normalize,
    layout (the order a camera frame needs them in)."""
    steps: list[dict[str, Any]] = []
    if grayscale:
        steps.append({"op": "grayscale"})
    if resize is not None:
        h, w = _dims(resize)
        steps.append({"op": "resize", "height": h, "width": w})
    if bgr:
        steps.append({"op": "channels", "order": "bgr"})
    if scale is not None:
        steps.append({"op": "scale", "factor": _number(scale, "--scale")})
    if mean is not None or std is not None:
        steps.append({"op": "normalize", "mean": _numbers(mean or "0", "--mean"),
                      "std": _numbers(std or "1", "--std")})
    if layout is not None:
        if layout.lower() not in ("nchw", "nhwc"):
            raise EdgeError(f"--layout {layout!r}: expected nchw or nhwc")
        steps.append({"op": "layout", "to": "chw" if layout.lower() == "nchw" else "hwc"})
    return tuple(steps)


def _dims(v: str) -> tuple[int, int]:
    try:
        h, w = (int(d) for d in v.lower().split("x"))
    except ValueError:
        raise EdgeError(f"--resize {v!r}: expected HEIGHTxWIDTH like 28x28") from None
    if h < 1 or w < 1:
        raise EdgeError(f"--resize {v!r}: sizes must be at least 1")
    return h, w


def _number(v: str, flag: str) -> float:
    try:
        if "/" in v:
            a, b = v.split("/")
            return float(a) / float(b)
        return float(v)
    except (ValueError, ZeroDivisionError):
        raise EdgeError(f"{flag} {v!r}: expected a number like 0.5 or 1/255") from None


def _numbers(v: str, flag: str) -> list[float]:
    return [_number(p.strip(), flag) for p in v.split(",")]


def value_range(x: np.ndarray) -> tuple[float, float]:
    """The smallest and largest value in ``x``, as plain floats (for the manifest and range checks)."""
    return float(np.min(x)), float(np.max(x))


def range_mismatch(calibrated: tuple[float, float], data: tuple[float, float]) -> str | None:
    """Why ``data``'s values do not look like those the model was calibrated on, or None.

    A mismatch is a range more than 4x wider, or values beyond the calibrated range by
    more than its width (raw 0..255 pixels for a model calibrated on 0..1)."""
    lo, hi = calibrated
    dlo, dhi = data
    span = max(hi - lo, 1e-12)
    if (dhi - dlo) > 4 * span or dhi > hi + span or dlo < lo - span:
        return (f"the data's values span {dlo:.4g}..{dhi:.4g}, but the model was calibrated on "
                f"{lo:.4g}..{hi:.4g}: give the preprocessing that maps one to the other "
                "(e.g. --scale 1/255 for 8-bit pixels)")
    return None
