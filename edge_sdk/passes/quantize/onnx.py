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

from device_agent.protocol.manifest import ModelFormat
from edge_sdk._quiet import quiet
from edge_sdk.model.data import Dataset
from edge_sdk.model.kind import Model, ModelKind
from edge_sdk.passes.quantize.base import Calibration, QuantizeConfig

QUANTIZABLE_OPS = ("Conv", "MatMul", "Gemm")
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


def _input_name_and_batch(model: Model) -> tuple[str, int]:
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    dims = inp.type.tensor_type.shape.dim
    fixed = dims[0].dim_value if dims and dims[0].HasField("dim_value") else 0
    # A model with a fixed batch dimension must be fed exactly that many rows.
    return inp.name, (int(fixed) if fixed else 32)


def _ensure_called(model: Model) -> None:
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

    def export_float(self, model: Model, workdir: Path) -> bytes:
        """The float ONNX file (a Keras model exported once and cached in ``workdir``)."""
        path = workdir / FLOAT_NAME
        if not path.exists():
            if ModelKind.of(model) is ModelKind.ONNX:
                path.write_bytes(model.SerializeToString())
            else:
                _ensure_called(model)
                with quiet():
                    model.export(str(path), format="onnx", verbose=False)
        return path.read_bytes()

    def quantize(self, model: Model, cfg: QuantizeConfig, calib: Dataset, workdir: Path) -> bytes:
        """Static QDQ int8 through ONNX Runtime's quantizer, calibrated on ``calib``."""
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

        from edge_sdk.passes.quantize.onnx_prep import prepare

        path = workdir / f"prepared{'-pc' if per_channel else ''}.onnx"
        if not path.exists():
            with quiet():
                onnx.save(prepare(onnx.load(str(workdir / FLOAT_NAME)), per_channel=per_channel), str(path))
        return path

    def sensitive_layers(
        self, model: Model, cfg: QuantizeConfig, calib: Dataset, workdir: Path,
        score: Callable[[bytes], float],
    ) -> list[str]:
        """Quantizable nodes ranked in one pass: the int8 graph is quantized once, both
        graphs expose every Conv/MatMul/Gemm output, and one run on calibration inputs
        measures each node's error (RMSE over the float output's spread). ``score`` is not
        called: no per-node re-quantization."""
        import onnx

        self.export_float(model, workdir)
        float_model = onnx.load(str(self._prepared(workdir, cfg.per_channel)))
        int8_model = onnx.load_from_string(self.quantize(model, cfg, calib, workdir))
        pairs = _node_outputs(float_model, int8_model)
        x = calib.x[:SENSITIVITY_SAMPLES].astype(np.float32)
        ref = _outputs(float_model, [f for f, _ in pairs.values()], x)
        got = _outputs(int8_model, [q for _, q in pairs.values()], x)
        errors = {n: _nrmse(ref[f], got[q]) for n, (f, q) in pairs.items()}
        return sorted(errors, key=lambda n: -errors[n])


SENSITIVITY_SAMPLES = 32


def _node_outputs(float_model: Model, int8_model: Any) -> dict[str, tuple[str, str]]:
    """Quantizable node name → (its output in the float graph, in the int8 graph). The
    quantizer fuses a following Relu into the node (then the Relu's output is compared)
    and renames outputs it requantizes (then the float node's own output is)."""
    float_values = {o for n in float_model.graph.node for o in n.output}
    by_name = {n.name: n for n in int8_model.graph.node if n.name}
    out = {}
    for n in float_model.graph.node:
        q = by_name.get(n.name)
        if n.op_type in QUANTIZABLE_OPS and n.name and q is not None:
            out[n.name] = (q.output[0] if q.output[0] in float_values else n.output[0], q.output[0])
    return out


def _outputs(model: Model, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """Run ``model`` once on ``x`` with ``names`` exposed as outputs."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    name, batch = _input_name_and_batch(m)
    runs = [sess.run(names, {name: x[i : i + batch]}) for i in range(0, len(x), batch)]
    return {n: np.concatenate([r[k] for r in runs]) for k, n in enumerate(names)}


def _nrmse(ref: np.ndarray, got: np.ndarray) -> float:
    spread = float(ref.max() - ref.min()) or 1.0
    return float(np.sqrt(np.mean((ref.astype(np.float64) - got) ** 2))) / spread
