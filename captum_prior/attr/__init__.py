"""Attribution classes: drop-in Captum ``Attribution`` subclasses."""

from importlib import import_module
from typing import Any

# Public name -> defining module. Resolved lazily so that each method lives in
# its own module and importing one does not import the others.
_EXPORTS = {
    "ExpectedGradients": "captum_prior.attr.expected_gradients",
    "DeepPriorExpectedGradients": "captum_prior.attr.deep_prior_expected_gradients",
    "OptimizedBaseline": "captum_prior.attr.optimized_baseline",
    "ValidPathGradients": "captum_prior.attr.valid_path_gradients",
    "BayLime": "captum_prior.attr.bay_lime",
    "BayesianLinearModel": "captum_prior.attr.bay_lime",
    "DMMMENAttribution": "captum_prior.attr.dmm_men_attribution",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return __all__
