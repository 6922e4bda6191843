"""Prior maps for DeepPrior-EG: ``prior(inputs, target=None) -> p_prior``."""

from captum_prior.priors.bgmm import BGMMPrior
from captum_prior.priors.mask import MaskPrior
from captum_prior.priors.mgm import MGMPrior

__all__ = ["BGMMPrior", "MGMPrior", "MaskPrior"]
