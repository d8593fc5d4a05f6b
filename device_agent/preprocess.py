"""Preprocessing as data: the manifest's ``preprocessing`` steps, run the same on host and device.

Each step is a frozen dataclass registered under its ``op`` name and built from the
manifest's dict (``{"op": "normalize", "mean": [0.5], "std": [0.25]}``). Steps work on
**one sample** (no batch axis). A ``window`` step turns one series into a stack of
windows; the engine then serves the stack as a batch and averages the answers.

Expensive constants (resize coefficients, FFT windows) are computed once per shape
and memoized, so the per-reading cost is the arithmetic alone.

| op | fields | does |
|---|---|---|
| ``cast`` | ``dtype`` | ``x.astype(dtype)`` |
| ``scale`` | ``factor``, ``offset`` | ``x * factor + offset`` |
| ``normalize`` | ``mean``, ``std`` (scalars or per last-axis channel) | ``(x - mean) / std`` |
| ``resize`` | ``height``, ``width`` | bilinear, half-pixel centres, on (H, W[, C]) |
| ``reshape`` | ``shape`` (one ``-1`` allowed) | ``x.reshape(shape)`` |
| ``transpose`` | ``axes`` | ``x.transpose(axes)`` |
| ``grayscale`` | | (H, W, 3) → (H, W, 1) luminance |
| ``channels`` | ``order`` (rgb/bgr) | ``bgr`` reverses the channel axis |
| ``layout`` | ``to`` (hwc/chw) | one image's channels last or first |
| ``window`` | ``size``, ``stride``, ``axis`` | sliding windows on ``axis``, stacked first |
| ``fft`` | ``axis``, ``window`` (hann/none), ``log`` | real-FFT magnitude on ``axis`` |
| ``spectrogram`` | ``frame``, ``hop``, ``axis``, ``log`` | framed Hann FFTs (frames, bins) |
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol

import numpy as np

from device_agent.errors import BundleError


class Step(Protocol):
    """One preprocessing step on a single sample."""

    op: ClassVar[str]

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True, kw_only=True)
class Cast:
    """``cast``: the sample in ``dtype``, without a copy when it already is."""

    op: ClassVar[str] = "cast"
    dtype: str = "float32"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x.astype(self.dtype, copy=False)


@dataclass(frozen=True, kw_only=True)
class Scale:
    """``scale``: ``x * factor + offset`` in float32 (e.g. 1/255 for 8-bit pixels)."""

    op: ClassVar[str] = "scale"
    factor: float = 1.0
    offset: float = 0.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x * np.float32(self.factor) + np.float32(self.offset)).astype(
            np.float32, copy=False
        )


@dataclass(frozen=True, kw_only=True)
class Normalize:
    """``normalize``: ``(x - mean) / std`` per last-axis channel or scalar; a 0 std is refused at parse."""

    op: ClassVar[str] = "normalize"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if any(s == 0 for s in self.std):
            raise BundleError("preprocessing normalize: std must not contain 0")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        m, s = _channels(self.mean), _channels(self.std)
        return ((x - m) / s).astype(np.float32, copy=False)


@functools.lru_cache(maxsize=64)
def _channels(v: tuple[float, ...]) -> np.ndarray:
    return np.asarray(v[0] if len(v) == 1 else v, dtype=np.float32)


@dataclass(frozen=True, kw_only=True)
class Resize:
    """``resize``: bilinear (half-pixel centres) to ``height`` x ``width`` as two matrix products."""

    op: ClassVar[str] = "resize"
    height: int
    width: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.ndim not in (2, 3):
            raise ValueError(f"resize expects (H, W) or (H, W, C), got shape {x.shape}")
        ry = bilinear_matrix(x.shape[0], self.height)
        rx = bilinear_matrix(x.shape[1], self.width)
        xf = x.astype(np.float32, copy=False)
        if x.ndim == 2:
            return ry @ xf @ rx.T
        return np.einsum("ih,hwc,jw->ijc", ry, xf, rx, optimize=True)


@functools.lru_cache(maxsize=64)
def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) interpolation weights, half-pixel centres; built once per shape pair."""
    scale = n_in / n_out
    src = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo).astype(np.float32)
    m = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    m.setflags(write=False)
    return m


