"""Measure a model where it will run: load time, latency percentiles, throughput, memory, CPU.

``bench_artifact`` opens a ``.tflite``, ``.onnx`` or ``.edgepkg`` with the device agent's
own runtimes and times ``run`` on inputs already in the model's dtype, so the numbers
are the runtime's and not the cost of generating or quantizing data. The statistics
(percentiles, throughput, cost) are pure functions; the process probes (peak RSS, CPU
time) sit in one small adapter.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device_agent.errors import EdgeError
from device_agent.feeds import Feeder, constant_tensor, fix_shapes
from device_agent.protocol.manifest import TensorSpec
from device_agent.runtimes.model import Model
from device_agent.stats import percentiles


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """What to measure. ``data`` replaces random inputs; ``device_cost_per_hour`` adds cost."""

    runs: int = 200
    warmup: int = 20
    threads: int | None = None
    batch: int = 1
    runtime: str | None = None
    xnnpack: bool = True
    data: Path | None = None
    device_cost_per_hour: float | None = None
    seed: int = 0
    # --shape NAME=1x3x48x192: fixes dynamic dimensions of random inputs.
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("runs", "batch"):
            if getattr(self, name) < 1:
                raise EdgeError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise EdgeError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise EdgeError(f"--threads must be at least 1, got {self.threads}")
        if self.device_cost_per_hour is not None and self.device_cost_per_hour < 0:
            raise EdgeError(f"--device-cost must be 0 or more, got {self.device_cost_per_hour}")


@dataclass(frozen=True)
class BenchMeasurement:
    """One measurement. Latencies are per call (one batch); throughput is samples per second."""

    artifact: str
    runtime: str
    file_bytes: int
    batch: int
    runs: int
    threads: int | None
    load_ms: float
    latency_ms: dict[str, float]
    throughput_per_s: float
    peak_rss_mb: float
    cpu_util: float
    cpu_cores_used: float
    cores: int
    input_source: str
    cost_per_1k: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON values (``edge bench --json``)."""
        return asdict(self)


# --- pure core -------------------------------------------------------------------------


def throughput(samples: int, wall_s: float) -> float:
    """Samples per second over ``wall_s``; 0 when no time was measured."""
    return samples / wall_s if wall_s > 0 else 0.0


def cost_per_1k(per_hour: float, throughput_per_s: float) -> float:
    """Cost of 1,000 inferences on a device billed ``per_hour`` and kept busy at this rate."""
    if throughput_per_s <= 0:
        raise EdgeError("cannot price inferences: throughput is zero")
    return per_hour / 3600.0 / throughput_per_s * 1000.0


def cpu_share(cpu_s: float, wall_s: float, cores: int) -> tuple[float, float]:
    """(fraction of the whole machine, cores kept busy) for CPU time spent over wall time."""
    if wall_s <= 0:
        return 0.0, 0.0
    used = cpu_s / wall_s
    return used / max(1, cores), used


def input_shape(spec: TensorSpec, batch: int) -> tuple[int, ...]:
    """The model's input shape with the batch set (a rank-0 input stays rank 0); other
    dynamic dimensions are an error that names ``--shape``."""
    if not spec.shape:
        return ()
    rest = spec.shape[1:]
    if any(d <= 0 for d in rest):
        example = "x".join(str(d) if d > 0 else ("1" if i == 0 else "?") for i, d in enumerate(spec.shape))
        raise EdgeError(
            f"input {spec.name} has dynamic dimensions {spec.shape}; give --shape {spec.name}={example} "
            "with numbers for ?, or --data with real inputs"
        )
    return (batch if spec.shape[0] <= 0 or batch > 1 else spec.shape[0], *rest)


