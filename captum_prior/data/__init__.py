"""Data loading: the full Fashion-MNIST from disk and the shipped sample."""

from captum_prior.data.fashion_mnist import (
    load_fashion_mnist,
    load_fashion_mnist_sample,
)

__all__ = ["load_fashion_mnist", "load_fashion_mnist_sample"]
