"""Channel pruning that removes channels, for Keras (``keras``) and ONNX (``onnx``)."""
