"""The ONNX int8 benchmark runs end to end in quick mode, so its code cannot rot (no timing asserts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_onnx_int8_benchmark_quick_mode_prints_the_table() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "onnx_int8.py"), "--quick"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for needle in ("| float32 .onnx, Constant weights (baseline) |", "| ORT quantize_static defaults |",
                   "| edge optimize --int8 (shipped .edgepkg) |", "Targets (issue 13):"):
        assert needle in out, out
    rows = {line.split("|")[1].strip(): line.split("|") for line in out.splitlines() if line.startswith("| ")}
    # Real files, whatever the timing: the export keeps weights in Constant nodes, the
    # quantizer alone leaves them float, edge optimize leaves none.
    assert int(rows["float32 .onnx, Constant weights (baseline)"][4]) > 0
    assert int(rows["ORT quantize_static defaults"][4]) > 0
    assert int(rows["edge optimize --int8 (shipped .edgepkg)"][4]) == 0
    assert len([line for line in out.splitlines() if line.startswith(("PASS ", "FAIL "))]) == 4
