"""The channel analysis on hand-written nodes: layouts are stated, blocked channels say why."""

from __future__ import annotations

import pytest

from edge_sdk.core.channel_graph import Cause, Layout, Node, Role, Why, analyze


def _flattened(layout: Layout | None) -> tuple[list[int], list[int]]:
    nodes = [
        Node("x", "input", Role.INPUT, (), 1),
        Node("c", "conv", Role.PRODUCER, ("x",), 3),
        Node("f", "flatten", Role.FLATTEN, ("c",), 6, spatial=2, layout=layout),
        Node("d", "dense", Role.PRODUCER, ("f",), 4),
    ]
    a = analyze(nodes, ["d"])
    return a.producers["c"], a.in_maps["d"][0]


def test_flatten_puts_each_channel_where_the_layout_says() -> None:
    c, flat = _flattened(Layout.CHANNELS_FIRST)  # NCHW: channel-major, c·S + p
    assert flat == [c[0], c[0], c[1], c[1], c[2], c[2]]
    c, flat = _flattened(Layout.CHANNELS_LAST)  # NHWC: position-major, p·C + c
    assert flat == [c[0], c[1], c[2], c[0], c[1], c[2]]
    with pytest.raises(ValueError, match="no layout"):
        _flattened(None)


def test_blocked_channels_record_where_they_stop() -> None:
    nodes = [
        Node("x", "input", Role.INPUT, (), 2),
        Node("a", "conv", Role.PRODUCER, ("x",), 2),
        Node("b", "conv", Role.PRODUCER, ("x",), 2),
        Node("c", "conv", Role.PRODUCER, ("x",), 2),
        Node("op", "mystery", Role.OPAQUE, ("a",), 2, reason="mystery is not known"),
        Node("scale", "mul", Role.PASS, ("op",), side_inputs=("b",)),
        Node("res", "add", Role.MERGE, ("c", "scale")),
        Node("out", "conv", Role.PRODUCER, ("res",), 3),
    ]
    a = analyze(nodes, ["out"])

    def why(name: str) -> Why | None:
        return a.why({a.unit(s) for s in a.producers[name]})

    assert why("a") == Why(Cause.UNKNOWN, "op") and a.unknown == {"op": "mystery is not known"}
    assert why("b") == Why(Cause.SIDE, "scale")
    assert why("c") == Why(Cause.MADE, "op")  # the residual ties c to what the opaque op makes
    assert why("out") == Why(Cause.OUTPUT, "out")
    assert a.why({a.unit(s) for s in a.out_maps["x"]}) == Why(Cause.INPUT, "x")
    assert a.units() == {}
