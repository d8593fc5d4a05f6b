"""Parameter and MAC counts against numbers worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_sdk.model import analysis
from edge_sdk.passes.quantize.tflite import rank_layer_stats


def test_formulas() -> None:
    # 4×4 output, 3 filters of 3×3 over 2 channels: 16·3·9·2
    assert analysis.conv_macs((4, 4), 3, (3, 3), 2) == 864
    # grouped: each output sums only in/groups channels
    assert analysis.conv_macs((2, 2), 4, (3, 3), 4, groups=2) == 2 * 2 * 4 * 9 * 2
    assert analysis.depthwise_macs((2, 2), 3, 2, (3, 3)) == 216
    assert analysis.dense_macs(8, 4, 2) == 64


def test_keras_2d_layers() -> None:
    import keras

    m = keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(3, 3),                           # 4×4×3: 57 params, 864 MACs
        keras.layers.DepthwiseConv2D(3, depth_multiplier=2),  # 2×2×6: 60 params, 216 MACs
        keras.layers.BatchNormalization(),                   # 24 params, 0 MACs
        keras.layers.SeparableConv2D(4, 1),                  # 6+24+4 params, 24+96 MACs
        keras.layers.Flatten(),                              # 16
        keras.layers.Dense(5),                               # 85 params, 80 MACs
    ])
    cost = analysis.keras_cost(m)
    assert cost.params == 57 + 60 + 24 + 34 + 85
    assert cost.macs == 864 + 216 + 0 + 120 + 80
    assert [c.macs for c in cost.layers] == [864, 216, 0, 120, 0, 80]


def test_keras_conv1d_and_dense_on_sequences() -> None:
    import keras

    m = keras.Sequential([keras.Input((10, 3)), keras.layers.Conv1D(4, 3), keras.layers.Dense(2)])
    cost = analysis.keras_cost(m)
    assert (cost.params, cost.macs) == (40 + 10, 8 * 4 * 9 + 8 * 4 * 2)


def _tiny_onnx() -> object:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),       # 1×4×6×6
        helper.make_node("Flatten", ["c"], ["f"], name="flat"),               # 1×144
        helper.make_node("Gemm", ["f", "g", "gb"], ["h"], name="gemm"),       # 1×10
        helper.make_node("MatMul", ["h", "mm"], ["y"], name="matmul"),        # 1×5
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [init("w", 4, 1, 3, 3), init("b", 4), init("g", 144, 10), init("gb", 10),
         init("mm", 10, 5)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_graph_counts() -> None:
    cost = analysis.onnx_cost(_tiny_onnx())
    assert cost.params == 36 + 4 + 1440 + 10 + 50
    assert {c.name: c.macs for c in cost.layers} == {"conv": 1296, "gemm": 1440, "matmul": 50}
    assert cost.macs == 1296 + 1440 + 50


def test_onnx_export_matches_keras_macs(keras_cnn: Path, onnx_cnn: Path) -> None:
    import keras
    import onnx

    k = analysis.keras_cost(keras.models.load_model(keras_cnn))
    o = analysis.onnx_cost(onnx.load(str(onnx_cnn)))
    assert o.macs == k.macs > 0


def test_file_size_of_folder(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 5)
    assert analysis.file_size(tmp_path) == 15
    assert analysis.file_size(tmp_path / "a") == 10


def test_rank_layer_stats_orders_by_rmse_over_scale() -> None:
    csv_text = (
        "op_name,tensor_idx,num_elements,stddev,mean_error,max_abs_error,mean_squared_error,"
        "scale,zero_point,tensor_name\n"
        "CONV_2D,1,4,0,0,0,0.0001,0.1,0,a\n"      # rmse/scale 0.1
        "FULLY_CONNECTED,2,4,0,0,0,0.04,0.5,0,b\n"  # 0.4
        "RESHAPE,3,4,0,0,0,0.01,0,0,c\n"            # no scale: skipped
    )
    assert rank_layer_stats(csv_text) == ["b", "a"]


@pytest.mark.parametrize("n", [1, 5])
def test_percentile_helper(n: int) -> None:
    from edge_sdk.measure.timing import percentile

    vals = [float(i) for i in range(1, n + 1)]
    assert percentile(vals, 50) == float(np.median(vals))
