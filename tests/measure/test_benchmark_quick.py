"""The benchmark runs end to end in quick mode, so its code cannot rot (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_quick_mode_prints_and_writes_the_table(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for needle in ("| tflite (litert) | int8 |", "| onnx (onnxruntime) | float32 |", "agent `serve()`",
                   "where serve() spends one sample", "Targets (issue 2):"):
        assert needle in out, out
    verdicts = [line for line in out.splitlines() if line.startswith(("PASS ", "FAIL "))]
    assert len(verdicts) == 7, out
    assert (tmp_path / "latest.md").read_text().strip() == out.strip()
    data = json.loads((tmp_path / "latest.json").read_text())
    models = {(m["target"], m["precision"]): m for m in data["models"]}
    assert set(models) == {(t, p) for t in ("tflite", "onnx") for p in ("float32", "int8")}
    for m in models.values():
        assert m["file_bytes"] > 0 and 0.0 <= m["accuracy"] <= 1.0
        assert len(m["p50_b1_ms"]) == data["environment"]["repeats"]
    for t in ("tflite", "onnx"):
        # Real files: int8 weights take a quarter of float32's bytes, plus a little overhead.
        assert models[(t, "int8")]["file_bytes"] < 0.5 * models[(t, "float32")]["file_bytes"]
    assert data["serve_loop"]["ratio"] > 0
    assert {c["name"] for c in data["targets"]} >= {"serve loop / bare invoke throughput"}
