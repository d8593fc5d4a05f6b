"""Output kinds, decoded without a runtime (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from device_agent.errors import InputError
from device_agent.outputs import box_iou, decode
from device_agent.protocol.manifest import DetectionSpec, OutputKind, TensorSpec

SPECS = (TensorSpec("boxes", (1, 4, 4), "float32"), TensorSpec("scores", (1, 4, 3), "float32"))


def test_detection_threshold_nms_per_class_and_best_first() -> None:
    boxes = np.array([[[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]]], np.float32)
    scores = np.array([[[0.1, 0.9, 0.0], [0.1, 0.8, 0.0], [0.0, 0.1, 0.7], [0.2, 0.3, 0.1]]], np.float32)
    spec = DetectionSpec(boxes="boxes", scores="scores", score_threshold=0.5, nms_iou=0.5)
    out = decode(OutputKind.DETECTION, [boxes, scores], SPECS, spec)
    # box 1 overlaps box 0 (same class 1, IoU 0.81): suppressed; box 2 is class 2: kept;
    # box 3 scores 0.3 at best: under the threshold.
    assert out["scores"] == pytest.approx([0.9, 0.7])
    assert out["classes"] == [1, 2]
    assert out["boxes"] == [[0, 0, 10, 10], [0, 0, 10, 10]]
    no_nms = decode(OutputKind.DETECTION, [boxes, scores], SPECS,
                    DetectionSpec(boxes="boxes", scores="scores", score_threshold=0.5))
    assert no_nms["classes"] == [1, 1, 2]


def test_iou() -> None:
    iou = box_iou(np.array([0, 0, 10, 10.0]), np.array([[5, 0, 15, 10.0], [20, 20, 30, 30.0]]))
    assert iou.tolist() == pytest.approx([50 / 150, 0.0])


def test_raw_and_regression_carry_every_output_by_name() -> None:
    specs = (TensorSpec("mask", (1, 2, 2, 1), "float32"), TensorSpec("depth", (1, 2), "float32"))
    outs = [np.arange(4, dtype=np.float32).reshape(1, 2, 2, 1), np.array([[0.5, 1.5]], np.float32)]
    raw = decode(OutputKind.RAW, outs, specs)
    assert raw["mask"] == {"shape": [1, 2, 2, 1], "values": [0.0, 1.0, 2.0, 3.0]}
    assert decode(OutputKind.REGRESSION, outs, specs) == {"mask": [0.0, 1.0, 2.0, 3.0], "depth": [0.5, 1.5]}


def test_detection_outputs_that_disagree_are_an_input_error() -> None:
    spec = DetectionSpec(boxes="boxes", scores="scores")
    with pytest.raises(InputError, match="4 boxes, 3 scores"):
        decode(OutputKind.DETECTION, [np.zeros((1, 4, 4)), np.zeros((1, 3))], SPECS, spec)


def test_mqtt_and_stdin_readings_name_their_inputs_and_stream() -> None:
    from device_agent.sources.mqtt import parse_payload

    r = parse_payload(b'{"inputs": {"input": [0.5, 1.0], "sr": 16000}, "stream": "mic-2", "id": "m7"}', 3, "t")
    assert r.error is None and r.id == "m7" and r.meta == {"stream": "mic-2"}
    assert isinstance(r.value, dict) and r.value["sr"].dtype.kind == "i" and r.value["sr"].ndim == 0
    bad = parse_payload(b'{"inputs": {"input": ["a"]}}', 4, "t")
    assert bad.value is None and "not numeric" in (bad.error or "")
