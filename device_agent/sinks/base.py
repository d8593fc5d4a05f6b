"""The sink contract: where results go (stdout JSON lines, an MQTT topic, ...)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(slots=True)
class Result:
    """One served input: what the model said and how long it took.

    Not frozen: one is built per inference, and a frozen dataclass's ``__init__`` costs
    a few microseconds more, measurable against a small model's invoke.
    """

    seq: int
    input_id: str
    index: int
    label: str
    confidence: float
    latency_ms: float
    stage: int = 0
    cached: bool = False
    truth: int | None = None
    # A non-classifier's answer (raw tensors, values or detections, by the bundle's
    # output kind): then there is no class, label or confidence to report.
    outputs: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; floats are rounded here, once per emitted result."""
        d = asdict(self)
        if d["outputs"] is None:
            del d["outputs"]
        else:
            for k in ("index", "label", "confidence"):
                del d[k]
            d["latency_ms"] = round(d["latency_ms"], 4)
            if d["truth"] is None:
                del d["truth"]
            return d
        d["confidence"] = round(d["confidence"], 6)
        d["latency_ms"] = round(d["latency_ms"], 4)
        if d["truth"] is None:
            del d["truth"]
        return d

    def to_payload(self) -> bytes:
        """The ``results`` message (``v``, ``type``: ``result``, then :meth:`to_dict`)."""
        # Imported here: the stdout sink never builds one, and `run` starts faster without it.
        from device_agent.protocol.messages import result_payload

        return result_payload(self.to_dict())


class Sink(Protocol):
    """Where results go: ``emit`` each, then ``close``."""

    def emit(self, result: Result) -> None:
        """Deliver one result."""

    def close(self) -> None:
        """Flush and release what the sink holds."""
