"""The early-exit cascade on real LiteRT stages built by the host pass."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from device_agent.bundle import read_manifest
from device_agent.engine import EngineOptions
from device_agent.errors import BundleError, EdgeError
from device_agent.loader import engine_for
from device_agent.protocol.manifest import ExitStage, ModelFormat
from device_agent.runtimes import load_model
from edge_sdk.bundle.writer import write_bundle
from tests.conftest import DigitsSplit
from tests.serving.conftest import CascadeBundle


def _opts(**thr: float) -> EngineOptions:
    return EngineOptions(thresholds={None if k == "all" else int(k[1:]): v for k, v in thr.items()})


def test_manifest_records_stages_and_exits(cascade_bundle: CascadeBundle) -> None:
    m = read_manifest(cascade_bundle.path)
    assert [f.stage for f in m.stage_files(ModelFormat.TFLITE)] == [0, 1, 2]
    assert [e.index for e in m.exits] == [0, 1]
    assert all(0.0 <= e.threshold <= 1.0 for e in m.exits)
    assert m.exits[0].macs < m.exits[1].macs
    ee = m.optimization["early_exit"]
    assert ee["split_layers"] == ["conv1", "conv2"]
    assert ee["cascade_accuracy"] >= ee["full_accuracy"] - 0.005 - 1e-9


def test_forcing_the_last_exit_gives_the_full_models_answers(
    cascade_bundle: CascadeBundle, digits: DigitsSplit
) -> None:
    full = load_model(cascade_bundle.full_tflite)
    want = full.predict1(digits.x_test)
    with engine_for(cascade_bundle.path, engine_options=_opts(all=1.0)) as e:
        probs, stage = e.cascade(digits.x_test)
    assert (stage == 2).all()
    np.testing.assert_array_equal(probs.argmax(axis=1), want.argmax(axis=1))
    e_want = np.exp(want - want.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, e_want / e_want.sum(axis=1, keepdims=True), atol=1e-4)


def test_low_thresholds_exit_early(cascade_bundle: CascadeBundle, digits: DigitsSplit) -> None:
    with engine_for(cascade_bundle.path, engine_options=_opts(all=0.0)) as e:
        _, stage = e.cascade(digits.x_test)
    assert (stage == 0).all()
    with engine_for(cascade_bundle.path, engine_options=_opts(s0=1.0, s1=0.0)) as e:
        _, stage = e.cascade(digits.x_test)
        preds = [e.infer_one(x) for x in digits.x_test[:20]]
    assert (stage == 1).all()
    assert {p.stage for p in preds} == {1}


def test_calibrated_thresholds_keep_accuracy_and_exit_some(
    cascade_bundle: CascadeBundle, digits: DigitsSplit
) -> None:
    m = read_manifest(cascade_bundle.path)
    with engine_for(cascade_bundle.path) as e:
        probs, stage = e.cascade(digits.x_test)
    acc = float((probs.argmax(axis=1) == digits.y_test).mean())
    # Calibrated on this very split: the shipped cascade reproduces the recorded numbers.
    assert acc == pytest.approx(m.optimization["early_exit"]["cascade_accuracy"])
    rates = np.bincount(stage, minlength=3) / len(stage)
    np.testing.assert_allclose(rates, m.optimization["early_exit"]["exit_rates"])
    assert rates[:2].sum() > 0.5


def test_onnx_stages_answer_like_tflite(cascade_bundle: CascadeBundle, digits: DigitsSplit) -> None:
    assert read_manifest(cascade_bundle.path).targets == (ModelFormat.TFLITE, ModelFormat.ONNX)
    with engine_for(cascade_bundle.path, prefer=ModelFormat.ONNX) as e:
        assert e.model.backend == "onnxruntime"
        p_onnx, s_onnx = e.cascade(digits.x_test)
    with engine_for(cascade_bundle.path) as e:
        p_tfl, s_tfl = e.cascade(digits.x_test)
    same = s_onnx == s_tfl
    assert same.mean() > 0.99  # a score right at a threshold may tip to the next stage
    np.testing.assert_allclose(p_onnx[same], p_tfl[same], atol=1e-4)


def test_batch_and_single_answers_agree(cascade_bundle: CascadeBundle, digits: DigitsSplit) -> None:
    with engine_for(cascade_bundle.path) as e:
        single = [e.infer_one(x) for x in digits.x_test[:40]]
        many = e.infer_many(list(digits.x_test[:40]))
    assert [(p.index, p.stage) for p in single] == [(p.index, p.stage) for p in many]  # type: ignore[union-attr]


def test_exit_heads_flatten_to_a_constant_shape(cascade_bundle: CascadeBundle, tmp_path: Path) -> None:
    # Keras' Flatten computes the batch size at run time (SHAPE, STRIDED_SLICE, PACK),
    # ops XNNPACK does not take: each stage then ran as two delegate partitions.
    from ai_edge_litert.interpreter import Interpreter

    from device_agent.bundle import read_members

    m = read_manifest(cascade_bundle.path)
    members = read_members(cascade_bundle.path)
    for f in m.stage_files(ModelFormat.TFLITE)[:-1]:  # the last stage is the model's own tail
        it = Interpreter(model_content=members[f.path])
        ops = {op["op_name"] for op in it._get_ops_details()}
        assert "RESHAPE" in ops and "FULLY_CONNECTED" in ops, (f.path, ops)
        assert not ops & {"SHAPE", "STRIDED_SLICE", "PACK"}, (f.path, ops)


def _rewrite_exits(src: Path, dst: Path, exits: tuple[ExitStage, ...]) -> None:
    import tarfile

    m = read_manifest(src)
    with tarfile.open(src) as t:
        members = {f.path: t.extractfile(f.path).read() for f in m.files}  # type: ignore[union-attr]
    write_bundle(dst, replace(m, exits=exits), members)


def test_exits_that_do_not_fit_are_refused(cascade_bundle: CascadeBundle, tmp_path: Path) -> None:
    bad = tmp_path / "bad.edgepkg"
    _rewrite_exits(cascade_bundle.path, bad, (ExitStage(index=2, threshold=0.5),))
    with pytest.raises(BundleError, match="exit 2 does not fit a cascade of 3"), engine_for(bad):
        pass
    with (
        pytest.raises(EdgeError, match=r"threshold must be in \[0, 1\], got 1.5"),
        engine_for(cascade_bundle.path, engine_options=_opts(all=1.5)),
    ):
        pass


def test_stage_outputs_that_do_not_chain_are_refused(
    cascade_bundle: CascadeBundle, float_tflite: Path, tmp_path: Path
) -> None:
    import tarfile

    m = read_manifest(cascade_bundle.path)
    with tarfile.open(cascade_bundle.path) as t:
        members = {f.path: t.extractfile(f.path).read() for f in m.files}  # type: ignore[union-attr]
    # Stage 0 replaced by a one-output model: it cannot feed stage 1.
    import hashlib

    data = float_tflite.read_bytes()
    f0 = replace(m.files[0], sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    members[f0.path] = data
    bad = tmp_path / "bad.edgepkg"
    write_bundle(bad, replace(m, files=(f0, *m.files[1:])), members)
    with (
        pytest.raises(BundleError, match=r"stage 0 .* must output \[features, logits\]"),
        engine_for(bad),
    ):
        pass


def test_cli_run_reports_exit_counts(cascade_bundle: CascadeBundle, digits: DigitsSplit) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_agent",
            "run",
            str(cascade_bundle.path),
            "--source",
            f"file:{digits.test}",
            "--exit-threshold",
            "0:0.0",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])["summary"]
    assert summary["exits"] == {"0": len(digits.x_test)}
    assert summary["count"] == len(digits.x_test)


def test_one_at_a_time_answers_as_in_a_batch_even_on_ties(
    cascade_bundle: CascadeBundle, digits: DigitsSplit
) -> None:
    """Thresholds set exactly on observed float32 scores (what calibration used to
    choose): the one-reading path and the batched path still agree on every row."""
    from device_agent.exit_policy import Criterion, confidence

    x = digits.x_test
    with engine_for(cascade_bundle.path) as e:
        p0, _ = e.stages[0].run(x)
        observed = np.unique(confidence(p0, Criterion.MAX_PROB))
        ties = [float(t) for t in observed[np.linspace(0, len(observed) - 2, 8).astype(int)]]
        for t in ties:
            e.set_thresholds({0: t, 1: 1.0})
            batch = e.infer_many(list(x))
            alone = [e.infer_one(r) for r in x]
            assert [(p.index, p.stage) for p in batch] == [(p.index, p.stage) for p in alone]  # type: ignore[union-attr]
            assert sum(1 for p in alone if p.stage == 0) < len(x)


def test_calibrated_thresholds_sit_on_no_float32_value(cascade_bundle: CascadeBundle) -> None:
    m = read_manifest(cascade_bundle.path)
    for ex in m.exits:
        assert ex.threshold == 1.0 or float(np.float32(ex.threshold)) != ex.threshold
