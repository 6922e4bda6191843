"""DeepBGMM prior: a Dirichlet-process Gaussian mixture over deep feature positions."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from captum_prior._random import RandomState
from captum_prior._validation import check_choice, check_float, check_int
from captum_prior.priors._base import DEFAULT_SCALE, ClampType, DeepFeaturePrior
from captum_prior.priors._vbgmm import BatchedBayesianGMM

REDUCTIONS = ("evidence", "center")


def _pca_basis(xc: Tensor, d: int) -> Tensor:
    """The top-``d`` principal directions ``B x C x d`` of centred rows
    ``xc`` (``B x N x C``), from the smaller of the two Gram matrices (one
    symmetric eigendecomposition, cheaper than an SVD for these sizes)."""
    n, c = xc.shape[1], xc.shape[2]
    if n < c:
        lam, u = torch.linalg.eigh(xc @ xc.transpose(1, 2))  # ascending
        lam, u = lam[:, -d:].flip(-1), u[:, :, -d:].flip(-1)
        s = lam.clamp_min(0).sqrt()
        v = xc.transpose(1, 2) @ u / torch.where(s > 0, s, torch.ones_like(s))[:, None]
    else:
        _, v = torch.linalg.eigh(xc.transpose(1, 2) @ xc)
        v = v[:, :, -d:].flip(-1)
    return v


class BGMMPrior(DeepFeaturePrior):
    r"""DeepBGMM prior: a Dirichlet-process Gaussian mixture over the positions
    of a deep feature map (Guo & Gong, 2025, §3.3, eqs. 15-17).

    For each explained image the ``N = h*w`` feature rows of ``layer`` (eq.
    15) are reduced by PCA to ``pca_components`` dimensions and fitted with a
    variational Bayesian Gaussian mixture with a truncated Dirichlet-process
    weight prior (eq. 16; the model and updates of scikit-learn's
    ``BayesianGaussianMixture``, full covariances, k-means++ start). The
    posterior matrix :math:`P \in [0,1]^{N \times K}` (eq. 17) is reduced to
    one ``h x w`` map by ``reduction``, upsampled bilinearly to the input
    size and multiplied by ``scale`` times the data's per-channel standard
    deviation.  The map is a shift: :class:`~captum_prior.attr.DeepPriorExpectedGradients`
    subtracts it from every reference and clamps the result to the data's
    range (see :class:`~captum_prior.priors.MGMPrior` for the units and the
    clamp, which every deep-feature prior shares).

    All images of a batch are fitted at once, in one set of array operations
    (NumPy on the CPU, torch on any other device); each image's fit depends
    only on its own features and ``random_state``, so an image gets the same
    map whatever batch it is explained in.  With :meth:`fit`, one mixture is
    fitted on all positions of a reference set instead, and each explained
    image's positions are assigned to it.

    The paper does not say how :math:`P` becomes one map. Reductions:

    - ``"evidence"``: the posterior of the component with the highest mean
      Grad-CAM evidence for the target class (the ReLU of the
      channel-weighted feature map, Selvaraju et al. 2017). High = the
      cluster the model uses as evidence for the target. Needs one backward
      pass per batch.
    - ``"center"``: the posterior of the component that dominates the image
      centre (the mean posterior over the central 1 or 2x2 positions). High
      = looks like what is in the middle of the frame; on a centred object
      this marks the object, whatever its area. No backward pass.

    Parameters
    ----------
    model : nn.Module
        The model being explained.
    layer : str or nn.Module, optional
        The layer whose ``N x C x h x w`` output is modelled. Default: None
        (the output of the last module whose output is spatial, found by
        running the model once with hooks; stored as ``layer_name_``).
    n_components : int, optional
        Truncation level of the Dirichlet process: an upper bound on the
        clusters used (the released code uses 5). Default: 5
    reduction : {"evidence", "center"}, optional
        How the posterior matrix becomes one map (see above). Ignored by
        ``variant="reference_code"``. Default: ``"evidence"``
    pca_components : int or None, optional
        PCA dimension of the rows before the mixture (capped at rows - 1);
        None fits the raw rows. Ignored by ``variant="reference_code"``.
        Default: 8
    max_iter : int or None, optional
        Cap on the variational iterations. Default: None (200 for
        ``"paper"``; scikit-learn's 100, as the released code, for
        ``"reference_code"``)
    tol : float, optional
        The fit stops when the lower bound changes by less than ``tol``
        (scikit-learn's default). Default: 1e-3
    random_state : None, int or torch.Generator, optional
        Seed of the mixtures' k-means++ starts (the released code does not
        seed them); None draws one from torch's global RNG. Default: 0
    scale : float, optional
        The largest shift, in standard deviations of the data. Default: 1.0
    variant : {"paper", "reference_code"}, optional
        ``"paper"``: eqs. 15-17 as described above. ``"reference_code"``:
        what the authors' released code computes: a full-covariance mixture
        over the ``(C*h) x w`` reshape of the feature tensor (each row holds
        ``w`` values along the width), whose ``(C*h) x K`` posterior matrix is
        resized as an image to ``H x W``; no reduction, no PCA.
        Default: ``"paper"``
    batch_size : int, optional
        Images per feature-extraction forward. Default: 64
    data_std : float, sequence or Tensor, optional
        The data's standard deviation (one value or one per channel).
        Default: None (the reference set's)
    clamp : "auto", None or (low, high), optional
        The range of the shifted baselines; ``"auto"`` = the reference set's
        per-channel min/max; None = no clamp (warns). Default: ``"auto"``

    Attributes
    ----------
    layer_ : nn.Module
        The modelled layer (found on the first input when ``layer`` is None).
    layer_name_ : str
        Its name in ``model.named_modules()``.
    fitted_ : tuple or None
        The reference-set mixture after :meth:`fit`, else None.

    Raises
    ------
    ValueError
        An argument out of range, or (at call time) fewer feature rows than
        ``n_components``.

    Notes
    -----
    Departures from the paper: the rows are reduced by PCA before the
    mixture (a full covariance over e.g. 1280 channels from 49 rows cannot be
    estimated; the paper gives no dimension) and scaled to unit standard
    deviation; the covariance regulariser is ``1e-4`` (``1e-6``, scikit-learn's,
    for ``"reference_code"``); the k-means++ starts are seeded.

    References
    ----------
    Guo and Gong, "Enhancing neural network interpretability through deep
    prior-guided expected gradients", preprint, 2025.
    R. R. Selvaraju et al., "Grad-CAM: visual explanations from deep networks
    via gradient-based localization", ICCV 2017.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_prior.priors import BGMMPrior
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
    ...                       nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    >>> prior = BGMMPrior(model, layer=model[0], n_components=3, pca_components=2)
    >>> p = prior(torch.rand(2, 1, 8, 8))
    >>> p.shape
    torch.Size([2, 1, 8, 8])
    """

    _variants = ("paper", "reference_code")

    def __init__(
        self,
        model: nn.Module,
        layer: Union[str, nn.Module, None] = None,
        n_components: int = 5,
        reduction: str = "evidence",
        pca_components: Optional[int] = 8,
        max_iter: Optional[int] = None,
        tol: float = 1e-3,
        random_state: RandomState = 0,
        scale: float = DEFAULT_SCALE,
        variant: str = "paper",
        batch_size: int = 64,
        data_std: Union[float, Sequence[float], Tensor, None] = None,
        clamp: ClampType = "auto",
    ) -> None:
        super().__init__(model, layer, scale, variant, batch_size, data_std, clamp)
        self.n_components = check_int(n_components, "n_components", 1)
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)
        self.pca_components = None if pca_components is None else check_int(pca_components, "pca_components", 1)
        self.max_iter = None if max_iter is None else check_int(max_iter, "max_iter", 1)
        self.tol = check_float(tol, "tol", 0.0)
        self.random_state = random_state
        self._needs_evidence = self.variant == "paper" and self.reduction == "evidence"

    def _repr_extra(self) -> str:
        return f"n_components={self.n_components}, reduction={self.reduction!r}"

    # -- mixture ------------------------------------------------------------
    def _mixture(self, dtype: torch.dtype) -> BatchedBayesianGMM:
        ref = self.variant == "reference_code"
        max_iter = self.max_iter if self.max_iter is not None else (100 if ref else 200)
        return BatchedBayesianGMM(
            n_components=self.n_components, covariance_type="full", tol=self.tol,
            reg_covar=1e-6 if ref else 1e-4, max_iter=max_iter,
            weight_concentration_prior_type="dirichlet_process",
            random_state=self.random_state, dtype=dtype,
        )

    def _fit_rows(self, rows: Tensor) -> Tuple[BatchedBayesianGMM, Optional[Tuple[Tensor, Tensor]], Tensor]:
        """Fit one mixture per image of ``rows`` (``B x N x D``, or ``N x D``
        for one reference-set mixture) at once; returns ``(mixture, pca,
        scale)`` with per-image PCA (mean, basis) and scale."""
        if rows.dim() == 2:
            rows = rows.unsqueeze(0)
        dtype = torch.float32 if rows.device.type == "mps" else torch.float64
        x = rows.detach().to(dtype)
        if x.shape[1] < self.n_components:
            raise ValueError(
                f"only {x.shape[1]} feature rows for a BGMM with n_components={self.n_components}: "
                "lower n_components, use a layer with a larger feature map, or fit() the prior "
                "on a reference set of images"
            )
        pca = None
        if self.variant == "paper" and self.pca_components is not None:
            d = min(self.pca_components, x.shape[1] - 1, x.shape[2])
            mu = x.mean(1, keepdim=True)
            pca = (mu, _pca_basis(x - mu, d))
            x = (x - mu) @ pca[1]
        scale = x.flatten(1).std(1, correction=0)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))[:, None, None]
        gm = self._mixture(dtype).fit(x / scale)
        return gm, pca, scale

    @staticmethod
    def _posterior(fitted: Any, rows: Tensor) -> Tensor:
        """Responsibilities ``B x N x K`` of ``rows`` under ``fitted``."""
        gm, pca, scale = fitted
        x = rows.detach().to(gm.dtype)
        if pca is not None:
            x = (x - pca[0]) @ pca[1]
        return gm.predict_proba(x / scale)

    # -- map ------------------------------------------------------------------
    def _maps(self, feats: Tensor, evid: Optional[Tensor]) -> Tensor:
        """All images at once: one batched fit (or the reference fit), one
        batched reduction; stays on ``feats``' device."""
        rows = self._rows(feats)
        fitted = self.fitted_ if self.fitted_ is not None else self._fit_rows(rows)
        post = self._posterior(fitted, rows)  # B x N x K
        if self.variant == "reference_code":
            return post.to(feats.dtype)  # B x (C*h) x K, resized as an image by the caller
        h, w = self._grid(feats)
        if self.reduction == "center":
            rows_c = [h // 2] if h % 2 else [h // 2 - 1, h // 2]
            cols_c = [w // 2] if w % 2 else [w // 2 - 1, w // 2]
            centre = [r * w + c for r in rows_c for c in cols_c]
            score = post[:, centre].mean(1)
        else:  # evidence: the component with the highest mean Grad-CAM evidence
            e = evid.reshape(evid.shape[0], -1, 1).to(post.dtype)
            mass = post.sum(1)
            score = (post * e).sum(1) / torch.where(mass > 0, mass, torch.ones_like(mass))
            score = score.masked_fill(mass <= 1e-9, -math.inf)
        k_star = score.argmax(-1)
        m = post.gather(2, k_star.reshape(-1, 1, 1).expand(-1, post.shape[1], 1)).squeeze(2)
        return m.to(feats.dtype).view(-1, h, w)
