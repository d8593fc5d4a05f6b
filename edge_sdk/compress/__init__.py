"""Pure numerical cores of the compression passes (no TensorFlow, no IO)."""
