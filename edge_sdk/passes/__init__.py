"""Optimization passes, one folder per algorithm with a file per model kind; the recipe
(``edge_sdk.recipe``) composes them in a fixed order."""
