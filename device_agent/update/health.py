"""Health check of a staged model: load, warm up, and replay the bundle's validation set.

The bundle carries ``validation.npz`` with inputs ``x`` and the outputs ``y`` recorded at
build time; ``x`` is float, or (for a model with int8/uint8 input) already quantized with
the model's own input parameters (:func:`stored_inputs`). A model passes when its outputs
agree within tolerance, contain no NaN or infinity, and the median batch latency stays
within the budget. :func:`judge` is the pure decision; :func:`check_slot` is the IO around
it; :func:`check_slot_isolated` runs the same check in a child process, so a model that
crashes its runtime cannot take the agent down.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from device_agent.errors import BundleError, EdgeError
from device_agent.protocol.manifest import Manifest, TensorSpec
from device_agent.quant import dequantize, quantize


@dataclass(frozen=True, kw_only=True)
class HealthOptions:
    """Tolerances and budgets of the health check."""

    rtol: float = 1e-3
    atol: float = 1e-3
    latency_budget_ms: float = 1000.0
    warmup: int = 2
    runs: int = 5
    timeout_s: float = 60.0
    memory_limit_mb: int | None = 2048  # isolated check only: RLIMIT_AS of the child
    cpu_limit_s: int | None = None  # isolated check only: RLIMIT_CPU (SIGXCPU) of the child


@dataclass(frozen=True)
class HealthReport:
    """The outcome; ``reason`` names the first failed check."""

    ok: bool
    reason: str
    max_abs_error: float | None = None
    latency_ms: float | None = None

    def to_json(self) -> str:
        """The report as one JSON object: what the isolated health check prints to its parent."""
        return json.dumps(asdict(self))


def judge(expected: np.ndarray, got: np.ndarray, latencies_ms: list[float], opts: HealthOptions) -> HealthReport:
    """Pure decision on recorded versus produced outputs and measured latencies."""
    lat = float(np.median(latencies_ms)) if latencies_ms else None
    if got.shape != expected.shape:
        return HealthReport(False, f"output shape {got.shape} differs from the recorded {expected.shape}")
    if not np.isfinite(got).all():
        return HealthReport(False, "the model produced NaN or infinite outputs on the validation inputs")
    err = float(np.max(np.abs(got.astype(np.float64) - expected))) if got.size else 0.0
    if not np.allclose(got, expected, rtol=opts.rtol, atol=opts.atol):
        return HealthReport(
            False,
            f"outputs disagree with the recorded validation outputs (max abs error {err:.3g}, "
            f"tolerance atol={opts.atol} rtol={opts.rtol})",
            err, lat,
        )
    if lat is not None and lat > opts.latency_budget_ms:
        return HealthReport(
            False, f"median latency {lat:.1f} ms is over the budget of {opts.latency_budget_ms} ms", err, lat
        )
    return HealthReport(True, "ok", err, lat)


def load_validation(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` from a validation.npz; never unpickles anything."""
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as z:
            x, y = np.asarray(z["x"]), np.asarray(z["y"])
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise BundleError(f"{path.name}: expected an .npz with arrays x and y ({e})") from e
    if x.dtype.kind not in "fiu":
        raise BundleError(f"{path.name}: x has dtype {x.dtype}; expected float or integer inputs")
    if y.dtype.kind != "f":
        raise BundleError(f"{path.name}: y has dtype {y.dtype}; expected float outputs")
    return x, y


