"""A device with one runtime extra: the manifest names each file's runtime, the agent serves
the format it can run and, missing the one a bundle needs, names the extra to install.

The other runtime is made absent the way a device without it sees it: its import fails
(``sys.modules[name] = None``), in a real ``edge-agent`` process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from device_agent.bundle import read_manifest
from tests.conftest import DigitsSplit
from tests.measure.conftest import Artifacts, _bundle

ROOT = Path(__file__).resolve().parents[2]
WITHOUT = (
    "import sys\n"
    "for m in sys.argv[1].split(','): sys.modules[m] = None\n"
    "sys.argv = ['edge-agent', *sys.argv[2:]]\n"
    "from device_agent.cli import main\n"
    "raise SystemExit(main())\n"
)
LITERT = "ai_edge_litert,tflite_runtime,tensorflow"


def _agent_without(modules: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", WITHOUT, modules, *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_manifest_names_the_runtime_of_every_file(artifacts: Artifacts) -> None:
    files = read_manifest(artifacts.bundle_both).files
    assert {(f.format.value, f.runtime) for f in files} == {("tflite", "litert"), ("onnx", "onnxruntime")}


def test_onnx_bundle_without_onnxruntime_names_the_extra(artifacts: Artifacts, digits: DigitsSplit,
                                                         tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "onnx.edgepkg", artifacts.onnx)
    out = _agent_without("onnxruntime", "run", str(bundle), "--source", f"file:{digits.test}", "--limit", "1")
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.strip().splitlines() if not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "onnx models need onnxruntime" in lines[0]
    assert "pip install 'edgekit-sdk[agent-onnx]'" in lines[0]


def test_tflite_bundle_without_litert_names_the_extra(artifacts: Artifacts, digits: DigitsSplit) -> None:
    out = _agent_without(LITERT, "run", str(artifacts.bundle), "--source", f"file:{digits.test}", "--limit", "1")
    assert out.returncode == 2 and "pip install 'edgekit-sdk[agent-tflite]'" in out.stderr, out.stderr


def test_two_format_bundle_is_served_by_the_runtime_that_is_installed(artifacts: Artifacts,
                                                                      digits: DigitsSplit) -> None:
    out = _agent_without(LITERT, "run", str(artifacts.bundle_both), "--source", f"file:{digits.test}",
                         "--limit", "3", "-q")
    assert out.returncode == 0, out.stderr
    assert '"count": 3' in out.stdout  # without LiteRT only the .onnx file can have answered


def test_onnx_providers_fall_back_to_cpu_with_a_logged_reason(artifacts: Artifacts, caplog) -> None:  # type: ignore[no-untyped-def]
    from device_agent.runtimes import RuntimeOptions, load_model
    from device_agent.runtimes.onnx import choose_providers

    assert choose_providers(["tensorrt", "cuda", "cpu"], ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["openvino"], ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with caplog.at_level("WARNING"):
        m = load_model(artifacts.onnx, options=RuntimeOptions(providers=("cuda", "openvino")))
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert m.accelerator == "cuda"
    else:
        assert m.accelerator == "cpu"
        assert "execution provider cuda is not available here" in caplog.text
    assert "execution provider openvino is not available here" in caplog.text


def test_onnx_on_a_gpu_when_there_is_one(artifacts: Artifacts) -> None:
    import onnxruntime as ort
    import pytest

    from device_agent.runtimes import RuntimeOptions, load_model

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no CUDA execution provider on this machine (onnxruntime-gpu and a GPU needed)")
    m = load_model(artifacts.onnx, options=RuntimeOptions(providers=("cuda",)))
    assert m.accelerator == "cuda"


def test_litert_accelerator_and_delegate_fallback(artifacts: Artifacts, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    from device_agent.runtimes import RuntimeOptions, load_model

    assert load_model(artifacts.tflite_int8).accelerator == "xnnpack"
    assert load_model(artifacts.tflite_int8, options=RuntimeOptions(xnnpack=False)).accelerator == "cpu"
    bogus = tmp_path / "libnot-a-delegate.so"
    bogus.write_bytes(b"\x7fELF not really")
    with caplog.at_level("WARNING"):
        m = load_model(artifacts.tflite_int8, options=RuntimeOptions(delegate=str(bogus), threads=2))
    assert m.accelerator == "xnnpack" and f"LiteRT delegate {bogus} did not load" in caplog.text
