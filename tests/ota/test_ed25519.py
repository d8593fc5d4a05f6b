"""The device's pure-Python Ed25519 verifier against RFC 8032's vectors and ``cryptography``."""

from __future__ import annotations

import random
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent import ed25519

# RFC 8032 section 7.1, tests 1-3: (public key, message, signature).
RFC_VECTORS = [
    (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


@pytest.mark.parametrize(("public", "message", "signature"), RFC_VECTORS)
def test_rfc8032_vectors_verify_and_any_flipped_bit_fails(public: str, message: str, signature: str) -> None:
    pk, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert ed25519.verify(pk, msg, sig)
    for i in (0, 31, 32, 63):
        bad = bytearray(sig)
        bad[i] ^= 1
        assert not ed25519.verify(pk, msg, bytes(bad))
    assert not ed25519.verify(pk, msg + b"x", sig)


def test_agrees_with_cryptography_on_random_keys_messages_and_tampering() -> None:
    rng = random.Random(0)
    for _ in range(20):
        key = Ed25519PrivateKey.generate()
        pk = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        msg = rng.randbytes(rng.randrange(0, 600))
        sig = key.sign(msg)
        assert ed25519.verify(pk, msg, sig)
        other = Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert not ed25519.verify(other, msg, sig)
        if msg:
            edited = bytearray(msg)
            edited[rng.randrange(len(msg))] ^= 1 << rng.randrange(8)
            assert not ed25519.verify(pk, bytes(edited), sig)


def test_non_canonical_s_and_wrong_lengths_are_refused() -> None:
    pk, msg, sig = (bytes.fromhex(v) for v in RFC_VECTORS[1])
    s = int.from_bytes(sig[32:], "little") + ed25519._L  # same point, S out of range
    assert not ed25519.verify(pk, msg, sig[:32] + s.to_bytes(32, "little"))
    assert not ed25519.verify(pk[:31], msg, sig)
    assert not ed25519.verify(pk, msg, sig[:63])


def test_pem_public_key_reads_ed25519_only() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = Ed25519PrivateKey.generate().public_key()
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert ed25519.public_key_from_pem(pem) == raw
    ec_pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="expected an Ed25519 public key"):
        ed25519.public_key_from_pem(ec_pem)
    with pytest.raises(ValueError, match="expected a PEM public key"):
        ed25519.public_key_from_pem(b"not a key")


def test_verification_cost_is_printed() -> None:
    pk, msg, sig = (bytes.fromhex(v) for v in RFC_VECTORS[2])
    t = time.perf_counter()
    for _ in range(5):
        assert ed25519.verify(pk, msg, sig)
    print(f"pure-Python Ed25519 verify: {(time.perf_counter() - t) / 5 * 1000:.1f} ms")