@dataclass(frozen=True, kw_only=True)
class Reshape:
    """``reshape``: the sample to ``shape`` (one ``-1`` allowed), e.g. a flat series to (T, C)."""

    op: ClassVar[str] = "reshape"
    shape: tuple[int, ...]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(self.shape)


@dataclass(frozen=True, kw_only=True)
class Transpose:
    """``transpose``: permutes the axes and copies, so the runtime never gets a strided view."""

    op: ClassVar[str] = "transpose"
    axes: tuple[int, ...]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(self.axes))


@dataclass(frozen=True, kw_only=True)
class Grayscale:
    """(H, W, 3) RGB → (H, W, 1) luminance (ITU-R BT.601 weights); (H, W) gains the channel."""

    op: ClassVar[str] = "grayscale"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 2:
            return x.astype(np.float32, copy=False)[..., None]
        if x.ndim != 3 or x.shape[-1] not in (1, 3, 4):
            raise ValueError(f"grayscale expects (H, W[, 1|3|4]), got shape {x.shape}")
        if x.shape[-1] == 1:
            return x.astype(np.float32, copy=False)
        return (x[..., :3].astype(np.float32, copy=False) @ _LUMA)[..., None]


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True, kw_only=True)
class Channels:
    """Channel order of (H, W, C) images: ``bgr`` reverses RGB (what OpenCV-trained models take)."""

    op: ClassVar[str] = "channels"
    order: str = "rgb"

    def __post_init__(self) -> None:
        if self.order not in ("rgb", "bgr"):
            raise BundleError(f"preprocessing channels: order {self.order!r}; expected rgb or bgr")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x[..., ::-1]) if self.order == "bgr" else x


@dataclass(frozen=True, kw_only=True)
class Layout:
    """One image's layout: ``chw`` moves channels first (an NCHW model), ``hwc`` keeps them
    last; an (H, W) image gains its one channel either way."""

    op: ClassVar[str] = "layout"
    to: str = "hwc"

    def __post_init__(self) -> None:
        if self.to not in ("hwc", "chw"):
            raise BundleError(f"preprocessing layout: to {self.to!r}; expected hwc or chw")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 2:
            x = x[..., None]
        return np.ascontiguousarray(x.transpose(2, 0, 1)) if self.to == "chw" else x


@dataclass(frozen=True, kw_only=True)
class Window:
    """``window``: one series → a stack of windows, which the engine serves as a batch."""

    op: ClassVar[str] = "window"
    size: int
    stride: int = 1
    axis: int = 0

    def __post_init__(self) -> None:
        if self.size < 1 or self.stride < 1:
            raise BundleError("preprocessing window: size and stride must be >= 1")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return sliding_windows(x, self.size, self.stride, self.axis)


def sliding_windows(x: np.ndarray, size: int, stride: int, axis: int = 0) -> np.ndarray:
    """Windows of ``size`` every ``stride`` along ``axis``, stacked on a new first axis."""
    n = x.shape[axis]
    if n < size:
        raise ValueError(f"window of {size} needs at least {size} samples on axis {axis}, got {n}")
    v = np.lib.stride_tricks.sliding_window_view(x, size, axis=axis)[
        (slice(None),) * (axis % x.ndim) + (slice(None, None, stride),)
    ]
    # sliding_window_view appends the window axis last; move it back where it was.
    v = np.moveaxis(v, -1, (axis % x.ndim) + 1)
    return np.ascontiguousarray(np.moveaxis(v, axis % x.ndim, 0))


@functools.lru_cache(maxsize=64)
def hann(n: int) -> np.ndarray:
    """A periodic Hann window of length ``n``; built once per length."""
    w = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)
    w.setflags(write=False)
    return w


_WINDOWS = {"hann": hann}


