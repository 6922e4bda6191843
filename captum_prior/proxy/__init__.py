"""Proxy models of deep features: JGMM and DMM-MEN (scikit-learn style)."""

from captum_prior.proxy.dmm_men import DMMMEN, DMMMENPriors
from captum_prior.proxy.dmm_men_insights import DMMMENGlobalInsights
from captum_prior.proxy.jgmm import JointGaussianMixture
from captum_prior.proxy.jgmm_explainer import JGMMExplainer

__all__ = [
    "DMMMEN",
    "DMMMENGlobalInsights",
    "DMMMENPriors",
    "JGMMExplainer",
    "JointGaussianMixture",
]
