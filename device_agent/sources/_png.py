"""A minimal PNG decoder (8-bit gray, gray+alpha, RGB, RGBA; no interlace), numpy + zlib.

Devices do not carry Pillow; the ``dir:`` source needs only simple sensor snapshots.
Anything outside that subset raises ``ValueError`` naming what it found.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_SIG = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 4: 2, 2: 3, 6: 4}


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes → uint8 array (H, W) or (H, W, C)."""
    if not data.startswith(_SIG):
        raise ValueError("not a PNG file (bad signature)")
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise ValueError("truncated PNG chunk")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise ValueError("PNG without IHDR or IDAT")
    w, h, depth, color, _, _, interlace = header
    if depth != 8 or color not in _CHANNELS or interlace:
        raise ValueError(
            f"unsupported PNG (bit depth {depth}, color type {color}, interlace {interlace})"
        )
    c = _CHANNELS[color]
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        raise ValueError(f"corrupt PNG data ({e})") from None
    stride = w * c
    if len(raw) != h * (stride + 1):
        raise ValueError("PNG data length does not match its size")
    img = _unfilter(np.frombuffer(raw, np.uint8).reshape(h, stride + 1), c)
    return img.reshape(h, w, c)[..., 0] if c == 1 else img.reshape(h, w, c)


def _unfilter(rows: np.ndarray, bpp: int) -> np.ndarray:
    h, stride = rows.shape[0], rows.shape[1] - 1
    out = np.zeros((h, stride), dtype=np.int32)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        f, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 0xFF
        else:
            cur = _sequential(line, prev, bpp, int(f))
        out[y] = cur
        prev = cur
    return out.astype(np.uint8)


def _sequential(line: np.ndarray, prev: np.ndarray, bpp: int, f: int) -> np.ndarray:
    cur = np.zeros_like(line)
    for i in range(len(line)):
        a = int(cur[i - bpp]) if i >= bpp else 0
        b = int(prev[i])
        c = int(prev[i - bpp]) if i >= bpp else 0
        if f == 1:
            pred = a
        elif f == 3:
            pred = (a + b) // 2
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        else:
            raise ValueError(f"unknown PNG filter type {f}")
        cur[i] = (int(line[i]) + pred) & 0xFF
    return cur


def encode_png(img: np.ndarray) -> bytes:
    """uint8 (H, W) or (H, W, C) → PNG bytes (filter 0); for tests and tools."""
    a = np.asarray(img, dtype=np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    h, w, c = a.shape
    color = {v: k for k, v in _CHANNELS.items()}[c]
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    return (
        _SIG
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
