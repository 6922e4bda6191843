"""The exception and warning types that ``captum_prior`` raises.

Every error a user can cause is a ``ValueError`` or ``TypeError`` whose message
names the argument and the fix; the subclasses below let callers catch the
project's errors specifically.  Every warning is a subclass of
:class:`CaptumPriorWarning`, so it can be filtered or escalated in one line::

    import warnings
    from captum_prior import CaptumPriorWarning
    warnings.simplefilter("error", CaptumPriorWarning)   # turn every warning into an error

A warning's text names the condition and the fix, never values that change
from call to call (those go into the result, e.g. ``diagnostics_``), and it is
attributed to the line of the user's code that called the library.  Under
Python's default filter each is therefore shown once per calling line: a loop
over 17 images with 0..255 pixels warns once, not 17 times.  Use
``warnings.simplefilter("always", CaptumPriorWarning)`` to see every one.
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError

__all__ = [
    "CaptumPriorError",
    "FileFormatError",
    "ModelOutputError",
    "NotFittedError",
    "CaptumPriorWarning",
    "InputRangeWarning",
    "ModelModeWarning",
    "ConvergenceDiagnosticWarning",
]


class CaptumPriorError(ValueError):
    """Base class of the project's errors (a ``ValueError``)."""


class FileFormatError(CaptumPriorError):
    """A file could not be loaded: truncated, corrupted, of another kind or
    format version, or holding parameters of the wrong shape or non-finite."""


class ModelOutputError(CaptumPriorError):
    """The model (or a gradient through it) returned NaN/Inf or an output of an
    unusable shape."""


class CaptumPriorWarning(UserWarning):
    """Base class of every warning ``captum_prior`` emits."""


class InputRangeWarning(CaptumPriorWarning):
    """Inputs or baselines lie far outside the range the model, prior or clip
    expects (e.g. 0..255 images for a model trained on [0, 1])."""


class ModelModeWarning(CaptumPriorWarning):
    """The model has dropout or batch-norm layers in training mode; call
    ``model.eval()`` first.  The library never changes the model's mode."""


class ConvergenceDiagnosticWarning(CaptumPriorWarning):
    """An iterative fit or sampler did not converge or mix (e.g. R-hat > 1.01,
    bulk ESS < 400, an optimisation that stopped at its iteration cap)."""
