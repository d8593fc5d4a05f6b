"""One-dimensional k-means for weight sharing (pure numpy).

Deep Compression (Han et al., 2016) found linear initialization (centroids evenly
spaced between the smallest and largest weight) better than density-based or random
initialization, because it keeps the few large weights, which matter most, represented.
k-means++ is offered as the alternative.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from device_agent.errors import EdgeError

MIN_CLUSTERS = 2
MAX_CLUSTERS = 256


class KMeansInit(str, Enum):
    """How the first centroids are placed: evenly spaced (Deep Compression) or k-means++."""

    LINEAR = "linear"
    KMEANS_PP = "kmeans++"


@dataclass(frozen=True)
class Codebook:
    """Centroids (sorted) and, for each value, the index of its centroid."""

    centroids: np.ndarray
    labels: np.ndarray

    def decode(self) -> np.ndarray:
        """The clustered values: each value replaced by its centroid."""
        return self.centroids[self.labels]


def check_clusters(k: int, what: str) -> None:
    """Reject a cluster count outside what a uint8 index can address (an ``EdgeError`` naming ``what``)."""
    if not MIN_CLUSTERS <= k <= MAX_CLUSTERS:
        raise EdgeError(f"{what}: cluster count must be in {MIN_CLUSTERS}..{MAX_CLUSTERS}, got {k}")


def initial_centroids(values: np.ndarray, k: int, init: KMeansInit, seed: int = 0) -> np.ndarray:
    """``k`` starting centroids for ``values``, spread as ``init`` says (seeded, so runs repeat)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if init is KMeansInit.LINEAR:
        return np.linspace(v.min(), v.max(), k)
    rng = np.random.default_rng(seed)
    chosen = [v[rng.integers(len(v))]]
    d2 = np.square(v - chosen[0])
    for _ in range(1, k):
        total = d2.sum()
        nxt = v[rng.integers(len(v))] if total <= 0 else v[rng.choice(len(v), p=d2 / total)]
        chosen.append(nxt)
        d2 = np.minimum(d2, np.square(v - nxt))
    return np.sort(np.asarray(chosen))


def assign(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (centroids sorted ascending; ties go to the lower)."""
    mids = (centroids[1:] + centroids[:-1]) / 2.0
    return np.searchsorted(mids, values, side="left").astype(np.int64)


def kmeans_1d(
    values: np.ndarray, k: int, *, init: KMeansInit = KMeansInit.LINEAR, iters: int = 100,
    seed: int = 0,
) -> Codebook:
    """Lloyd's algorithm on a flat array; empty clusters keep their previous centroid."""
    check_clusters(k, "k-means")
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise EdgeError("k-means: no values to cluster")
    c = initial_centroids(v, k, init, seed)
    labels = assign(v, c)
    for _ in range(iters):
        sums = np.bincount(labels, weights=v, minlength=k)
        counts = np.bincount(labels, minlength=k)
        c = np.sort(np.where(counts > 0, sums / np.maximum(counts, 1), c))
        new = assign(v, c)
        if np.array_equal(new, labels):
            break
        labels = new
    return Codebook(centroids=c, labels=labels.reshape(np.shape(values)))


def cluster_sums(labels: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Per-cluster sum of ``values`` (the gradient of a shared weight, Deep Compression §3.3)."""
    return np.bincount(labels.ravel(), weights=np.asarray(values, np.float64).ravel(), minlength=k)
