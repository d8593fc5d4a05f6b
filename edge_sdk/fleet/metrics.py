"""Collector counters, rendered in the Prometheus text format (served on ``/metrics`` by
:mod:`edge_sdk.fleet.http_server`)."""

from __future__ import annotations

import threading
from collections import Counter


class Metrics:
    """Thread-safe counters and gauges, rendered in the Prometheus exposition format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.help: dict[str, tuple[str, str]] = {}

    def inc(self, name: str, n: float = 1, help_: str = "", **labels: str) -> None:
        """Add ``n`` to a counter; the first ``help_`` given for a name is the one rendered."""
        with self._lock:
            self.counters[(name, tuple(sorted(labels.items())))] += n  # type: ignore[assignment]
            self.help.setdefault(name, ("counter", help_))

    def set(self, name: str, value: float, help_: str = "", **labels: str) -> None:
        """Set a gauge to ``value``; the first ``help_`` given for a name is the one rendered."""
        with self._lock:
            self.gauges[(name, tuple(sorted(labels.items())))] = value
            self.help.setdefault(name, ("gauge", help_))

    def get(self, name: str, **labels: str) -> float:
        """A counter's or gauge's current value (0 when never set), without rendering the text."""
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            return float(self.counters.get(key, 0) or self.gauges.get(key, 0.0))

    def render(self) -> str:
        """Every metric as ``/metrics`` serves it: HELP, TYPE, then one line per label set."""
        with self._lock:
            items = [*self.counters.items(), *self.gauges.items()]
            lines: list[str] = []
            for name in sorted(self.help):
                kind, text = self.help[name]
                lines += [f"# HELP {name} {text or name}", f"# TYPE {name} {kind}"]
                for (n, labels), v in sorted(items):
                    if n == name:
                        lab = ",".join(f'{k}="{val}"' for k, val in labels)
                        lines.append(f"{n}{{{lab}}} {v}" if lab else f"{n} {v}")
        return "\n".join(lines) + "\n"