@dataclass(frozen=True, kw_only=True)
class FFT:
    """``fft``: real-FFT magnitude along ``axis``, Hann-windowed unless ``window="none"``, ``log1p`` if asked."""

    op: ClassVar[str] = "fft"
    axis: int = 0
    window: str = "hann"
    log: bool = False

    def __post_init__(self) -> None:
        if self.window not in (*_WINDOWS, "none"):
            raise BundleError(f"preprocessing fft: window {self.window!r} not in hann, none")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xm = np.moveaxis(x.astype(np.float32, copy=False), self.axis, -1)
        if self.window != "none":
            xm = xm * _WINDOWS[self.window](xm.shape[-1])
        mag = np.abs(np.fft.rfft(xm, axis=-1)).astype(np.float32)
        if self.log:
            mag = np.log1p(mag)
        return np.moveaxis(mag, -1, self.axis)


@dataclass(frozen=True, kw_only=True)
class Spectrogram:
    """``spectrogram``: frames of ``frame`` every ``hop``, each a Hann FFT magnitude (frames, bins)."""

    op: ClassVar[str] = "spectrogram"
    frame: int
    hop: int
    axis: int = 0
    log: bool = True

    def __call__(self, x: np.ndarray) -> np.ndarray:
        frames = sliding_windows(x.astype(np.float32, copy=False), self.frame, self.hop, self.axis)
        # frames: (n_frames, ..., frame, ...) with the frame axis at self.axis + 1
        return FFT(axis=(self.axis % x.ndim) + 1, log=self.log)(frames)


STEPS: dict[str, type] = {
    cls.op: cls
    for cls in (Cast, Scale, Normalize, Resize, Grayscale, Channels, Layout, Reshape, Transpose, Window, FFT,
                Spectrogram)
}


def parse_step(d: Mapping[str, Any], *, where: str = "preprocessing") -> Step:
    """One manifest dict → a typed step; an unknown op or field is a :class:`BundleError`."""
    if not isinstance(d, Mapping) or "op" not in d:
        raise BundleError(f"{where}: each step needs an 'op' field, got {d!r}")
    op = d["op"]
    cls = STEPS.get(op)
    if cls is None:
        raise BundleError(f"{where}: unknown step {op!r}; known steps: {', '.join(sorted(STEPS))}")
    known = {f.name for f in fields(cls)}
    args = {k: _tuple(v) for k, v in d.items() if k != "op"}
    unknown = set(args) - known
    if unknown:
        raise BundleError(
            f"{where}: step {op!r} has unknown field(s) {sorted(unknown)}; expected {sorted(known)}"
        )
    try:
        step: Step = cls(**args)
    except TypeError as e:
        raise BundleError(f"{where}: step {op!r}: {e}") from e
    return step


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


@dataclass(frozen=True)
class Pipeline:
    """The manifest's steps in order; ``Pipeline(())`` is the identity."""

    steps: tuple[Step, ...] = ()

    @classmethod
    def parse(cls, steps: Sequence[Mapping[str, Any]]) -> Pipeline:
        """The manifest's ``preprocessing`` list → a pipeline; a bad step's error names its index."""
        return cls(tuple(parse_step(s, where=f"preprocessing[{i}]") for i, s in enumerate(steps)))

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for s in self.steps:
            x = s(x)
        return x

    def to_dicts(self) -> list[dict[str, Any]]:
        """The manifest form (inverse of :meth:`parse`)."""
        out = []
        for s in self.steps:
            d: dict[str, Any] = {"op": s.op}
            for f in fields(s):  # type: ignore[arg-type]
                v = getattr(s, f.name)
                d[f.name] = list(v) if isinstance(v, tuple) else v
            out.append(d)
        return out

    def batch(self, xs: np.ndarray) -> np.ndarray:
        """Apply to every sample of ``xs`` (host evaluation); windows are concatenated."""
        if not self.steps:
            return xs
        return np.stack([self(x) for x in xs])


__all__ = ["STEPS", "Pipeline", "Step", "bilinear_matrix", "hann", "parse_step", "sliding_windows"]
