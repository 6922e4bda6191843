"""captum_prior: prior-guided and example-based explanations for Captum."""

__version__ = "0.1.0"
