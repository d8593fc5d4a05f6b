"""Bundles on the host: the writer, the all-or-nothing assembly of a bundle and its
report, signing, and ``edge pack``."""
