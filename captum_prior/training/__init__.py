"""Training with attribution priors (Erion et al. 2021; DeepPrior-EG §4.3.2)."""

from captum_prior.training.attribution_priors import (
    AttributionPriorTrainer,
    gini_penalty,
    total_variation_penalty,
    training_attributions,
)

__all__ = [
    "AttributionPriorTrainer",
    "gini_penalty",
    "total_variation_penalty",
    "training_attributions",
]
