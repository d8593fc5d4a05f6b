"""``edge pack`` on third-party-shaped models, served by the agent with the right kind of
result: detections, named raw tensors, several inputs with a constant; refused at load
when the source cannot feed the model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from device_agent.bundle import read_manifest
from device_agent.loader import opened_bundle
from device_agent.protocol.manifest import OutputKind
from device_agent.runtimes import load_model
from device_agent.update.health import HealthOptions, check_slot
from edge_sdk.cli import app
from tests.byom.conftest import Byom

runner = CliRunner()


def edge(*args: str) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def agent(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "device_agent", *args], capture_output=True,
                          text=True, timeout=timeout)


def results(out: str) -> list[dict]:  # type: ignore[type-arg]
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [r for r in rows if "summary" not in r]


@pytest.fixture(scope="module")
def detector_bundle(byom: Byom) -> Path:
    out = byom.root / "detector.edgepkg"
    edge("pack", str(byom.detector), "-o", str(out), "--key", str(byom.key), "--output-kind", "detection",
         "--score-threshold", "0.3", "--nms-iou", "0.5", "--labels", "face", "--data", str(byom.images))
    return out


def test_detector_bundle_serves_boxes_scores_and_classes_not_an_argmax(byom: Byom, detector_bundle: Path) -> None:
    m = read_manifest(detector_bundle)
    assert m.output_kind == OutputKind.DETECTION and m.detection is not None
    boxes_out = next(o for o in m.outputs if o.shape[-1] == 4)
    assert m.detection.boxes == boxes_out.name and m.detection.scores != boxes_out.name
    assert m.validation is not None and "validation" in m.optimization

    proc = agent("run", str(detector_bundle), "--source", f"file:{byom.images}")
    assert proc.returncode == 0, proc.stderr
    rows = results(proc.stdout)
    assert len(rows) == 6
    model = load_model(byom.detector)
    x = np.load(byom.images)["x"]
    for row, img in zip(rows, x, strict=True):
        assert "index" not in row and "confidence" not in row
        det = row["outputs"]
        assert set(det) == {"boxes", "scores", "classes"}
        outs = dict(zip([o.name for o in model.outputs], model.predict(img[None]), strict=True))
        scores = outs[m.detection.scores].reshape(-1)
        assert all(s >= 0.3 for s in det["scores"])
        assert det["scores"] == sorted(det["scores"], reverse=True)
        # NMS keeps at most as many as pass the threshold, and the best one always.
        assert 1 <= len(det["scores"]) <= int((scores >= 0.3).sum())
        assert det["scores"][0] == pytest.approx(float(scores.max()), abs=1e-5)
        assert all(len(b) == 4 for b in det["boxes"])


def test_segmenter_raw_output_is_a_named_spatial_tensor(byom: Byom) -> None:
    out = byom.root / "seg.edgepkg"
    edge("pack", str(byom.segmenter), "-o", str(out), "--output-kind", "raw")
    assert read_manifest(out).validation is None
    assert "none" in read_manifest(out).optimization["validation"]
    proc = agent("run", str(out), "--source", f"file:{byom.images}", "--limit", "2")
    assert proc.returncode == 0, proc.stderr
    rows = results(proc.stdout)
    assert len(rows) == 2
    (name, tensor), = rows[0]["outputs"].items()
    assert name == load_model(byom.segmenter).outputs[0].name
    assert tensor["shape"] == [1, 16, 16, 3] and len(tensor["values"]) == 16 * 16 * 3
    summary = json.loads(proc.stdout.splitlines()[-1])["summary"]
    assert summary["count"] == 2


@pytest.fixture(scope="module")
def vad_bundle(byom: Byom) -> Path:
    out = byom.root / "vad.edgepkg"
    edge("pack", str(byom.vad), "-o", str(out), "--key", str(byom.key), "--output-kind", "raw",
         "--constant", "sr=16000", "--data", str(byom.vad_inputs))
    return out


def test_several_inputs_with_a_constant_are_fed_by_name(byom: Byom, vad_bundle: Path) -> None:
    m = read_manifest(vad_bundle)
    (sr,) = m.constants
    assert (sr.name, sr.dtype, sr.shape, sr.values) == ("sr", "int64", (), (16000.0,))
    proc = agent("run", str(vad_bundle), "--source", f"file:{byom.vad_inputs}")
    assert proc.returncode == 0, proc.stderr
    rows = results(proc.stdout)
    assert len(rows) == 5
    z = np.load(byom.vad_inputs)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(byom.vad))
    for i, row in enumerate(rows):
        want = sess.run(None, {"input": z["input"][i : i + 1], "state": z["state"][i],
                               "sr": np.array(16000, np.int64)})
        assert row["outputs"]["output"]["values"] == pytest.approx(want[0].reshape(-1).tolist(), abs=1e-6)
        assert row["outputs"]["stateN"]["shape"] == [2, 1, 8]


def test_packed_bundles_pass_the_health_check_on_their_recorded_outputs(vad_bundle: Path,
                                                                       detector_bundle: Path) -> None:
    for bundle in (vad_bundle, detector_bundle):
        with opened_bundle(bundle) as b:
            report = check_slot(b.root, b.manifest, HealthOptions())
        assert report.ok, report.reason
        assert report.max_abs_error is not None and report.max_abs_error < 1e-4


def test_agent_refuses_at_load_a_source_that_cannot_feed_the_model(byom: Byom, vad_bundle: Path) -> None:
    # One array per reading, for a model with two inputs left to feed: one line, exit 2.
    proc = agent("run", str(vad_bundle), "--source", f"file:{byom.images}?loop=1", timeout=30)
    assert proc.returncode == 2
    said = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("warning:")]
    assert len(said) == 1 and said[0].startswith("error:"), proc.stderr
    assert "input" in said[0] and "state" in said[0]
    # Without the constant, the sample rate must come from the file: it is named as missing.
    bare = agent("run", str(byom.vad), "--source", f"file:{byom.vad_inputs}", timeout=30)
    assert bare.returncode == 2 and "['sr']" in bare.stderr, bare.stderr
    # Named, but of the wrong shape.
    wrong = byom.root / "wrong.npz"
    np.savez(wrong, input=np.zeros((3, 12), np.float32), state=np.zeros((3, 2, 1, 8), np.float32))
    proc = agent("run", str(vad_bundle), "--source", f"file:{wrong}", timeout=30)
    assert proc.returncode == 2 and "input input takes samples of shape (16,)" in proc.stderr, proc.stderr


def test_limit_counts_readings_taken_even_when_none_is_answered(byom: Byom, tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"  # the right shape, but every value NaN: each reading is refused
    np.savez(bad, x=np.full((4, 16, 16, 3), np.nan, np.float32))
    proc = agent("run", str(byom.segmenter), "--source", f"file:{bad}?loop=1", "--limit", "9", "-q",
                 timeout=30)
    # Every reading skipped (none fatal), the summary printed, then a run that served
    # nothing ends as an error.
    assert proc.returncode == 2, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])["summary"]
    assert summary["errors"] == 9 and summary["count"] == 0


def test_pack_refuses_what_it_cannot_do(byom: Byom, tmp_path: Path) -> None:
    res = runner.invoke(app, ["pack", str(byom.detector), "-o", str(tmp_path / "d.edgepkg"), "--int8"])
    assert res.exit_code == 2 and "already converted" in res.output
    res = runner.invoke(app, ["pack", str(byom.vad), "-o", str(tmp_path / "v.edgepkg"),
                              "--constant", "rate=16000"])
    assert res.exit_code == 2 and "no such input" in res.output
    assert not list(tmp_path.iterdir())


def test_a_source_failing_every_reading_does_not_flood_the_log(byom: Byom, tmp_path: Path) -> None:
    bad = tmp_path / "nan.npz"
    np.savez(bad, x=np.full((50, 16, 16, 3), np.nan, np.float32))
    proc = agent("run", str(byom.segmenter), "--source", f"file:{bad}", "-q", timeout=60)
    assert proc.returncode == 2, proc.stderr  # nothing served: an error, after every reading
    assert json.loads(proc.stdout.splitlines()[-1])["summary"]["errors"] == 50
    assert len([x for x in proc.stderr.splitlines() if "skipped" in x]) == 20


def test_eval_without_data_replays_the_recorded_validation_set(vad_bundle: Path) -> None:
    res = runner.invoke(app, ["eval", str(vad_bundle)])
    assert res.exit_code == 0, res.output
    assert "max |difference| 0 from the outputs recorded at build time (raw)" in res.output


def test_toml_spec_with_tables_and_flags_over_it(byom: Byom, tmp_path: Path) -> None:
    spec = tmp_path / "vad.toml"
    spec.write_text('name = "vad"\nversion = "2.1.0"\noutput_kind = "regression"\n'
                    'state = [{output = "stateN", input = "state", reset_after_s = 3.0}]\n'
                    '[constants]\nsr = 8000\n')
    out = tmp_path / "v.edgepkg"
    edge("pack", str(byom.vad), "-o", str(out), "--spec", str(spec), "--constant", "sr=16000")
    m = read_manifest(out)
    assert (m.name, m.version, m.output_kind.value) == ("vad", "2.1.0", "regression")
    assert m.constants[0].values == (16000.0,)  # the flag wins over the file
    assert m.state[0].reset_after_s == 3.0
    det = tmp_path / "det.toml"
    det.write_text('output_kind = "detection"\nlabels = ["face"]\n[detection]\nscore_threshold = 0.7\n')
    edge("pack", str(byom.detector), "-o", str(tmp_path / "d.edgepkg"), "--spec", str(det))
    dm = read_manifest(tmp_path / "d.edgepkg")
    assert dm.detection is not None and dm.detection.score_threshold == 0.7 and dm.labels == ("face",)
    spec.write_text('colour = "blue"\n')
    res = runner.invoke(app, ["pack", str(byom.vad), "-o", str(tmp_path / "x.edgepkg"), "--spec", str(spec)])
    assert res.exit_code == 2 and "unknown key(s) ['colour']" in res.output


def test_pack_preprocessing_flags_apply_on_host_and_device(byom: Byom, tmp_path: Path) -> None:
    raw = tmp_path / "raw.npz"
    x = np.round(np.load(byom.images)["x"] * 255)
    np.savez(raw, x=x)
    out = tmp_path / "seg255.edgepkg"
    edge("pack", str(byom.segmenter), "-o", str(out), "--output-kind", "raw", "--scale", "1/255",
         "--data", str(raw), "--validation-samples", "2")
    m = read_manifest(out)
    assert m.preprocessing == ({"op": "scale", "factor": pytest.approx(1 / 255), "offset": 0.0},)
    lo, hi = m.optimization["calibration_range"]
    assert lo >= 0.0 and hi <= 1.0
    with opened_bundle(out) as b:
        assert check_slot(b.root, b.manifest, HealthOptions()).ok
    proc = agent("run", str(out), "--source", f"file:{raw}", "--limit", "1")
    assert proc.returncode == 0, proc.stderr
    (tensor,) = results(proc.stdout)[0]["outputs"].values()
    want = load_model(byom.segmenter).predict1((x[:1] / 255).astype(np.float32)).reshape(-1)
    assert tensor["values"] == pytest.approx(want.tolist(), abs=1e-5)


def test_pack_int8_refuses_a_model_already_quantized(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")],
        "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "qdq.onnx"
    onnx.save(model, str(path))
    data = tmp_path / "x.npz"
    np.savez(data, x=np.zeros((4, 4), np.float32))
    res = runner.invoke(app, ["pack", str(path), "--int8", "--data", str(data), "-o", str(tmp_path / "q.edgepkg")])
    assert res.exit_code == 2 and "qdq.onnx is already quantized" in res.output, res.output
    assert not (tmp_path / "q.edgepkg").exists()
