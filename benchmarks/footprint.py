"""Device footprint (issue 14): install size, agent memory, time to first result.

    python -m benchmarks.footprint [--no-arm] [--trials N]

Everything is measured in this run, on installs made here from the wheel of this checkout:

- **Install size**: site-packages of a fresh venv after ``pip install WHEEL[agent-tflite]``
  and ``WHEEL[agent-onnx]``, without pip and setuptools (a board's venv has them, the
  agent does not use them); on x86-64 here, and on arm64 in a copy of the cached Debian 12
  arm64 root (``tools/arm_root.py``) when this machine has one and runs as root.
- **Peak RSS** of ``edge-agent run`` serving the digits int8 bundle over the test split
  (the kernel's ``ru_maxrss`` of the process; median of 5 runs), in the TFLite-only venv.
- **Time to first result** of ``edge-agent run BUNDLE --limit 1`` (process start to its
  first result line) against the floor in the same venv: ``python -c`` that imports numpy
  and LiteRT, loads the bundle's .tflite, quantizes one input, invokes and prints. Trials
  interleave the two, medians compared: the ratio is the claim, not the milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

EXTRAS = ("agent-tflite", "agent-onnx")
TARGET_MB = {("arm64", "agent-tflite"): 150.0, ("arm64", "agent-onnx"): 170.0}
RSS_TARGET_MB = 70.0
TTFR_TARGET = 1.5
NOT_AGENT = ("pip", "setuptools", "pkg_resources", "_distutils_hack", "distutils-precedence.pth")
FLOOR = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1])
it.allocate_tensors()
d = it.get_input_details()[0]
x = np.load(sys.argv[2])["x"][:1]
s, z = d["quantization"]
it.set_tensor(d["index"], np.clip(np.round(x / s + z), -128, 127).astype(d["dtype"]))
it.invoke()
print(int(it.get_tensor(it.get_output_details()[0]["index"]).argmax()), flush=True)
"""
# A venv as a board gets it: none of this machine's Python settings leak into pip.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}


@dataclass(frozen=True)
class Size:
    total_mb: float
    top: list[tuple[str, float]]  # the largest entries of site-packages


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True)
    return next(out.glob("edgekit_sdk-*.whl"))


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def site_size(site: Path) -> Size:
    """Bytes of site-packages without pip/setuptools (and their .dist-info), largest first."""
    sizes: dict[str, int] = {}
    for entry in site.iterdir():
        base = entry.name.split("-")[0] if entry.name.endswith(".dist-info") else entry.name
        if base in NOT_AGENT:
            continue
        sizes[entry.name] = _du(entry)
    top = sorted(((k, v / 2**20) for k, v in sizes.items()), key=lambda kv: -kv[1])[:4]
    return Size(sum(sizes.values()) / 2**20, top)


def x86_venv(work: Path, wheel: Path, extra: str) -> Path:
    venv = work / f"venv-{extra}"
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True, env=CLEAN_ENV)
    subprocess.run([str(venv / "bin/pip"), "install", "-q", f"{wheel}[{extra}]"], check=True, env=CLEAN_ENV)
    return venv