def stored_inputs(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Validation inputs as a bundle stores them: quantized when the model's input is."""
    return quantize(x, spec) if spec.quantized else np.asarray(x, dtype=np.float32)


def validation_inputs(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """The float batch to replay from stored inputs ``x``. For a quantized input, integer
    inputs must be the model's own quantized dtype (dequantized, they quantize back to the
    same integers); for a float input they are values stored narrow, cast back."""
    if x.dtype.kind == "f":
        return x.astype(np.float32, copy=False)
    if not spec.quantized:
        return x.astype(np.float32)
    if not spec.quantized or x.dtype != np.dtype(spec.dtype):
        raise BundleError(f"validation inputs are {x.dtype}, but input {spec.name} takes "
                          f"{spec.dtype}{' (quantized)' if spec.quantized else ''}")
    return dequantize(x, spec)


def check_slot(root: Path, manifest: Manifest, opts: HealthOptions) -> HealthReport:
    """Load the model in this process, warm it up and judge it on the validation set."""
    from device_agent.engine import Engine

    if manifest.validation is None:
        return _check_without_validation(root, manifest, opts)
    named = load_named_validation(root / manifest.validation)
    if named is not None:
        return _check_named(root, manifest, *named, opts)
    x, y = load_validation(root / manifest.validation)
    try:
        engine = Engine.from_bundle_dir(root, manifest)
        x = validation_inputs(x, engine.model.inputs[0])
        for _ in range(opts.warmup):
            engine.model.predict1(x)
        latencies = []
        for _ in range(max(1, opts.runs)):
            t0 = time.perf_counter()
            got = engine.model.predict1(x)
            latencies.append((time.perf_counter() - t0) * 1000.0)
    except EdgeError as e:
        return HealthReport(False, f"the model failed to load or run: {e}")
    except Exception as e:  # each runtime raises its own types (onnxruntime's Fail, ...)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return HealthReport(False, f"the runtime failed while running the model: {first[:300]}")
    return judge(y, np.asarray(got), latencies, opts)


def load_named_validation(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
    """The ``in.NAME`` inputs and ``y`` of a named validation set; ``None`` for the ``x`` form."""
    from device_agent.protocol.validation import named_inputs

    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise BundleError(f"{path.name}: not a readable .npz ({e})") from e
    named = named_inputs(arrays)
    if named is None:
        return None
    if "y" not in arrays or arrays["y"].dtype.kind != "f":
        raise BundleError(f"{path.name}: expected float outputs 'y' beside the inputs")
    return named, arrays["y"]


def _check_named(root: Path, manifest: Manifest, inputs: dict[str, np.ndarray], y: np.ndarray,
                 opts: HealthOptions) -> HealthReport:
    """Replay every recorded sample with its exact tensors (any number of inputs)."""
    from device_agent.engine import Engine
    from device_agent.protocol.validation import replay

    try:
        model = Engine.from_bundle_dir(root, manifest).model
        for _ in range(opts.warmup):
            replay(model, inputs)
        latencies = []
        for _ in range(max(1, opts.runs)):
            t0 = time.perf_counter()
            got = replay(model, inputs)
            latencies.append((time.perf_counter() - t0) * 1000.0)
    except EdgeError as e:
        return HealthReport(False, f"the model failed to load or run: {e}")
    except Exception as e:  # each runtime raises its own types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return HealthReport(False, f"the runtime failed while running the model: {first[:300]}")
    return judge(y, got, latencies, opts)


def _check_without_validation(root: Path, manifest: Manifest, opts: HealthOptions) -> HealthReport:
    """No recorded outputs: load, warm up and run synthetic inputs (every input, in its
    declared dtype; the manifest's constants as declared); outputs must be finite."""
    from device_agent.engine import Engine
    from device_agent.feeds import constant_tensor
    from device_agent.protocol.validation import replay

    try:
        model = Engine.from_bundle_dir(root, manifest).model
        consts = {c.name: constant_tensor(c) for c in manifest.constants}
        rng = np.random.default_rng(0)
        inputs = {s.name: (consts[s.name] if s.name in consts else synthetic(s, rng))[None]
                  for s in model.inputs}
        latencies = []
        for i in range(opts.warmup + max(1, opts.runs)):
            t0 = time.perf_counter()
            got = replay(model, inputs)
            if i >= opts.warmup:
                latencies.append((time.perf_counter() - t0) * 1000.0)
    except EdgeError as e:
        return HealthReport(False, f"the model failed to load or run: {e}")
    except Exception as e:  # each runtime raises its own types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return HealthReport(False, f"the runtime failed while running the model: {first[:300]}")
    report = judge(got, got, latencies, opts)  # finiteness and latency only
    if report.ok:
        return HealthReport(True, "ok (no validation.npz: load, finite outputs and latency checked)",
                            None, report.latency_ms)
    return report


def synthetic(spec: TensorSpec, rng: np.random.Generator) -> np.ndarray:
    """One tensor of ``spec``'s shape (dynamic dimensions 1) and dtype: floats in [0, 1),
    integers 0 (an index, a length or a flag is safe at 0)."""
    shape = tuple(d if d > 0 else 1 for d in spec.shape)
    if np.dtype(spec.dtype).kind == "f":
        return rng.uniform(0.0, 1.0, size=shape).astype(spec.dtype)
    if spec.quantized:
        return quantize(rng.uniform(0.0, 1.0, size=shape), spec)
    return np.zeros(shape, dtype=spec.dtype)


def check_slot_isolated(root: Path, opts: HealthOptions) -> HealthReport:
    """Run :func:`check_slot` in ``python -m device_agent healthcheck`` with a timeout."""
    cmd = [
        sys.executable, "-m", "device_agent", "healthcheck", str(root),
        "--rtol", str(opts.rtol), "--atol", str(opts.atol),
        "--latency-budget-ms", str(opts.latency_budget_ms),
    ]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=opts.timeout_s,
            preexec_fn=_limits(opts.memory_limit_mb, opts.cpu_limit_s), env=_child_env(),
        )
    except subprocess.TimeoutExpired:
        return HealthReport(False, f"health-check process did not finish within {opts.timeout_s} s")
    return _parse_child(proc)


def _parse_child(proc: subprocess.CompletedProcess[str]) -> HealthReport:
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return HealthReport(False, f"health-check process was killed by {name}: the model crashed its runtime")
    lines = proc.stdout.strip().splitlines()
    try:
        return HealthReport(**json.loads(lines[-1]))
    except (IndexError, ValueError, TypeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return HealthReport(False, f"health-check process exited with code {proc.returncode}: {tail}")


def _limits(memory_mb: int | None, cpu_s: int | None):  # type: ignore[no-untyped-def]
    def apply() -> None:
        import resource

        if cpu_s:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        if memory_mb:
            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The child must not inherit a crash-test pause meant for the parent.
    env.pop("EDGE_AGENT_PAUSE_AT", None)
    return env
