"""Carried state: outputs fed back as inputs on the next reading of the same stream.

Pure apart from the clock it is given: per stream the last outputs are kept; a stream
seen for the first time, asked to reset, or silent longer than ``reset_after_s`` starts
again from the declared initial value. A model without carried state has no store.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from device_agent.protocol.manifest import CarriedState, TensorSpec

MAX_STREAMS = 1024  # the oldest stream's state is dropped beyond this (a flood of ids)


class StateStore:
    """The carried inputs of every stream."""

    def __init__(self, maps: Sequence[CarriedState], inputs: Sequence[TensorSpec],
                 clock: Callable[[], float] = time.monotonic):
        self.maps = tuple(maps)
        specs = {s.name: s for s in inputs}
        self._initial = {m.input: initial(specs[m.input], m.initial) for m in self.maps}
        self._clock = clock
        self._streams: OrderedDict[str, tuple[float, dict[str, np.ndarray]]] = OrderedDict()

    @property
    def inputs(self) -> tuple[str, ...]:
        """The names of the inputs fed from outputs (what a reading need not carry)."""
        return tuple(m.input for m in self.maps)

    def current(self, stream: str, *, reset: bool = False) -> dict[str, np.ndarray]:
        """The carried inputs for ``stream``'s next reading."""
        now = self._clock()
        held = self._streams.get(stream)
        if held is None or reset or self._expired(now - held[0]):
            return dict(self._initial)
        return held[1]

    def update(self, stream: str, outputs: Mapping[str, np.ndarray]) -> None:
        """Keep the outputs mapped to inputs for ``stream``'s next reading."""
        carried = {m.input: np.array(outputs[m.output], copy=True) for m in self.maps}
        self._streams[stream] = (self._clock(), carried)
        self._streams.move_to_end(stream)
        while len(self._streams) > MAX_STREAMS:
            self._streams.popitem(last=False)

    def _expired(self, idle_s: float) -> bool:
        limits = [m.reset_after_s for m in self.maps if m.reset_after_s is not None]
        return bool(limits) and idle_s > min(limits)


def initial(spec: TensorSpec, fill: float) -> np.ndarray:
    """The initial tensor of a carried input: its declared shape (free dimensions 1)."""
    return np.full(tuple(d if d > 0 else 1 for d in spec.shape), fill, dtype=spec.dtype)
