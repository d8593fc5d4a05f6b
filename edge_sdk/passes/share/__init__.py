"""Weight sharing: k-means clustered kernels, for Keras (``keras``) and ONNX (``onnx``)."""
