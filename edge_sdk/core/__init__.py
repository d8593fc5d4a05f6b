"""Pure numerics of compression (numpy only, no IO): the channel dependency graph,
criteria, selection, k-means, SVD, least squares."""
