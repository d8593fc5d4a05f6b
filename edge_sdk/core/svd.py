"""Truncated SVD of a weight matrix, with the rank chosen by energy or parameter budget."""

from __future__ import annotations

import numpy as np


def rank_for_energy(s: np.ndarray, energy: float) -> int:
    """Smallest rank whose singular values keep ``energy`` of the squared total."""
    sq = np.square(np.asarray(s, dtype=np.float64))
    if sq.sum() <= 0:
        return 1
    kept = np.cumsum(sq) / sq.sum()
    return min(int(np.searchsorted(kept, energy - 1e-12)) + 1, len(s))


def rank_for_budget(n_in: int, n_out: int, fraction: float) -> int:
    """Largest rank whose two factors hold at most ``fraction`` of the matrix's weights."""
    return max(1, int(np.floor(fraction * n_in * n_out / (n_in + n_out))))


def saves(n_in: int, n_out: int, rank: int) -> bool:
    """Whether rank ``rank`` factors hold fewer parameters than the ``n_in × n_out`` matrix."""
    return rank * (n_in + n_out) < n_in * n_out


def factorize(w: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """``A (in, r)`` and ``B (r, out)`` with ``A @ B`` the best rank-r approximation of ``w``.

    The singular values are split evenly (sqrt on each side) so both factors have a
    similar range, which matters once they are quantized to int8.
    """
    u, s, vt = np.linalg.svd(np.asarray(w, dtype=np.float64), full_matrices=False)
    root = np.sqrt(s[:rank])
    return (u[:, :rank] * root).astype(np.float32), (root[:, None] * vt[:rank]).astype(np.float32)
