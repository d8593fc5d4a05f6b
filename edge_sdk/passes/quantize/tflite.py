"""Keras → TFLite: float32, and full-integer int8 (int8 inputs and outputs).

TensorFlow's converter calibrates activations with min-max only; percentile and entropy
are not offered by it, so this backend lists min-max alone. Keeping layers in float
uses TensorFlow's quantization debugger (selective quantization by denylist); such a
model takes and returns float32, with quantize/dequantize ops at its edges.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from device_agent.errors import EdgeError
from device_agent.protocol.manifest import ModelFormat
from edge_sdk._quiet import quiet
from edge_sdk.model.data import Dataset
from edge_sdk.model.kind import KerasModel
from edge_sdk.passes.quantize.base import Calibration, QuantizeConfig


def _representative(calib: Dataset, samples: int) -> Callable[[], Iterator[list[np.ndarray]]]:
    x = calib.x[:samples].astype(np.float32)

    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(x)):
            yield [x[i : i + 1]]

    return gen


class TFLiteExporter:
    """The TFLite target, from a ``keras.Model``."""

    format: ModelFormat = ModelFormat.TFLITE
    calibrations: tuple[Calibration, ...] = (Calibration.MINMAX,)

    def export_float(self, model: KerasModel, workdir: Path) -> bytes:
        """The Keras model as a float32 ``.tflite``."""
        import tensorflow as tf

        with quiet():
            return bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())

    def _converter(self, model: KerasModel, cfg: QuantizeConfig, calib: Dataset) -> Any:
        import tensorflow as tf

        if cfg.calibration not in self.calibrations:
            raise EdgeError(
                f"calibration {cfg.calibration.value!r}: the TFLite converter supports only "
                "minmax; use --target onnx for percentile or entropy"
            )
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative(calib, cfg.samples)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        # The converter has no public switch for per-tensor weights; this is its own flag.
        conv._experimental_disable_per_channel = not cfg.per_channel
        return conv

    def quantize(self, model: KerasModel, cfg: QuantizeConfig, calib: Dataset, workdir: Path) -> bytes:
        """A full-integer int8 ``.tflite``; ``cfg.keep_float`` layers stay float32."""
        import tensorflow as tf

        conv = self._converter(model, cfg, calib)
        with quiet():
            if not cfg.keep_float:
                return bytes(conv.convert())
            opts = tf.lite.experimental.QuantizationDebugOptions(
                denylisted_nodes=list(cfg.keep_float)
            )
            dbg = tf.lite.experimental.QuantizationDebugger(
                converter=conv, debug_dataset=_representative(calib, cfg.samples),
                debug_options=opts,
            )
            return bytes(dbg.get_nondebug_quantized_model())

    def sensitive_layers(
        self, model: KerasModel, cfg: QuantizeConfig, calib: Dataset, workdir: Path,
        score: Callable[[bytes], float],
    ) -> list[str]:
        """Layers ranked by the debugger's RMSE/scale: the quantization error of each
        layer's output in units of its own quantization step (TensorFlow's heuristic)."""
        return rank_layer_stats(self._layer_stats(model, cfg, calib, samples=64))

    def _layer_stats(self, model: KerasModel, cfg: QuantizeConfig, calib: Dataset, *, samples: int) -> str:
        """The quantization debugger's per-layer statistics (CSV, in execution order)."""
        import tensorflow as tf

        buf = io.StringIO()
        with quiet():
            dbg = tf.lite.experimental.QuantizationDebugger(
                converter=self._converter(model, cfg, calib),
                debug_dataset=_representative(calib, min(cfg.samples, samples)),
            )
            dbg.run()
            dbg.layer_statistics_dump(buf)
        return buf.getvalue()


def first_layer(model: KerasModel, cfg: QuantizeConfig, calib: Dataset) -> str:
    """The converter's name for the first quantized layer of ``model`` (what
    ``keep_float`` takes to leave that layer in float32)."""
    import csv

    stats = TFLiteExporter()._layer_stats(model, cfg, calib, samples=16)
    rows = [r for r in csv.DictReader(io.StringIO(stats)) if r["tensor_name"]]
    if not rows:
        raise EdgeError(f"{getattr(model, 'name', 'model')}: the converter quantized no layer")
    return rows[0]["tensor_name"]  # rows are in execution order


def rank_layer_stats(csv_text: str) -> list[str]:
    """Tensor names from the debugger's CSV, worst ``sqrt(mse)/scale`` first."""
    import csv

    rows = list(csv.DictReader(io.StringIO(csv_text)))
    scored = []
    for r in rows:
        scale = float(r["scale"] or 0)
        if scale > 0 and r["tensor_name"]:
            scored.append((float(r["mean_squared_error"]) ** 0.5 / scale, r["tensor_name"]))
    return [name for _, name in sorted(scored, reverse=True)]


def to_tflite(model: KerasModel, representative: np.ndarray | None = None) -> bytes:
    """A Keras model as TFLite bytes: float32, or full-integer int8 calibrated on
    ``representative`` (every row) when it is given. A shorthand for scripts and tests."""
    import tempfile

    exporter = TFLiteExporter()
    with tempfile.TemporaryDirectory(prefix="edge-tflite-") as tmp:
        if representative is None:
            return exporter.export_float(model, Path(tmp))
        calib = Dataset(np.asarray(representative, dtype=np.float32), None, "calibration")
        return exporter.quantize(model, QuantizeConfig(samples=len(calib.x)), calib, Path(tmp))


def first_layer_float_tflite(model: KerasModel, calib_x: np.ndarray) -> bytes:
    """An int8 TFLite model whose first layer stays float32 (so it takes float input):
    what an early-exit cascade's first stage ships as (``EarlyExitConfig.float_first``)."""
    import tempfile
    from dataclasses import replace

    calib = Dataset(np.asarray(calib_x, dtype=np.float32), None, "calibration")
    base = QuantizeConfig(samples=len(calib.x))
    cfg = replace(base, keep_float=(first_layer(model, base, calib),))
    with tempfile.TemporaryDirectory(prefix="edge-tflite-") as tmp:
        return TFLiteExporter().quantize(model, cfg, calib, Path(tmp))
