"""Ed25519 signature verification (RFC 8032), in pure Python, for the device.

The agent only verifies: one signature over ``manifest.json`` per bundle it opens. That
does not justify a 16 MB native dependency (``cryptography``) on an SD card; this module
is the RFC's own verification algorithm (section 5.1.7, cofactorless, as OpenSSL and
``cryptography`` check it) on Python integers, a few milliseconds per signature on x86.
Nothing secret is handled here (public key, message and signature are all public), so
constant time does not matter. The host signs with ``cryptography``; the tests check
this verifier against it, and against the RFC's test vectors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
# SubjectPublicKeyInfo DER of an Ed25519 key: this header, then the 32 key bytes.
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z


def _add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _mul2(s: int, p: Point, t: int, q: Point) -> Point:
    """``s·p + t·q`` in one pass over the bits (Straus/Shamir): half the doublings."""
    both = _add(p, q)
    r: Point = (0, 1, 1, 0)
    for i in range(max(s.bit_length(), t.bit_length()) - 1, -1, -1):
        r = _add(r, r)
        pick = ((s >> i) & 1) | (((t >> i) & 1) << 1)
        if pick:
            r = _add(r, (p, q, both)[pick - 1])
    return r


def _equal(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


def _decode_point(s: bytes) -> Point | None:
    """The curve point encoded in 32 bytes, or ``None`` if they encode none."""
    y = int.from_bytes(s, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        if sign:
            return None
        return 0, y, 1, 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x, y, 1, x * y % _P


_G = _decode_point((4 * pow(5, _P - 2, _P) % _P).to_bytes(32, "little"))


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` by ``public``."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _decode_point(public)
    r = _decode_point(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    assert _G is not None
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _L
    minus_a = (-a[0] % _P, a[1], a[2], -a[3] % _P)
    return _equal(_mul2(s, _G, h, minus_a), r)  # s·B - h·A == R


def public_key_from_pem(data: bytes) -> bytes:
    """The 32 raw bytes of a PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo) holding an Ed25519
    key; :class:`ValueError` naming what is wrong otherwise."""
    text = data.decode("ascii", errors="replace").strip().splitlines()
    try:
        begin = text.index("-----BEGIN PUBLIC KEY-----")
        end = text.index("-----END PUBLIC KEY-----", begin)
        der = base64.b64decode("".join(text[begin + 1 : end]), validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("expected a PEM public key, found unreadable data") from None
    if len(der) != len(_SPKI_PREFIX) + 32 or not der.startswith(_SPKI_PREFIX):
        raise ValueError("expected an Ed25519 public key, found another kind of key")
    return der[len(_SPKI_PREFIX) :]
