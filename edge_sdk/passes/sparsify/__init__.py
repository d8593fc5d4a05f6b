"""Weight sparsity: the smallest weights of the large kernels set to zero while distilling (Keras)."""
