"""DeepMGM prior: a multivariate Gaussian over deep feature positions."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from captum_prior._validation import check_int
from captum_prior.priors._base import DEFAULT_SCALE, ClampType, DeepFeaturePrior, minmax


def ledoit_wolf_intensity(xc: Tensor) -> Tensor:
    r"""Ledoit-Wolf (2004) shrinkage intensity for centred rows ``xc``
    (``B x N x C``), computed in the N x N Gram space (no C x C matrix).

    With :math:`S = X^\top X / N` and :math:`m = \mathrm{tr}(S)/C`:
    :math:`d^2 = \lVert S - mI\rVert_F^2`,
    :math:`\bar b^2 = (\sum_i \lVert x_i\rVert^4 - N\lVert S\rVert_F^2)/N^2`,
    intensity :math:`\min(\bar b^2, d^2)/d^2`.

    Parameters
    ----------
    xc : Tensor
        ``B x N x C`` centred rows.

    Returns
    -------
    Tensor
        ``B`` intensities in ``[0, 1]``.

    References
    ----------
    O. Ledoit and M. Wolf, "A well-conditioned estimator for large-dimensional
    covariance matrices", J. Multivariate Analysis 88, 2004.
    """
    n, c = xc.shape[-2], xc.shape[-1]
    gram = xc @ xc.transpose(-1, -2) / n
    s_fro2 = (gram**2).sum((-1, -2))
    m = torch.diagonal(gram, dim1=-2, dim2=-1).sum(-1) / c
    d2 = s_fro2 - c * m**2
    sq = (xc**2).sum(-1)
    b2 = ((sq**2).sum(-1) - n * s_fro2) / n**2
    b2 = torch.minimum(b2.clamp_min(0), d2)
    return torch.where(d2 > 0, b2 / torch.where(d2 > 0, d2, torch.ones_like(d2)), torch.ones_like(d2))


def shrunk_gaussian(x: Tensor) -> Dict[str, Tensor]:
    r"""Fit, per batch item, a Gaussian with Ledoit-Wolf-shrunk covariance to
    rows ``x`` (``B x N x C``): :math:`\Sigma = (1-s)S + s\,m I` with the
    unbiased :math:`S` of eq. 12 and :math:`m = \mathrm{tr}(S)/C`.

    A full ``C x C`` covariance from ``N <= C`` rows is singular (rank
    ``N - 1``); the shrinkage makes it invertible. Works in the ``N x N``
    Gram space when ``N <= C`` (e.g. 49 positions x 1280 channels), in the
    ``C x C`` covariance otherwise (e.g. a reference set of many images).

    Parameters
    ----------
    x : Tensor
        ``B x N x C`` rows.

    Returns
    -------
    dict of str to Tensor
        The fitted Gaussians, for :func:`shrunk_gaussian_logpdf`.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(1, 10, 30, generator=torch.Generator().manual_seed(0))
    >>> shrunk_gaussian_logpdf(shrunk_gaussian(x), x).shape
    torch.Size([1, 10])
    """
    x = x.to(torch.float64)
    b, n, c = x.shape
    mu = x.mean(1, keepdim=True)
    xc = x - mu
    s = ledoit_wolf_intensity(xc)  # B
    tr = (xc**2).sum((1, 2)) / max(n - 1, 1)  # trace of unbiased S
    nu = (s * tr / c).clamp_min(1e-12 * (tr / c).clamp_min(1e-30))
    nu = nu.clamp_min(1e-30)
    if n > c:  # Sigma is C x C and positive definite: a Cholesky factor (no eigenproblem)
        cov = xc.transpose(1, 2) @ xc / max(n - 1, 1)
        eye = torch.eye(c, dtype=cov.dtype, device=cov.device)
        sigma = (1 - s).view(-1, 1, 1) * cov + nu.view(-1, 1, 1) * eye
        chol, info = torch.linalg.cholesky_ex(sigma)
        if not bool((info == 0).all()):  # numerically indefinite: the eigen route below
            return _shrunk_gaussian_eig(xc, mu, s, nu)
        logdet = 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
        return {"mu": mu, "chol": chol, "logdet": logdet}
    return _shrunk_gaussian_eig(xc, mu, s, nu)


def _shrunk_gaussian_eig(xc: Tensor, mu: Tensor, s: Tensor, nu: Tensor) -> Dict[str, Tensor]:
    """:func:`shrunk_gaussian` by eigendecomposition (of the ``N x N`` Gram
    matrix when ``N <= C``, else of the ``C x C`` covariance)."""
    b, n, c = xc.shape
    if n > c:
        lam, v = torch.linalg.eigh(xc.transpose(1, 2) @ xc / max(n - 1, 1))
        keep = lam > lam.amax(-1, keepdim=True).clamp_min(1e-300) * 1e-10
        lam = torch.where(keep, lam, torch.zeros_like(lam))
    else:  # the N x N Gram matrix has the same nonzero eigenvalues
        gram = xc @ xc.transpose(1, 2) / max(n - 1, 1)
        lam, u = torch.linalg.eigh(gram)
        keep = lam > lam.amax(-1, keepdim=True).clamp_min(1e-300) * 1e-10
        lam = torch.where(keep, lam, torch.zeros_like(lam))
        # eigenvectors of S in feature space: v_j = Xc^T u_j / sqrt((N-1) lam_j)
        denom = torch.sqrt(lam.clamp_min(1e-300) * max(n - 1, 1))
        v = (xc.transpose(1, 2) @ u) / denom.unsqueeze(1)
    v = torch.where(keep.unsqueeze(1), v, torch.zeros_like(v))
    ev = (1 - s).unsqueeze(1) * lam + nu.unsqueeze(1)  # B x N eigenvalues of Sigma on span(V)
    rank = keep.sum(1)
    logdet = torch.where(keep, ev.log(), torch.zeros_like(ev)).sum(1) + (c - rank) * nu.log()
    return {"mu": mu, "v": v, "ev": ev, "keep": keep, "nu": nu, "logdet": logdet}


def shrunk_gaussian_logpdf(params: Dict[str, Tensor], z: Tensor) -> Tensor:
    """Log-density (eq. 14) of rows under Gaussians of :func:`shrunk_gaussian`.

    Parameters
    ----------
    params : dict of str to Tensor
        The output of :func:`shrunk_gaussian` (``B`` Gaussians).
    z : Tensor
        ``B x M x C`` rows.

    Returns
    -------
    Tensor
        ``B x M`` log-densities (float64).
    """
    z = z.to(torch.float64) - params["mu"]
    c = z.shape[-1]
    if "chol" in params:  # Mahalanobis distance by one triangular solve
        y = torch.linalg.solve_triangular(params["chol"], z.transpose(-1, -2), upper=False)
        maha = (y**2).sum(-2)
        return -0.5 * (maha + params["logdet"].unsqueeze(1) + c * math.log(2 * math.pi))
    proj = z @ params["v"]  # B x M x N
    keep = params["keep"].unsqueeze(1)
    inside = torch.where(keep, proj**2 / params["ev"].unsqueeze(1), torch.zeros_like(proj)).sum(-1)
    resid = ((z**2).sum(-1) - torch.where(keep, proj**2, torch.zeros_like(proj)).sum(-1)).clamp_min(0)
    maha = inside + resid / params["nu"].unsqueeze(1)
    return -0.5 * (maha + params["logdet"].unsqueeze(1) + c * math.log(2 * math.pi))


def pca_project(x_fit: Tensor, x_eval: Tensor, k: int) -> "tuple[Tensor, Tensor]":
    """Project both row sets on the top-``k`` principal axes of ``x_fit``, per batch item.

    Parameters
    ----------
    x_fit : Tensor
        ``B x N x C`` rows that define the axes.
    x_eval : Tensor
        ``B x M x C`` rows to project as well.
    k : int
        Number of axes.

    Returns
    -------
    tuple of Tensor
        ``B x N x k`` and ``B x M x k`` (float64), centred on ``x_fit``'s mean.
    """
    mu = x_fit.mean(1, keepdim=True)
    _, _, vh = torch.linalg.svd((x_fit - mu).to(torch.float64), full_matrices=False)
    basis = vh[:, :k].transpose(1, 2)
    return (x_fit - mu).to(torch.float64) @ basis, (x_eval - mu).to(torch.float64) @ basis


class MGMPrior(DeepFeaturePrior):
    r"""DeepMGM prior: a Gaussian over the positions of a deep feature map
    (Guo & Gong, 2025, §3.2, eqs. 10-14).

    For each explained image, the feature map ``F`` (``C x h x w``) of
    ``layer`` is flattened into ``N = h*w`` rows of ``C`` features (eq. 10);
    a Gaussian is fitted to the rows (eqs. 11-12) and each position's
    log-density (eq. 14) is min-max normalised over the image, giving an
    ``h x w`` map in ``[0, 1]``, upsampled bilinearly to the input size and
    multiplied by ``scale`` times the data's per-channel standard deviation.
    With :meth:`fit`, one Gaussian is fitted on all positions of a reference
    set instead (a high value then means "typical of the reference set").

    **Units and clamp** (shared by every deep-feature prior). The shift is
    ``map * scale * sigma_c``: ``scale`` counts standard deviations of the
    data, so the same prior gives the same *relative* shift whatever the
    data's units (pixels in [0, 1], [0, 255], or normalised); the released
    code subtracts its map in the model's normalised input space, i.e. in
    standard-deviation units too. ``sigma_c`` is ``data_std`` if given, else
    the reference set's (the baselines passed to
    :class:`~captum_prior.attr.DeepPriorExpectedGradients`). The shifted
    baselines ``x' - p`` are clamped to ``clamp`` (default: the reference
    set's per-channel min and max), so they never leave the data's range;
    ``clamp=None`` turns that off and warns
    (:class:`~captum_prior.errors.InputRangeWarning`). A shift in input units,
    unclamped, is ``data_std=1.0, clamp=None``.

    **Orientation.** A per-image Gaussian is centred on the image's mean
    feature, so positions that look like *most* of the image get the highest
    value: the background whenever it covers most of the frame, the object
    only when it fills most of it. That is what eqs. 10-14 compute
    (``variant="paper"``). The default ``variant="corrected"`` flips a map
    that anti-correlates with the layer's feature energy, so that the map is
    high on the object (:func:`~captum_prior.priors._base.orient_to_object`).

    Parameters
    ----------
    model : nn.Module
        The model being explained (or any CNN).
    layer : str or nn.Module, optional
        The layer whose ``N x C x h x w`` output is modelled. Default: None
        (the output of the last module, in execution order, whose output is
        spatial, found by running the model once on the first input; stored
        in ``layer_`` / ``layer_name_`` and shown by ``repr``).
    n_components : int or None, optional
        Reduce the rows by PCA to this many dimensions before fitting (must
        be below the number of rows). Default: None (no PCA; shrinkage)
    scale : float, optional
        The largest shift, in standard deviations of the data. Default: 1.0
    variant : {"corrected", "paper", "reference_code"}, optional
        ``"corrected"``: the map of eqs. 10-14, oriented to be high on the
        object (see above). ``"paper"``: the map as eqs. 10-14 give it.
        ``"reference_code"``: what the authors' released code computes:
        rows are the ``(C*h) x w`` reshape of the feature tensor (each row
        holds ``w`` values along the width), an unshrunk Gaussian over them
        gives one density per row, i.e. a ``C x h`` matrix that is resized
        as an image to ``H x W`` and multiplied by 10; no normalisation.
        Default: ``"corrected"``
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
    fitted_ : dict or None
        The reference-set Gaussian after :meth:`fit`, else None.

    Raises
    ------
    ValueError
        An argument out of range; at call time, ``n_components`` not below
        the number of feature rows, or (``"reference_code"``) a singular
        covariance.

    Notes
    -----
    Departures from the paper: (1) the covariance of eq. 12 is singular
    whenever ``N <= C`` (49 positions x 1280 channels on EfficientNet-Lite0);
    it is shrunk towards a scaled identity with the Ledoit-Wolf intensity
    (or, with ``n_components``, the rows are first reduced by PCA). (2) The
    paper uses the density itself and does not normalise; densities in 1280
    dimensions under- or overflow, so the log-density is min-max normalised.

    References
    ----------
    Guo and Gong, "Enhancing neural network interpretability through deep
    prior-guided expected gradients", preprint, 2025.
    O. Ledoit and M. Wolf, "A well-conditioned estimator for large-dimensional
    covariance matrices", J. Multivariate Analysis 88, 2004.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_prior.priors import MGMPrior
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
    ...                       nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    >>> prior = MGMPrior(model, layer=model[0])
    >>> x = torch.rand(2, 1, 8, 8)
    >>> m = prior.prior_map(x)
    >>> m.shape, bool(m.min() >= 0) and bool(m.max() <= 1)
    (torch.Size([2, 1, 8, 8]), True)
    """

    _variants = ("corrected", "paper", "reference_code")

    def __init__(
        self,
        model: nn.Module,
        layer: Union[str, nn.Module, None] = None,
        n_components: Optional[int] = None,
        scale: float = DEFAULT_SCALE,
        variant: str = "corrected",
        batch_size: int = 64,
        data_std: Union[float, Sequence[float], Tensor, None] = None,
        clamp: ClampType = "auto",
    ) -> None:
        super().__init__(model, layer, scale, variant, batch_size, data_std, clamp)
        self.n_components = None if n_components is None else check_int(n_components, "n_components", 1)

    def _repr_extra(self) -> str:
        return f"n_components={self.n_components!r}"

    def _fit_rows(self, rows: Tensor) -> Any:
        rows = rows.unsqueeze(0)
        if self.variant == "reference_code":
            return rows
        if self.n_components is not None:
            self._check_k(rows.shape[1])
            mu = rows.mean(1, keepdim=True)
            _, _, vh = torch.linalg.svd((rows - mu).to(torch.float64), full_matrices=False)
            basis = vh[:, : self.n_components].transpose(1, 2)
            proj = (rows - mu).to(torch.float64) @ basis
            return {"pca_mu": mu, "basis": basis, **shrunk_gaussian(proj)}
        return shrunk_gaussian(rows)

    def _check_k(self, n_rows: int) -> None:
        if self.n_components is not None and self.n_components >= n_rows:
            raise ValueError(
                f"n_components={self.n_components} must be below the number of feature "
                f"rows ({n_rows}); lower it, or fit() on a reference set"
            )

    def _maps(self, feats: Tensor, evid: Optional[Tensor]) -> Tensor:
        rows = self._rows(feats)
        grid = self._grid(feats)
        if self.variant == "reference_code":
            # one density per (channel, row) pair: a C x h map
            return self._reference_code_maps(rows, (feats.shape[1], feats.shape[2]))
        if self.fitted_ is not None:
            p = self.fitted_
            if "basis" in p:
                z = (rows.to(torch.float64) - p["pca_mu"]) @ p["basis"]
            else:
                z = rows
            logp = shrunk_gaussian_logpdf(p, z)
        elif self.n_components is not None:
            self._check_k(rows.shape[1])
            fit_z, z = pca_project(rows, rows, self.n_components)
            logp = shrunk_gaussian_logpdf(shrunk_gaussian(fit_z), z)
        else:
            logp = shrunk_gaussian_logpdf(shrunk_gaussian(rows), rows)
        return minmax(logp).view(-1, *grid).to(feats.dtype)

    def _reference_code_maps(self, rows: Tensor, grid: "tuple[int, int]") -> Tensor:
        fit = self.fitted_ if self.fitted_ is not None else None
        out = []
        for i in range(rows.shape[0]):
            r = rows[i].to(torch.float64)
            ref = fit[0].to(torch.float64) if fit is not None else r
            mu = ref.mean(0)
            cov = torch.cov(ref.T)
            try:
                dist = torch.distributions.MultivariateNormal(mu, covariance_matrix=cov)
            except (ValueError, RuntimeError):
                raise ValueError(
                    "variant='reference_code' fits an unregularised covariance (as the released "
                    "code does) and it is singular for these features; use variant='corrected'"
                ) from None
            out.append(dist.log_prob(r).exp() * 10.0)
        return torch.stack(out).view(-1, *grid).to(rows.dtype)
