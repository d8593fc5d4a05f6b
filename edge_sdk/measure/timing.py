"""Time a model file through the device runtimes: latency, throughput, load time, memory.

By default the measurement runs in a fresh Python process that imports only
``device_agent`` (as a device would), so its peak RSS is the footprint of the runtime
and this model, not of the TensorFlow already loaded in the converter.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from device_agent.errors import EdgeError

WARMUP = 3


@dataclass(frozen=True)
class Measurement:
    """Medians and percentiles of one artifact measured at batch 1, plus throughput."""

    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    throughput_per_s: float
    load_ms: float
    peak_rss_mb: float
    runs: int
    batch: int
    backend: str

    def to_dict(self) -> dict[str, float | int | str]:
        """Every field as plain JSON values."""
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of a non-empty list."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def measure_artifact(
    path: str | Path, x: np.ndarray, *, runs: int = 50, batch: int = 32,
    threads: int | None = None, isolated: bool = True,
) -> Measurement:
    """Latency percentiles over ``runs`` single-sample calls (after a warm-up), throughput
    over ``batch``-sized calls, load time and peak RSS (MB) of ``path``."""
    if len(x) == 0:
        raise EdgeError("measure: no samples to run")
    if not isolated:
        return _measure_here(Path(path), x, runs=runs, batch=batch, threads=threads)
    with tempfile.TemporaryDirectory(prefix="edge-measure-") as tmp:
        data = Path(tmp) / "x.npz"
        np.savez(data, x=x[: max(batch, 64)])
        cmd = [sys.executable, "-m", "edge_sdk.measure.timing", str(path), str(data), str(runs),
               str(batch), str(threads or 0)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgeError(f"{path}: measurement failed: {last}")
    return Measurement(**json.loads(proc.stdout.strip().splitlines()[-1]))


def _measure_here(path: Path, x: np.ndarray, *, runs: int, batch: int,
                  threads: int | None) -> Measurement:
    from device_agent.runtimes import RuntimeOptions, load_model

    t0 = time.perf_counter()
    model = load_model(path, options=RuntimeOptions(threads=threads))
    load_ms = (time.perf_counter() - t0) * 1000.0
    x = x.astype(np.float32)
    for i in range(WARMUP):
        model.predict1(x[i % len(x)][None])
    lat = []
    for i in range(runs):
        s = time.perf_counter()
        model.predict1(x[i % len(x)][None])
        lat.append((time.perf_counter() - s) * 1000.0)
    xb = np.resize(x, (batch, *x.shape[1:]))
    model.predict1(xb)
    rounds = max(3, runs // 5)
    s = time.perf_counter()
    for _ in range(rounds):
        model.predict1(xb)
    throughput = rounds * batch / (time.perf_counter() - s)
    return Measurement(
        latency_p50_ms=round(percentile(lat, 50), 4),
        latency_p95_ms=round(percentile(lat, 95), 4),
        latency_p99_ms=round(percentile(lat, 99), 4),
        throughput_per_s=round(throughput, 2),
        load_ms=round(load_ms, 3),
        peak_rss_mb=round(peak_rss_mb(), 2),
        runs=runs,
        batch=batch,
        backend=model.backend,
    )


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB."""
    # ru_maxrss survives fork+exec on Linux (a child of a 700 MB converter would report
    # 700 MB); VmHWM belongs to the new address space, so it is read first.
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _main(argv: list[str]) -> None:
    path, data, runs, batch, threads = argv
    with np.load(data) as z:
        x = z["x"]
    m = _measure_here(Path(path), x, runs=int(runs), batch=int(batch),
                      threads=int(threads) or None)
    sys.stdout.write(json.dumps(m.to_dict()) + "\n")


if __name__ == "__main__":
    _main(sys.argv[1:])
