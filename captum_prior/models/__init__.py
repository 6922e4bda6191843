"""Models shipped with ``captum_prior`` (weights embedded, no download)."""

from captum_prior.models.fashion_cnn import (
    FASHION_CLASSES,
    FashionCNN,
    load_fashion_cnn,
)

__all__ = ["FASHION_CLASSES", "FashionCNN", "load_fashion_cnn"]
