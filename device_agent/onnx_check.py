"""Where an ONNX model would read external tensor data from, without the onnx package.

ONNX Runtime resolves a tensor's ``external_data`` ``location`` relative to the model
file, so a hostile model can name ``../../etc/shadow`` or an absolute path. The device
side must not import ``onnx``; this module walks the protobuf wire format of the few
messages that can hold tensors (graph initializers, sparse initializers, node attributes,
subgraphs, functions, training graphs) and collects every location.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import Path

from device_agent.errors import BundleError

_MAX_DEPTH = 64
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

# Which length-delimited fields of each message hold which message type.
_MODEL = {7: "graph", 25: "function", 20: "training"}
_GRAPH = {1: "node", 5: "tensor", 15: "sparse"}
_NODE = {5: "attribute"}
_ATTRIBUTE = {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"}
_SPARSE = {1: "tensor", 2: "tensor"}
_FUNCTION = {7: "node"}
_TRAINING = {1: "graph", 2: "graph"}
_TENSOR_EXTERNAL = 13
_SCHEMA = {
    "model": _MODEL, "graph": _GRAPH, "node": _NODE, "attribute": _ATTRIBUTE,
    "sparse": _SPARSE, "function": _FUNCTION, "training": _TRAINING,
}


class _Malformed(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Malformed("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, bytes]]:
    """The length-delimited fields of one message; other wire types are skipped."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, pos = _varint(buf, pos)
        elif wire == _I64:
            pos += 8
        elif wire == _I32:
            pos += 4
        elif wire == _LEN:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise _Malformed("field runs past the end")
            yield num, buf[pos : pos + n]
            pos += n
        else:
            raise _Malformed(f"unsupported wire type {wire}")
    if pos > len(buf):
        raise _Malformed("field runs past the end")


def _locations(buf: bytes, kind: str, depth: int) -> Iterator[str]:
    if depth > _MAX_DEPTH:
        raise _Malformed("nesting too deep")
    if kind == "tensor":
        for num, sub in _fields(buf):
            if num == _TENSOR_EXTERNAL:
                entry = dict(_fields(sub))
                if entry.get(1) == b"location":
                    yield entry.get(2, b"").decode("utf-8", "replace")
        return
    schema = _SCHEMA[kind]
    for num, sub in _fields(buf):
        if num in schema:
            yield from _locations(sub, schema[num], depth + 1)


def external_data_locations(model: bytes) -> list[str]:
    """Every external-data ``location`` in an ONNX model; BundleError if it is unparsable."""
    try:
        return list(_locations(model, "model", 0))
    except _Malformed as e:
        raise BundleError(f"ONNX model is not a valid protobuf ({e})") from e


def check_external_data(path: str, model: bytes, members: set[str], src: Path | str) -> None:
    """Refuse external data that does not resolve to another member of the same bundle."""
    base = posixpath.dirname(path)
    for loc in external_data_locations(model):
        target = posixpath.normpath(posixpath.join(base, loc))
        if loc.startswith("/") or "\\" in loc or target.startswith("..") or target not in members:
            raise BundleError(
                f"{src}: {path} reads external tensor data from {loc!r}, which is not a "
                "member of this bundle (external data must stay inside the bundle)"
            )
