"""Data loading: the full Fashion-MNIST from disk and the shipped sample.

:func:`load_fashion_mnist_sample` returns the first 500 Fashion-MNIST test
images, shipped inside the package; :func:`load_fashion_mnist` reads the full
set from disk (never downloaded). The 20 ImageNet photos used by the benchmarks
are in :func:`captum_prior.models.load_imagenet_samples`.
"""

from captum_prior.data.fashion_mnist import (
    load_fashion_mnist,
    load_fashion_mnist_sample,
)

__all__ = ["load_fashion_mnist", "load_fashion_mnist_sample"]
