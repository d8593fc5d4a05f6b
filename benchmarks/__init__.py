"""Measured claims: ``python -m benchmarks.run`` prints the table (see README)."""
