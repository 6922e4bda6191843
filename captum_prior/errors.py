"""The exception and warning types that ``captum_prior`` raises.

Every error a user can cause is a ``ValueError`` or ``TypeError`` whose message
names the argument and the fix; the subclasses below let callers catch the
project's errors specifically. The errors are ``ValueError`` subclasses of
:class:`CaptumPriorError` (and :class:`NotFittedError`, scikit-learn's own, for
an estimator used before ``fit``), so ``except ValueError`` still catches them.  Every warning is a subclass of
:class:`CaptumPriorWarning`, so it can be filtered or escalated in one line::

    import warnings
    from captum_prior import CaptumPriorWarning
    warnings.simplefilter("error", CaptumPriorWarning)   # turn every warning into an error

A warning's text names the condition and the fix, never values that change
from call to call (those go into the result, e.g. ``diagnostics_``), and it is
attributed to the line of the user's code that called the library.  Under
Python's default filter each is therefore shown once per calling line: a loop
over many images with 0..255 pixels warns once, not once per image.  Use
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
    """Base class of the project's errors (a ``ValueError``).

    Examples
    --------
    >>> from captum_prior import CaptumPriorError, FileFormatError
    >>> issubclass(FileFormatError, CaptumPriorError), issubclass(CaptumPriorError, ValueError)
    (True, True)
    """


class FileFormatError(CaptumPriorError):
    """A file could not be loaded.

    Raised by every ``load`` of the package when the file is truncated,
    corrupted, of another kind or format version, or holds parameters of the
    wrong shape or non-finite values; the message names the file. Saves are
    atomic (a temporary file, then a rename), so an interrupted save never
    leaves such a file behind.
    """


class ModelOutputError(CaptumPriorError):
    """The model returned NaN/Inf or an output of an unusable shape.

    Checked once, in the chunked forward/backward helper every method uses,
    on outputs, gradients and feature maps; the message names the model and
    the first offending example.
    """


class CaptumPriorWarning(UserWarning):
    """Base class of every warning ``captum_prior`` emits.

    Examples
    --------
    >>> import warnings
    >>> from captum_prior import CaptumPriorWarning, InputRangeWarning
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", CaptumPriorWarning)
    ...     try:
    ...         warnings.warn("pixels look like 0..255", InputRangeWarning)
    ...     except CaptumPriorWarning as w:
    ...         print(type(w).__name__)
    InputRangeWarning
    """


class InputRangeWarning(CaptumPriorWarning):
    """Inputs or baselines lie far outside the range the model, prior or clip expects.

    For example 0..255 images for the bundled model trained on ``[0, 1]``, or
    inputs outside a model's ``input_range`` attribute.
    """


class ModelModeWarning(CaptumPriorWarning):
    """The model has dropout or batch-norm layers in training mode; call
    ``model.eval()`` first.  The library never changes the model's mode."""


class ConvergenceDiagnosticWarning(CaptumPriorWarning):
    """An iterative fit or sampler did not converge or mix.

    For example R-hat > 1.01 or bulk ESS < 400 for a monitored quantity of
    :class:`~captum_prior.proxy.DMMMEN`, or an optimisation that stopped at its
    iteration cap. The values themselves are in the estimator's diagnostics
    (e.g. ``diagnostics_``), not in the message.
    """
