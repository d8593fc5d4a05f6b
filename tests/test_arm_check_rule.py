"""The ARM check's agreement rule (tools/arm_check.py), on made-up answers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import arm_check

STEP = 0.11  # the digits int8 .tflite's output scale


def _a(label: str, conf: float, i: int = 0) -> dict[str, object]:
    return {"input_id": f"x:{i}", "label": label, "confidence": conf, "truth": int(label)}


def test_half_a_step_of_confidence_passes_and_more_fails() -> None:
    line = arm_check.compare("t", [_a("3", 0.90)], [_a("3", 0.90 + STEP / 2 - 1e-4)], STEP)
    assert "1/1 labels agree" in line
    with pytest.raises(SystemExit, match="allowed"):
        arm_check.compare("t", [_a("3", 0.90)], [_a("3", 0.90 + STEP / 2 + 1e-3)], STEP)


def test_labels_may_swap_only_where_a_one_step_change_can_swap_them() -> None:
    near_tie = 0.52  # below sigmoid(2 * 0.11) = 0.555: one step per logit can reorder the top two
    line = arm_check.compare("t", [_a("3", near_tie)], [_a("5", near_tie + 0.01)], STEP)
    assert "0/1 labels agree" in line
    with pytest.raises(SystemExit, match=r"same label above confidence 0\.555"):
        arm_check.compare("t", [_a("3", 0.60)], [_a("5", 0.60)], STEP)


def test_a_missing_answer_fails() -> None:
    with pytest.raises(SystemExit, match="1 answers on arm64, 2 on x86-64"):
        arm_check.compare("t", [_a("3", 0.9), _a("4", 0.9, 1)], [_a("3", 0.9)], STEP)


def test_without_vnni_the_onnx_confidence_is_reported_but_labels_still_must_agree() -> None:
    line = arm_check.compare("t", [_a("5", 0.62)], [_a("5", 0.74)], STEP, bound_confidence=False)
    assert "max |confidence diff| 0.120000" in line and "no VNNI" in line
    with pytest.raises(SystemExit, match="same label"):
        arm_check.compare("t", [_a("3", 0.90)], [_a("5", 0.90)], STEP, bound_confidence=False)
