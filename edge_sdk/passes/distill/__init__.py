"""Knowledge distillation from the original model (Keras)."""
