"""Training and export of the MNIST CNN as versioned SavedModels for TF Serving."""
