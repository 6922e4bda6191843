"""Proxy models of deep features: JGMM and DMM-MEN (scikit-learn style)."""

from importlib import import_module
from typing import Any

# Public name -> defining module. Resolved lazily so that each method lives in
# its own module and importing one does not import the others.
_EXPORTS = {
    "JointGaussianMixture": "captum_prior.proxy.jgmm",
    "JGMMExplainer": "captum_prior.proxy.jgmm_explainer",
    "DMMMEN": "captum_prior.proxy.dmm_men",
    "DMMMENGlobalInsights": "captum_prior.proxy.dmm_men_insights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return __all__
