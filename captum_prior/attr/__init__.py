"""Attribution classes: drop-in Captum ``Attribution`` subclasses."""

from captum_prior.attr.adversarial_gradient_integration import (
    AdversarialGradientIntegration,
)
from captum_prior.attr.bay_lime import BayesianLinearModel, BayLime
from captum_prior.attr.blur_integrated_gradients import BlurIntegratedGradients
from captum_prior.attr.deep_prior_expected_gradients import DeepPriorExpectedGradients
from captum_prior.attr.dmm_men_attribution import DMMMENAttribution
from captum_prior.attr.expected_gradients import ExpectedGradients
from captum_prior.attr.guided_integrated_gradients import GuidedIntegratedGradients
from captum_prior.attr.idgi import IDGI
from captum_prior.attr.optimized_baseline import OptimizedBaseline
from captum_prior.attr.valid_path_gradients import ValidPathGradients

__all__ = [
    "AdversarialGradientIntegration",
    "BlurIntegratedGradients",
    "GuidedIntegratedGradients",
    "IDGI",
    "BayLime",
    "BayesianLinearModel",
    "DMMMENAttribution",
    "DeepPriorExpectedGradients",
    "ExpectedGradients",
    "OptimizedBaseline",
    "ValidPathGradients",
]
