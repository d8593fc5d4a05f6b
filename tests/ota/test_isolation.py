"""Untrusted models: the health check runs in a child process with a memory limit and a
timeout, so a model that exhausts memory, hangs or crashes its runtime cannot take the
agent down; the old model keeps serving and the reason names the cause."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_agent.protocol.messages import DeployPhase
from device_agent.update.health import HealthOptions

from .conftest import Factory, reference_outputs, validation_npz
from .test_flow import assert_rejected, install


def _linear_plus(factory: Factory, extra_nodes: list, extra_inits: list, extra_out: str) -> bytes:  # type: ignore[type-arg]
    """softmax(xW+b) + 0 * ReduceSum(extra_out): the output is right, if the model ever runs."""
    from onnx import TensorProto, helper, numpy_helper

    w, b = factory.weights(0)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["p"], axis=-1),
        *extra_nodes,
        helper.make_node("ReduceSum", [extra_out], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "zero"], ["z"]),
        helper.make_node("Add", ["p", "z"], ["y"]),
    ]
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero"), *extra_inits]
    graph = helper.make_graph(
        nodes, "hostile", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def memory_bomb(factory: Factory) -> bytes:
    """Asks the runtime for a 16 GiB tensor."""
    from onnx import helper, numpy_helper

    shape = numpy_helper.from_array(np.array([1 << 32], np.int64), "big_shape")
    node = helper.make_node("ConstantOfShape", ["big_shape"], ["big"],
                            value=helper.make_tensor("v", 1, [1], [1.0]))
    return _linear_plus(factory, [node], [shape], "big")


def endless_loop(factory: Factory) -> bytes:
    """A Loop with 2^62 iterations: the runtime never returns."""
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "one"], ["acc_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.array([1.0], np.float32), "one")],
    )
    inits = [numpy_helper.from_array(np.array(1 << 62, np.int64), "trips"),
             numpy_helper.from_array(np.array(True), "cond"),
             numpy_helper.from_array(np.array([0.0], np.float32), "acc0")]
    node = helper.make_node("Loop", ["trips", "cond", "acc0"], ["acc"], body=body)
    return _linear_plus(factory, [node], inits, "acc")


def _val(factory: Factory) -> bytes:
    w, b = factory.weights(0)
    return validation_npz(factory.x, reference_outputs(factory.x, w, b))


@pytest.fixture
def serving(store_dir: Path, factory: Factory) -> Path:
    assert install(store_dir, factory.bundle("1.0.0")).status == DeployPhase.ACTIVE
    return store_dir


def test_isolated_check_passes_a_good_model(serving: Path, factory: Factory) -> None:
    res = install(serving, factory.bundle("1.1.0", seed=1), isolate=True)
    assert res.status == DeployPhase.ACTIVE, res.reason


def test_memory_bomb_is_contained(serving: Path, factory: Factory) -> None:
    bundle = factory.bundle("1.1.0", model=memory_bomb(factory), validation=_val(factory),
                            name="bomb.edgepkg")
    res = install(serving, bundle, isolate=True,
                  health=HealthOptions(memory_limit_mb=1024, timeout_s=60))
    assert res.status == DeployPhase.REJECTED
    assert "health check failed" in res.reason
    assert "failed to allocate memory" in res.reason.lower(), res.reason
    assert_rejected(serving, factory, res, "health")


def test_endless_model_is_killed_by_the_timeout(serving: Path, factory: Factory) -> None:
    bundle = factory.bundle("1.1.0", model=endless_loop(factory), validation=_val(factory),
                            name="loop.edgepkg")
    res = install(serving, bundle, isolate=True, health=HealthOptions(timeout_s=4))
    assert_rejected(serving, factory, res, "did not finish within 4")


def test_child_killed_by_a_signal_is_reported(serving: Path, factory: Factory) -> None:
    """With a CPU-time limit the kernel kills the endless child with SIGXCPU: a real death
    by signal, as when a parser segfaults; the agent reports it and keeps serving."""
    bundle = factory.bundle("1.1.0", model=endless_loop(factory), validation=_val(factory),
                            name="loop2.edgepkg")
    res = install(serving, bundle, isolate=True, health=HealthOptions(cpu_limit_s=2, timeout_s=120))
    assert_rejected(serving, factory, res, "killed by SIGXCPU: the model crashed its runtime")


def bad_reshape(factory: Factory) -> bytes:
    """Loads fine, fails at run time inside the runtime (reshape 160 values to 3)."""
    from onnx import helper, numpy_helper

    shape = numpy_helper.from_array(np.array([3], np.int64), "three")
    node = helper.make_node("Reshape", ["p", "three"], ["r"])
    return _linear_plus(factory, [node], [shape], "r")


def test_in_process_runtime_failure_is_a_clean_rejection(serving: Path, factory: Factory) -> None:
    """Without isolation, a runtime exception (not an EdgeError) still becomes a rejection."""
    bundle = factory.bundle("1.1.0", model=bad_reshape(factory), validation=_val(factory),
                            name="reshape.edgepkg")
    res = install(serving, bundle)
    assert_rejected(serving, factory, res, "the runtime failed while running the model")
