"""captum_prior: prior-guided and example-based explanations for Captum."""

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
