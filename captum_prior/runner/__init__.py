"""Explain and evaluate whole datasets: sharded, resumable, multi-process.

- :func:`attribute_dataset` attributes every example of a dataset with any
  attribution object (this project's or Captum's) into a directory of atomic
  safetensors shards plus ``manifest.json``; rerunning resumes; under
  ``torchrun`` the ranks share the shards.
- :func:`load_attributions` reads all or some of them back, lazily.
- :func:`~captum_prior.runner.evaluate.evaluate_attributions` scores stored
  attributions with the project's metrics (also sharded and resumable);
  :func:`~captum_prior.runner.evaluate.compare_runs` writes means with
  95 % confidence intervals, paired differences and an offline HTML report.
"""

from captum_prior.runner.explain import (
    attribute_dataset,
    example_seed,
    model_fingerprint,
)
from captum_prior.runner.store import (
    ManifestMismatchError,
    StoredAttributions,
    load_attributions,
)

__all__ = [
    "ManifestMismatchError",
    "StoredAttributions",
    "attribute_dataset",
    "example_seed",
    "load_attributions",
    "model_fingerprint",
]
