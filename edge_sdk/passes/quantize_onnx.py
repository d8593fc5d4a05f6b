"""Keras or ONNX → ONNX: float32, and static QDQ int8 through ONNX Runtime's quantizer.

Keras 3 models are exported with ``model.export(path, format="onnx")`` (tf2onnx's
``from_keras`` fails on Keras 3). Weights are int8 per channel by default, activations
int8 with ranges from min-max, percentile or entropy calibration; sensitive nodes can
be left in float with ``nodes_to_exclude``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from device_agent.manifest import ModelFormat
from edge_sdk._quiet import quiet
from edge_sdk.data import Dataset
from edge_sdk.passes.quantize import Calibration, QuantizeConfig

QUANTIZABLE_OPS = ("Conv", "MatMul", "Gemm")
MAX_SENSITIVITY_PROBES = 8
FLOAT_NAME = "float.onnx"


class _Reader:
    """ONNX Runtime's CalibrationDataReader contract: ``get_next`` until ``None``."""

    def __init__(self, name: str, x: np.ndarray, batch: int):
        # Histogram calibrators (percentile, entropy) stack batches into one array, so
        # every batch must have the same size: the remainder is dropped.
        batch = max(1, min(batch, len(x)))
        x = x[: len(x) // batch * batch]
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            [{name: x[i : i + batch]} for i in range(0, len(x), batch)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # part of the reader contract; calibration reads once
        return None


def _input_name_and_batch(model: Any) -> tuple[str, int]:
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    dims = inp.type.tensor_type.shape.dim
    fixed = dims[0].dim_value if dims and dims[0].HasField("dim_value") else 0
    # A model with a fixed batch dimension must be fed exactly that many rows.
    return inp.name, (int(fixed) if fixed else 32)


def _ensure_called(model: Any) -> None:
    # Keras refuses to export a freshly loaded model ("has never called"); one call on
    # zeros of the input shape builds its traced signature.
    if getattr(model, "_called", True):
        return
    shape = [1 if d is None else int(d) for d in model.inputs[0].shape]
    model(np.zeros(shape, dtype=np.float32))


class OnnxExporter:
    """The ONNX target, from a ``keras.Model`` or an ``onnx.ModelProto``."""

    format: ModelFormat = ModelFormat.ONNX
    calibrations: tuple[Calibration, ...] = (
        Calibration.MINMAX, Calibration.PERCENTILE, Calibration.ENTROPY)

    def export_float(self, model: Any, workdir: Path) -> bytes:
        path = workdir / FLOAT_NAME
        if not path.exists():
            if hasattr(model, "SerializeToString"):
                path.write_bytes(model.SerializeToString())
            else:
                _ensure_called(model)
                with quiet():
                    model.export(str(path), format="onnx", verbose=False)
        return path.read_bytes()

    def quantize(self, model: Any, cfg: QuantizeConfig, calib: Dataset, workdir: Path) -> bytes:
        import onnx
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        methods = {
            Calibration.MINMAX: CalibrationMethod.MinMax,
            Calibration.PERCENTILE: CalibrationMethod.Percentile,
            Calibration.ENTROPY: CalibrationMethod.Entropy,
        }
        self.export_float(model, workdir)
        src = self._prepared(workdir, cfg.per_channel)
        name, batch = _input_name_and_batch(onnx.load(str(src)))
        out = workdir / "int8.onnx"
        x = calib.x[: cfg.samples].astype(np.float32)
        logging.getLogger().setLevel(logging.ERROR)  # the quantizer warns through the root logger
        with quiet():
            quantize_static(
                str(src), str(out), _Reader(name, x, batch),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=cfg.per_channel,
                calibrate_method=methods[cfg.calibration],
                nodes_to_exclude=list(cfg.keep_float),
            )
        data = out.read_bytes()
        out.unlink()
        return data

    @staticmethod
    def _prepared(workdir: Path, per_channel: bool) -> Path:
        """The float export after ONNX Runtime's pre-processing (and, for per-channel
        scales, opset 13), made once per run and setting."""
        import onnx

        from edge_sdk.passes.onnx_prep import prepare

        path = workdir / f"prepared{'-pc' if per_channel else ''}.onnx"
        if not path.exists():
            with quiet():
                onnx.save(prepare(onnx.load(str(workdir / FLOAT_NAME)), per_channel=per_channel), str(path))
        return path

    def sensitive_layers(
        self, model: Any, cfg: QuantizeConfig, calib: Dataset, workdir: Path,
        score: Callable[[bytes], float],
    ) -> list[str]:
        """Nodes ranked by how much accuracy returns when that node alone stays float."""
        import onnx

        graph = onnx.load(str(self._prepared(workdir, cfg.per_channel))).graph
        nodes = [n.name for n in graph.node if n.op_type in QUANTIZABLE_OPS and n.name]
        gains = []
        for node in nodes[:MAX_SENSITIVITY_PROBES]:
            probe = QuantizeConfig(samples=cfg.samples, calibration=cfg.calibration,
                                   per_channel=True, keep_float=(node,))
            gains.append((score(self.quantize(model, probe, calib, workdir)), node))
        return [n for _, n in sorted(gains, key=lambda t: -t[0])]
