"""Low-rank factorization of Dense and 1x1 Conv layers (Keras)."""