def random_inputs(spec: TensorSpec, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Float inputs in [0, 1) (integer inputs: small ids) of the model's shape."""
    shape = input_shape(spec, batch)
    if np.dtype(spec.dtype).kind in "iu" and not spec.quantized:
        return np.asarray(rng.integers(0, 10, size=shape)).astype(spec.dtype)
    return np.asarray(rng.random(shape, dtype=np.float32))


# --- process probes (IO) ---------------------------------------------------------------


class ProcessProbe:
    """Peak RSS since ``reset`` (Linux: VmHWM after clear_refs) and process CPU time."""

    _STATUS = Path("/proc/self/status")

    def reset_peak(self) -> None:
        """Start a new peak-RSS window (Linux; elsewhere nothing happens)."""
        # Writing "5" resets the kernel's peak-RSS counter (Linux >= 4.0), so the peak is
        # this measurement's, not the process's whole history.
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")

    def peak_rss_mb(self) -> float:
        """Peak resident memory in MB since the last reset; the lifetime peak where /proc cannot say."""
        try:
            for line in self._STATUS.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        # ru_maxrss is KiB on Linux: the whole process's peak, an upper bound.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    @staticmethod
    def cpu_seconds() -> float:
        """CPU time this process has used, all threads together."""
        # CLOCK_PROCESS_CPUTIME_ID: all threads, nanosecond resolution (os.times ticks
        # at 10 ms, too coarse for a run of small models).
        return time.process_time()

    @staticmethod
    def cores() -> int:
        """The cores this process may run on (its affinity, where the platform tells)."""
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:
            return os.cpu_count() or 1


# --- measurement -----------------------------------------------------------------------


def _inputs(model: Model, config: BenchConfig, feeder: Feeder) -> tuple[list[list[np.ndarray]], str]:
    """Batches ready for ``run_raw``: random, or cut from ``config.data`` cyclically.

    Inputs the manifest fixes (constants) are fed as declared; several named inputs come
    from an ``.npz`` with one array per input name, one sample per call."""
    rng = np.random.default_rng(config.seed)
    specs = fix_shapes(model.inputs, config.shapes)
    consts = {c.name: constant_tensor(c) for c in feeder.constants}
    if config.data is None:
        xs = [consts[s.name] if s.name in consts else _prepare(model, random_inputs(s, config.batch, rng), i)
              for i, s in enumerate(specs)]
        return [xs], "random"
    from edge_sdk.model.data import fit_to_shape, load_dataset, load_named

    named = load_named(config.data)
    if named is not None or len(feeder.fed) != 1:
        if named is None:
            raise EdgeError(f"{model.path.name}: takes {len(feeder.fed)} inputs {[s.name for s in feeder.fed]}; "
                            f"give --data as an .npz with one array per input name")
        if config.batch != 1:
            raise EdgeError("--batch: inputs by name are fed one sample per call; use --batch 1")
        n = min(config.runs, len(next(iter(named.values()))))
        return [feeder.tensors({k: v[i] for k, v in named.items()}) for i in range(n)], str(config.data)

    ds = fit_to_shape(load_dataset(config.data), model.inputs[0].shape, what=f"model {model.path.name}")
    # Enough distinct batches to cover the data once (or one per run), wrapping around.
    n_batches = min(config.runs, -(-len(ds) // config.batch))
    x = ds.x[np.arange(n_batches * config.batch) % len(ds)]
    return [[model.prepare(x[s : s + config.batch])] for s in range(0, len(x), config.batch)], str(config.data)


def _prepare(model: Model, x: np.ndarray, i: int) -> np.ndarray:
    spec = model.inputs[i]
    if not spec.shape:  # rank 0: as declared, no batch dimension
        return np.asarray(x, dtype=spec.dtype)
    return model.prepare(x, i)


def time_calls(model: Model, feeds: list[list[np.ndarray]], runs: int, warmup: int) -> tuple[list[float], float]:
    """Per-call latencies (ms) of ``runs`` timed calls after ``warmup``; and total wall seconds."""
    for i in range(warmup):
        model.run_raw(*feeds[i % len(feeds)])
    lat = []
    clock = time.perf_counter
    start = clock()
    for i in range(runs):
        t0 = clock()
        model.run_raw(*feeds[i % len(feeds)])
        lat.append((clock() - t0) * 1000.0)
    return lat, clock() - start


def bench_artifact(path: str | Path, *, config: BenchConfig) -> BenchMeasurement:
    """Load ``path`` (``.tflite``, ``.onnx`` or ``.edgepkg``) and measure it under ``config``."""
    from device_agent.loader import engine_for
    from device_agent.runtimes import RuntimeOptions
    from edge_sdk.measure.evaluate import preferred_format

    p = Path(path)
    if not p.is_file():
        raise EdgeError(f"{p}: no such model file")
    probe = ProcessProbe()
    probe.reset_peak()
    opts = RuntimeOptions(threads=config.threads, xnnpack=config.xnnpack)
    t0 = time.perf_counter()
    prefer = preferred_format(config.runtime)
    with engine_for(p, runtime=config.runtime, options=opts, prefer=prefer) as engine:
        load_ms = (time.perf_counter() - t0) * 1000.0
        model = engine.model
        feeds, source = _inputs(model, config, engine.feeder)
        cpu0, wall0 = probe.cpu_seconds(), time.perf_counter()
        lat, wall = time_calls(model, feeds, config.runs, config.warmup)
        # CPU over the same span as the wall clock it is divided by: warm-up included
        # (``wall`` alone covers only the timed runs, which made 4.9 cores of 2 busy).
        cpu_s, cpu_wall = probe.cpu_seconds() - cpu0, time.perf_counter() - wall0
        backend = model.backend
    tput = throughput(config.runs * config.batch, wall)
    util, used = cpu_share(cpu_s, cpu_wall, probe.cores())
    stats = percentiles(lat)
    return BenchMeasurement(
        artifact=str(p),
        runtime=backend,
        file_bytes=p.stat().st_size,
        batch=config.batch,
        runs=config.runs,
        threads=config.threads,
        load_ms=load_ms,
        latency_ms=stats,
        throughput_per_s=tput,
        peak_rss_mb=probe.peak_rss_mb(),
        cpu_util=util,
        cpu_cores_used=used,
        cores=probe.cores(),
        input_source=source,
        cost_per_1k=None
        if config.device_cost_per_hour is None
        else cost_per_1k(config.device_cost_per_hour, tput),
    )


__all__ = [
    "BenchConfig",
    "BenchMeasurement",
    "ProcessProbe",
    "bench_artifact",
    "cost_per_1k",
    "cpu_share",
    "random_inputs",
    "throughput",
    "time_calls",
]
