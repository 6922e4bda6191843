"""captum_prior: prior-guided, optimized-baseline and example-based explanations for Captum.

The methods live in the subpackages: :mod:`captum_prior.attr` (attribution
classes), :mod:`captum_prior.priors`, :mod:`captum_prior.proxy`,
:mod:`captum_prior.metrics`, :mod:`captum_prior.training`,
:mod:`captum_prior.runner`. The top level exports the package's error and
warning types (see :mod:`captum_prior.errors`) and its version.
"""

from captum_prior.errors import (
    CaptumPriorError,
    CaptumPriorWarning,
    ConvergenceDiagnosticWarning,
    FileFormatError,
    InputRangeWarning,
    ModelModeWarning,
    ModelOutputError,
    NotFittedError,
)

#: The package version (PEP 440).
__version__ = "0.1.0"

__all__ = [
    "CaptumPriorError",
    "CaptumPriorWarning",
    "ConvergenceDiagnosticWarning",
    "FileFormatError",
    "InputRangeWarning",
    "ModelModeWarning",
    "ModelOutputError",
    "NotFittedError",
    "__version__",
]
