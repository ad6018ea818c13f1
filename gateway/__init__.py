"""The MNIST gateway: uploads in, predictions out, every result stored."""
