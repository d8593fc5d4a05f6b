"""The pure k-means core, checked exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_agent.errors import EdgeError
from edge_sdk.core.kmeans import (
    KMeansInit,
    assign,
    cluster_sums,
    initial_centroids,
    kmeans_1d,
)


def test_linear_init_spans_min_to_max() -> None:
    c = initial_centroids(np.array([-2.0, 0.5, 3.0]), 6, KMeansInit.LINEAR)
    np.testing.assert_allclose(c, [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0])


def test_two_obvious_clusters_exact() -> None:
    v = np.array([0.0, 0.1, 0.2, 10.0, 10.2, 10.4])
    book = kmeans_1d(v, 2)
    np.testing.assert_allclose(book.centroids, [0.1, 10.2])
    assert book.labels.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(book.decode(), [0.1] * 3 + [10.2] * 3)


def test_known_lloyd_iteration() -> None:
    # linear init on [0, 4] with k=3 gives 0, 2, 4; 1 ties between 0 and 2 and goes low,
    # 3 ties and goes low too: clusters {0,1}, {2,3}, {4} -> centroids 0.5, 2.5, 4; then
    # 1 is nearer 0.5, 3 is nearer 2.5: stable.
    book = kmeans_1d(np.array([0.0, 1.0, 2.0, 3.0, 4.0]), 3)
    np.testing.assert_allclose(book.centroids, [0.5, 2.5, 4.0])
    assert book.labels.tolist() == [0, 0, 1, 1, 2]


def test_labels_keep_shape_and_kmeanspp_is_seeded() -> None:
    w = np.random.default_rng(0).normal(size=(3, 3, 4, 5))
    a = kmeans_1d(w, 8, init=KMeansInit.KMEANS_PP, seed=7)
    b = kmeans_1d(w, 8, init=KMeansInit.KMEANS_PP, seed=7)
    assert a.labels.shape == w.shape
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert len(np.unique(a.decode())) <= 8


def test_cluster_sums_adds_gradients_per_cluster() -> None:
    labels = np.array([[0, 2], [2, 1]])
    g = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(cluster_sums(labels, g, 4), [1.0, 4.0, 5.0, 0.0])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=200),
    st.integers(2, 32),
)
def test_properties(values: list[float], k: int) -> None:
    v = np.array(values)
    book = kmeans_1d(v, k)
    assert len(book.centroids) == k and np.all(np.diff(book.centroids) >= 0)
    # every value sits at its nearest centroid, and the clustering error is at most
    # that of the (linear) initial centroids
    d = np.abs(v[:, None] - book.centroids[None, :])
    # midpoint assignment may pick either of two centroids a rounding error apart
    tol = 1e-12 * (1.0 + float(np.abs(v).max()))
    np.testing.assert_allclose(d[np.arange(len(v)), book.labels], d.min(axis=1), rtol=0, atol=tol)
    init = initial_centroids(v, k, KMeansInit.LINEAR)
    err0 = np.square(v - init[assign(v, init)]).sum()
    assert np.square(v - book.decode()).sum() <= err0 + 1e-9


@pytest.mark.parametrize("k", [0, 1, 257, 1000])
def test_cluster_count_out_of_range(k: int) -> None:
    with pytest.raises(EdgeError, match=r"cluster count must be in 2\.\.256"):
        kmeans_1d(np.arange(5.0), k)