def _site(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def arm_sizes(wheel: Path) -> dict[str, Size] | str:
    """site-packages sizes of both extras in the arm64 root, or why they were not measured."""
    import arm_root

    if os.geteuid() != 0:
        return "not measured: needs root (chroot, mount)"
    if not arm_root.cached_root().is_dir():
        return "not measured: no cached arm64 root (python3 tools/arm_root.py builds it, ~10 min)"
    out: dict[str, Size] = {}
    with arm_root.session(arm_root.cached_root()) as root:
        whl = root.put(wheel, f"/src/{wheel.name}")
        for extra in EXTRAS:
            venv = f"/opt/{extra}"
            root.run(["python3", "-m", "venv", venv])
            root.run([f"{venv}/bin/pip", "install", "-q", f"{whl}[{extra}]"])
            out[extra] = site_size(_site(root.path / venv.lstrip("/")))
    return out


def digits_bundle(work: Path) -> tuple[Path, Path, Path]:
    """The digits int8 bundle as ``edge optimize --int8`` makes it, its .tflite, the test split.

    Made in a child process: this one stays small, because a child's ``ru_maxrss`` starts
    from the size of the process it was forked from."""
    subprocess.run([sys.executable, "-m", "benchmarks.footprint", "--make-bundle", str(work)], check=True,
                   capture_output=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return work / "digits-int8.edgepkg", work / "unpacked/models/stage0.tflite", work / "digits/test.npz"


def make_bundle(work: Path) -> None:
    from device_agent.bundle import open_bundle
    from edge_sdk.demo.digits import train

    art = train(work / "digits", epochs=3)
    bundle = work / "digits-int8.edgepkg"
    subprocess.run([sys.executable, "-m", "edge_sdk", "optimize", str(art.model), "--data", str(art.train),
                    "--int8", "--no-step-metrics", "--runs", "3", "-o", str(bundle)],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    open_bundle(bundle, work / "unpacked")


def peak_rss_mb(cmd: list[str]) -> float:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=CLEAN_ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
    return usage.ru_maxrss / 1024


def first_line(cmd: list[str]) -> tuple[float, float]:
    """Seconds from starting ``cmd`` to its first line on stdout, and the CPU seconds the
    process used in all (user + system, to its exit: the wall time on a shared machine
    also measures the other tenants)."""
    with tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=CLEAN_ENV)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        elapsed = time.perf_counter() - t
        proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = status
        if not line or status != 0:
            err.seek(0)
            raise SystemExit(f"error: {' '.join(cmd)} failed: {err.read().decode()[-2000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-arm", action="store_true", help="Skip the arm64 install sizes")
    ap.add_argument("--trials", type=int, default=15, help="Interleaved time-to-first-result trials")
    ap.add_argument("--make-bundle", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make_bundle:
        return make_bundle(args.make_bundle)
    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work / "dist")
        venvs = {extra: x86_venv(work, wheel, extra) for extra in EXTRAS}
        sizes: dict[tuple[str, str], Size | str] = {("x86_64", e): site_size(_site(v)) for e, v in venvs.items()}
        arm = "not measured: --no-arm" if args.no_arm else arm_sizes(wheel)
        for e in EXTRAS:
            sizes[("arm64", e)] = arm if isinstance(arm, str) else arm[e]
        bundle, model, test = digits_bundle(work)
        agent = [str(venvs["agent-tflite"] / "bin/edge-agent"), "run", str(bundle), "--source", f"file:{test}"]
        rss = [peak_rss_mb([*agent, "-q"]) for _ in range(5)]
        floor_cmd = [str(venvs["agent-tflite"] / "bin/python"), "-c", FLOOR, str(model), str(test)]
        first_line([*agent, "--limit", "1"])  # both warm the page cache once
        first_line(floor_cmd)
        ttfr: dict[str, list[tuple[float, float]]] = {"agent": [], "floor": []}
        for _ in range(args.trials):
            ttfr["agent"].append(first_line([*agent, "--limit", "1"]))
            ttfr["floor"].append(first_line(floor_cmd))
    print_table(sizes, rss, ttfr)


def print_table(sizes: dict[tuple[str, str], Size | str], rss: list[float],
                ttfr: dict[str, list[tuple[float, float]]]) -> None:
    rows: list[tuple[str, str, str]] = []
    for (arch, extra), s in sizes.items():
        target = TARGET_MB.get((arch, extra))
        name = f"install {extra}, {arch} (MB)"
        if isinstance(s, str):
            rows.append((name, s, f"<= {target:.0f}" if target else ""))
            continue
        verdict = "" if target is None else (" ok" if s.total_mb <= target else " MISSED")
        rows.append((name, f"{s.total_mb:.1f}", f"<= {target:.0f}{verdict}" if target else ""))
        rows.append(("  largest", ", ".join(f"{k} {v:.1f}" for k, v in s.top), ""))
    m = statistics.median(rss)
    rows.append(("agent peak RSS, digits int8 (MB, median of 5)", f"{m:.1f}",
                 f"<= {RSS_TARGET_MB:.0f}{' ok' if m <= RSS_TARGET_MB else ' MISSED'}"))
    a, f = (statistics.median(t[0] for t in ttfr[k]) for k in ("agent", "floor"))
    ac, fc = (statistics.median(t[1] for t in ttfr[k]) for k in ("agent", "floor"))
    rows.append(("first result: bare numpy+LiteRT load+invoke (ms)", f"{f * 1000:.0f}", "floor"))
    rows.append(("first result: edge-agent run --limit 1 (ms)", f"{a * 1000:.0f}", ""))
    rows.append(("  edge-agent / floor, wall to first result", f"{a / f:.2f}x",
                 f"<= {TTFR_TARGET}x{' ok' if a / f <= TTFR_TARGET else ' MISSED'}"))
    rows.append(("  edge-agent / floor, CPU to exit", f"{ac / fc:.2f}x", f"({ac * 1000:.0f} / {fc * 1000:.0f} ms)"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>10}  target")
    for name, value, goal in rows:
        print(f"{name:<{width}}  {value:>10}  {goal}")
    print(f"RSS: ru_maxrss of the process; first result: medians of {len(ttfr['agent'])} interleaved "
          "trials, wall time from process start to the first output line (shared machine: the ratio "
          "is the claim)")


if __name__ == "__main__":
    main()
