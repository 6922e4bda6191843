"""Faithfulness metrics in Captum's metric convention."""

from importlib import import_module
from typing import Any

# Public name -> defining module. Resolved lazily so that each method lives in
# its own module and importing one does not import the others.
_EXPORTS = {
    "insertion_deletion": "captum_prior.metrics.insertion_deletion",
    "diff_id": "captum_prior.metrics.insertion_deletion",
    "keep_remove": "captum_prior.metrics.keep_remove",
    "sensitivity_n": "captum_prior.metrics.sensitivity_n",
    "BayLime": "captum_prior.attr.bay_lime",
}

__all__ = sorted(_EXPORTS)

# The metric functions share their modules' names, so importing a submodule
# (``captum_prior.metrics.insertion_deletion``) would make the package
# attribute the module, not the function. Binding the functions here, eagerly,
# keeps ``from captum_prior.metrics import insertion_deletion`` a function
# whatever was imported first. (These modules import only torch and Captum's
# common helpers; BayLime stays lazy.)
from captum_prior.metrics.insertion_deletion import diff_id, insertion_deletion  # noqa: E402, F401
from captum_prior.metrics.keep_remove import keep_remove  # noqa: E402, F401
from captum_prior.metrics.sensitivity_n import sensitivity_n  # noqa: E402, F401


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return __all__
