"""int8 post-training quantization: the shared options and remedy search (``base``), one
backend per format (``tflite``, ``onnx``)."""
