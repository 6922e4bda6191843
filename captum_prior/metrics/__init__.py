"""Faithfulness metrics and sanity checks in Captum's metric convention
(``forward_func, inputs, attributions, target, additional_forward_args``).

- removal metrics: :func:`insertion_deletion`, :func:`diff_id`,
  :func:`keep_remove` (KPM ... RAM), :func:`road`;
- :func:`sensitivity_n`;
- sanity checks: :func:`model_randomization_test`, :func:`random_logit_test`,
  :func:`similarity`;
- :func:`metric_agreement`: do several metrics rank the methods alike?

``BayLime`` (an attribution method, defined in :mod:`captum_prior.attr`) is
also importable from here.
"""

from captum_prior.attr.bay_lime import BayLime
from captum_prior.metrics.agreement import AgreementResult, metric_agreement
from captum_prior.metrics.insertion_deletion import diff_id, insertion_deletion
from captum_prior.metrics.keep_remove import keep_remove
from captum_prior.metrics.road import road
from captum_prior.metrics.sanity import (
    ModelRandomizationResult,
    RandomLogitResult,
    model_randomization_test,
    random_logit_test,
    similarity,
)
from captum_prior.metrics.sensitivity_n import sensitivity_n

__all__ = [
    "AgreementResult",
    "BayLime",
    "ModelRandomizationResult",
    "RandomLogitResult",
    "diff_id",
    "insertion_deletion",
    "keep_remove",
    "metric_agreement",
    "model_randomization_test",
    "random_logit_test",
    "road",
    "sensitivity_n",
    "similarity",
]
