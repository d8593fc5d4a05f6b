"""Measuring models: accuracy, held-out splits, timing on the device runtimes, per-step size and latency."""
