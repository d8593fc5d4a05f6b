"""Time one model file on this CPU: ``python -m device_agent.bench.child MODEL RUNS SECONDS THREADS``.

Run by :mod:`device_agent.bench.listener` as a separate, low-priority process with a
memory and CPU-time limit, so timing a candidate never touches the model the agent
serves and a model that crashes its runtime takes only this process down. Inputs are
synthetic, in each input's own dtype and shape (the bundle's preprocessing is not part
of a candidate). Prints one JSON line: ``p50_ms``, ``p95_ms``, ``runs``, ``runtime``,
``accelerator``, ``load_ms``; on failure ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

WARMUP = 3


def time_model(path: str, runs: int, max_seconds: float, threads: int | None) -> dict[str, Any]:
    """Load ``path`` and time up to ``runs`` single-sample calls, stopping after ``max_seconds``."""
    from device_agent.runtimes import RuntimeOptions, load_model
    from device_agent.stats import percentiles
    from device_agent.update.health import synthetic

    t0 = time.perf_counter()
    model = load_model(path, options=RuntimeOptions(threads=threads))
    load_ms = (time.perf_counter() - t0) * 1000.0
    rng = np.random.default_rng(0)
    tensors = [synthetic(s, rng) for s in model.inputs]
    for _ in range(WARMUP):
        model.run_raw(*tensors)
    lat: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(lat) < runs and (not lat or time.perf_counter() < deadline):
        s = time.perf_counter()
        model.run_raw(*tensors)
        lat.append((time.perf_counter() - s) * 1000.0)
    p = percentiles(lat)
    return {"p50_ms": round(p["p50"], 4), "p95_ms": round(p["p95"], 4), "runs": len(lat),
            "runtime": model.backend, "accelerator": model.accelerator, "load_ms": round(load_ms, 3)}


def main(argv: list[str]) -> int:
    """The child's entry point; the exit code."""
    path, runs, seconds, threads = argv[0], int(argv[1]), float(argv[2]), int(argv[3])
    try:
        out = time_model(path, runs, seconds, threads or None)
    except Exception as e:  # each runtime raises its own types; the parent reports the line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        sys.stderr.write(f"error: {first[:300]}\n")
        return 2
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
