"""Named inputs: from one reading (an array, or arrays by input name) to the tensors a
model takes, in its order and dtypes, with the manifest's constants filled in.

Pure: no runtime, no IO. A reading holds one *sample* per input: the batch dimension is
added here where the model declares one (never to a rank-0 input), and a source's
description of what it carries is checked against the model before serving starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from device_agent.errors import EdgeError, InputError
from device_agent.protocol.manifest import CarriedState, InputConstant, TensorSpec
from device_agent.quant import quantize
from device_agent.state import initial

# What a reading carries: one array, or one array per input name.
Value = np.ndarray | Mapping[str, np.ndarray]
# What a source says it carries: input name ("" for a single unnamed array) → (sample
# shape, dtype). A source that cannot know (a sensor, a broker) describes nothing.
Described = Mapping[str, tuple[tuple[int, ...], str]]


@dataclass(frozen=True)
class Feeder:
    """Turns readings into the model's input tensors."""

    specs: tuple[TensorSpec, ...]
    constants: tuple[InputConstant, ...] = ()
    state: tuple[CarriedState, ...] = ()  # inputs fed from the previous reading's outputs

    @property
    def carried(self) -> tuple[str, ...]:
        """The inputs fed from the previous reading's outputs, so no reading carries them."""
        return tuple(m.input for m in self.state)

    @property
    def fed(self) -> tuple[TensorSpec, ...]:
        """The inputs a reading must carry (every input but the constants and carried state)."""
        fixed = {c.name for c in self.constants} | set(self.carried)
        return tuple(s for s in self.specs if s.name not in fixed)

    def tensors(self, value: Value, carried: Mapping[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """One reading (and the carried state) → one tensor per model input, in order."""
        fed = self.fed
        if isinstance(value, Mapping):
            missing = [s.name for s in fed if s.name not in value]
            if missing and not (len(fed) == 1 and len(value) == 1):
                raise InputError(f"reading lacks input(s) {missing}; it carries {sorted(value)}")
            arrays = {s.name: value[s.name] if s.name in value else next(iter(value.values()))
                      for s in fed}
        else:
            if len(fed) != 1:
                raise InputError(
                    f"the model takes {len(fed)} inputs {[s.name for s in fed]}; the reading is one array"
                )
            arrays = {fed[0].name: value}
        consts = {c.name: constant_tensor(c) for c in self.constants}
        if self.state:  # a stream's first reading (or a caller without a store): initial values
            specs = {s.name: s for s in self.specs}
            consts.update({m.input: initial(specs[m.input], m.initial) for m in self.state})
            consts.update(carried or {})
        return [consts[s.name] if s.name in consts else as_input(arrays[s.name], s) for s in self.specs]

    def check(self, described: Described, *, what: str) -> None:
        """Refuse, before serving, a source whose readings cannot feed the model."""
        fed = self.fed
        names = [s.name for s in fed]
        if set(described) == {""}:
            if len(fed) != 1:
                raise EdgeError(
                    f"{what} gives one array per reading; the model takes {len(fed)} inputs {names} "
                    "(give an .npz with one array per input name, or fix the others as constants)"
                )
            pairs = [(fed[0], described[""])]
        else:
            missing = [n for n in names if n not in described]
            if missing:
                raise EdgeError(f"{what} carries {sorted(described)}; the model's inputs {missing} are missing")
            pairs = [(s, described[s.name]) for s in fed]
        for spec, (shape, dtype) in pairs:
            problem = fit_problem(shape, dtype, spec)
            if problem:
                raise EdgeError(f"{what}: {problem}")


def sample_shape(spec: TensorSpec) -> tuple[int, ...]:
    """The shape of one sample of ``spec``: the declared shape without its batch
    dimension; a rank-0 input's sample is rank 0."""
    return tuple(spec.shape[1:]) if spec.shape else ()


def fit_problem(shape: tuple[int, ...], dtype: str, spec: TensorSpec) -> str | None:
    """Why samples of ``shape``/``dtype`` cannot feed ``spec``, or ``None``."""
    want = sample_shape(spec)
    kind_got, kind_want = np.dtype(dtype).kind, np.dtype(spec.dtype).kind
    if kind_want in "iub" and not spec.quantized and kind_got == "f":
        return f"input {spec.name} takes {spec.dtype}; the data is {dtype}"
    for target in (want, tuple(spec.shape)):  # one sample, or the whole declared tensor
        if len(shape) == len(target) and all(w <= 0 or g == w for g, w in zip(shape, target, strict=True)):
            return None
    if want and all(w > 0 for w in want) and int(np.prod(shape)) == int(np.prod(want)):
        return None  # a flat row for an image model: reshaped per reading
    return f"input {spec.name} takes samples of shape {want} ({spec.dtype}); the data has {tuple(shape)}"


def as_input(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """One sample → the input tensor: batch dimension added where declared, cast or
    quantized to the declared dtype."""
    a = np.asarray(x)
    want = sample_shape(spec)
    fixed = bool(want) and all(w > 0 for w in want)
    if spec.shape and a.shape != tuple(spec.shape) and (
        a.ndim == len(want) or (fixed and a.size == int(np.prod(want)))
    ):
        a = a.reshape((1, *(want if fixed else a.shape)))
    if a.ndim != len(spec.shape):
        raise InputError(f"input {spec.name}: expected shape {spec.shape}, got {np.shape(x)}")
    if spec.quantized:
        return quantize(a, spec)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise InputError(f"input {spec.name}: contains NaN or infinite values")
    return np.ascontiguousarray(a, dtype=spec.dtype)


def constant_tensor(c: InputConstant) -> np.ndarray:
    """A manifest constant as the array its input takes (declared dtype and shape)."""
    return np.asarray(c.values, dtype=c.dtype).reshape(c.shape)


def parse_shape_options(options: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """``["x=1x3x48x192", "sr="]`` → ``{"x": (1, 3, 48, 192), "sr": ()}``."""
    out: dict[str, tuple[int, ...]] = {}
    for opt in options:
        name, eq, dims = opt.partition("=")
        try:
            if not eq or not name:
                raise ValueError
            out[name] = tuple(int(d) for d in dims.lower().split("x")) if dims else ()
        except ValueError:
            raise EdgeError(f"--shape {opt!r}: expected NAME=1x3x48x192 (NAME= for a scalar)") from None
        if any(d < 1 for d in out[name]):
            raise EdgeError(f"--shape {opt!r}: dimensions must be at least 1")
    return out


def fix_shapes(specs: Sequence[TensorSpec], shapes: Mapping[str, tuple[int, ...]]) -> tuple[TensorSpec, ...]:
    """``specs`` with dynamic dimensions fixed by ``--shape`` (an unknown name is an error)."""
    names = {s.name for s in specs}
    unknown = sorted(set(shapes) - names)
    if unknown:
        raise EdgeError(f"--shape names {unknown}; the model's inputs are {sorted(names)}")
    out = []
    for s in specs:
        if s.name in shapes:
            new = shapes[s.name]
            if len(new) != len(s.shape) or any(d > 0 and d != n for d, n in zip(s.shape, new, strict=True)):
                raise EdgeError(f"--shape {s.name}={'x'.join(map(str, new))} does not fit the declared {s.shape}")
            s = TensorSpec(s.name, tuple(new), s.dtype, s.scale, s.zero_point)
        out.append(s)
    return tuple(out)
