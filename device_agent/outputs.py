"""What a non-classifier model's outputs mean: pure decoding, no runtime and no IO.

The manifest's ``output_kind`` picks the decoder. ``raw`` returns every output by name,
``regression`` the values of every output by name (flattened per reading), and
``detection`` boxes, scores and classes above a threshold, optionally with non-maximum
suppression in numpy. None of them arg-maxes anything: only a classifier has a class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from device_agent.errors import InputError
from device_agent.protocol.manifest import DetectionSpec, OutputKind, TensorSpec


def decode(
    kind: OutputKind,
    outputs: Sequence[np.ndarray],
    specs: Sequence[TensorSpec],
    detection: DetectionSpec | None = None,
) -> dict[str, Any]:
    """One reading's float outputs → the JSON-ready answer of ``kind``."""
    if kind == OutputKind.DETECTION:
        if detection is None:
            raise InputError("output kind 'detection' needs the manifest's 'detection' entry")
        named = {s.name: o for s, o in zip(specs, outputs, strict=True)}
        return detections(named, detection)
    if kind == OutputKind.REGRESSION:
        return {s.name: np.asarray(o, dtype=np.float64).reshape(-1).tolist()
                for s, o in zip(specs, outputs, strict=True)}
    return {s.name: {"shape": list(np.shape(o)), "values": np.asarray(o).reshape(-1).tolist()}
            for s, o in zip(specs, outputs, strict=True)}


def detections(named: dict[str, np.ndarray], spec: DetectionSpec) -> dict[str, Any]:
    """Boxes ``[N, 4]``, scores ``[N]`` or ``[N, C]`` and optional class ids → the kept
    detections, best first: ``{"boxes": [...], "scores": [...], "classes": [...]}``."""
    boxes = _squeeze_batch(named[spec.boxes]).reshape(-1, 4).astype(np.float64)
    scores = _squeeze_batch(named[spec.scores]).astype(np.float64)
    if scores.ndim == 2 and scores.shape[0] == len(boxes) and scores.shape[1] > 1:
        classes = scores.argmax(axis=1)
        scores = scores.max(axis=1)
    else:
        scores = scores.reshape(-1)
        classes = np.zeros(len(scores), dtype=np.int64)
    if spec.classes is not None:
        classes = _squeeze_batch(named[spec.classes]).reshape(-1).astype(np.int64)
    if not len(boxes) == len(scores) == len(classes):
        raise InputError(
            f"detection outputs disagree: {len(boxes)} boxes, {len(scores)} scores, {len(classes)} classes"
        )
    keep = np.flatnonzero(scores >= spec.score_threshold)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    if spec.nms_iou is not None:
        keep = nms(boxes, scores, classes, keep, spec.nms_iou)
    keep = keep[: spec.max_detections]
    return {
        "boxes": boxes[keep].round(6).tolist(),
        "scores": scores[keep].round(6).tolist(),
        "classes": classes[keep].tolist(),
    }


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, order: np.ndarray,
        iou: float) -> np.ndarray:
    """Greedy non-maximum suppression per class over ``order`` (indices, best first).

    Boxes are ``[y1, x1, y2, x2]`` or ``[x1, y1, x2, y2]``: intersection over union does
    not depend on which axis comes first, only that corners are opposite."""
    kept: list[int] = []
    for i in order.tolist():
        if not kept:
            kept.append(i)
            continue
        others = np.asarray(kept)
        same = others[classes[others] == classes[i]]
        if len(same) == 0 or float(box_iou(boxes[i], boxes[same]).max()) <= iou:
            kept.append(i)
    return np.asarray(kept, dtype=np.int64)


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one box with each of ``others`` (corner form)."""
    lo = np.maximum(np.minimum(box[:2], box[2:]), np.minimum(others[:, :2], others[:, 2:]))
    hi = np.minimum(np.maximum(box[:2], box[2:]), np.maximum(others[:, :2], others[:, 2:]))
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = float(np.prod(np.abs(box[2:] - box[:2])))
    areas = np.prod(np.abs(others[:, 2:] - others[:, :2]), axis=1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _squeeze_batch(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a[0] if a.ndim >= 2 and a.shape[0] == 1 else a
