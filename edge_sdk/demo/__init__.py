"""The shipped example (LeNet-5 on scikit-learn's digits) and the ``edge demo`` steps."""
