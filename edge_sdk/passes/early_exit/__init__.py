"""Early-exit heads and their thresholds (Keras)."""
