r"""Joint Gaussian Mixture Model (JGMM) over two layers' features.

Implements the model of *Joint Gaussian Mixture Model for versatile deep
visual model explanation* (anonymous ICLR 2023 submission, OpenReview
``amyZRbMrUA``), eq. 1:

.. math::

    p(x, y) = \sum_i \sum_j G(x; \mu_i, \Sigma_i)\, G(y; \phi_j, \Theta_j)\,
              Q_{ij}\, \pi_j ,

with ``z`` the latent component of the lower feature ``x`` (``n_lower``
components) and ``w`` the latent component of the higher feature ``y``
(``n_higher`` components), ``Q_ij = p(z=i | w=j)``.

The spatial extension (paper §3.3, eq. 10-11) is built in: pass the lower
features as an ``N x R x D`` tensor (``R`` positions of a pooled feature map,
the "effective receptive field", each a ``D``-vector).  Then ``mu``, ``Sigma``
are shared by all positions, there is one ``Q^(r)`` per position, and the
positions are conditionally independent given ``w``:
``p(w | {x^(r)}) ∝ p(w) prod_r p(x^(r) | w)`` (eq. 11), evaluated in log space.
A 2-D ``N x D`` lower input is the plain model (``R = 1``).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from torch import Tensor

from captum_prior._kmeans import kmeans
from captum_prior._random import RandomState, torch_generator
from captum_prior._serialization import load_state, reading, save_state
from captum_prior._validation import (
    check_choice,
    check_device,
    check_finite,
    check_float,
    check_int,
    check_magnitude,
    check_variant,
)

__all__ = ["JointGaussianMixture"]

_KIND = "JointGaussianMixture"
# 2: the E-step switch is saved as ``variant``.
_FORMAT_VERSION = 2
_VARIANTS = ("corrected", "paper")
_DTYPES = {"float64": torch.float64, "float32": torch.float32}
# Shifted sums below this are recomputed by an exact log-sum-exp (see _lower_terms).
_UNDERFLOW = {torch.float64: 1e-280, torch.float32: 1e-30}
_LOG_2PI = math.log(2.0 * math.pi)

ArrayLike = Union[Tensor, np.ndarray]


# --------------------------------------------------------------------- helpers
def _log_gauss_diag(
    x: Tensor, means: Tensor, variances: Tensor, xx: Optional[Tensor] = None
) -> Tensor:
    """``log G(x_n | m_k, diag(v_k))`` for rows ``x`` (M x D) -> (M x K).

    Expanded as ``sum x^2/v - 2 x.m/v + sum m^2/v`` and evaluated as ONE
    matrix product ``[x^2, x] @ [1/v, -2 m/v]^T`` (``xx = [x^2, x]`` may be
    passed precomputed); never an ``M x K x D`` tensor.
    """
    prec = 1.0 / variances
    d = x.shape[1]
    if xx is None:
        xx = torch.cat([x * x, x], 1)
    coef = torch.cat([prec, -2.0 * means * prec], 1)  # K x 2D
    bias = -0.5 * (d * _LOG_2PI + torch.log(variances).sum(1) + (means * means * prec).sum(1))
    return torch.addmm(bias[None, :], xx, coef.T, alpha=-0.5)


def _kmeans(
    x: Tensor, k: int, gen: torch.Generator, n_iter: int = 100, tol: float = 1e-4
) -> Tensor:
    """Labels of k-means on the rows of ``x`` (:func:`captum_prior._kmeans.kmeans`).
    Only the labels are used (to initialise the mixture), so the distances
    are computed in float32."""
    return kmeans(x.to(torch.float32), k, gen, max_iter=n_iter, tol=tol)


class _Whitener:
    """PCA whitening keeping all components: ``w = (x - mean) @ components / scale``."""

    def __init__(self, mean: Tensor, components: Tensor, scale: Tensor) -> None:
        # contiguous, so that a saved and re-loaded map computes bit-identically
        self.mean = mean.contiguous()
        self.components = components.contiguous()
        self.scale = scale.contiguous()

    @classmethod
    def fit(cls, x: Tensor) -> "_Whitener":
        mean = x.mean(0)
        xc = x - mean
        cov = (xc.T @ xc) / max(x.shape[0] - 1, 1)
        evals, evecs = torch.linalg.eigh(cov)
        evals = evals.flip(0)
        evecs = evecs.flip(1)
        floor = 1e-6 * float(evals.clamp_min(0).mean()) + torch.finfo(x.dtype).tiny
        scale = torch.sqrt(evals.clamp_min(0) + floor)
        return cls(mean, evecs, scale)

    @classmethod
    def identity(cls, d: int, dtype: torch.dtype, device: torch.device) -> "_Whitener":
        return cls(
            torch.zeros(d, dtype=dtype, device=device),
            torch.eye(d, dtype=dtype, device=device),
            torch.ones(d, dtype=dtype, device=device),
        )

    def forward(self, x: Tensor) -> Tensor:
        return ((x - self.mean) @ self.components) / self.scale

    def inverse(self, w: Tensor) -> Tensor:
        return (w * self.scale) @ self.components.T + self.mean

    def log_det(self) -> float:
        """``log |det d w / d x|`` of the whitening map."""
        return -float(torch.log(self.scale).sum())


# ------------------------------------------------------------------- estimator
class JointGaussianMixture(BaseEstimator):
    r"""Joint Gaussian mixture over lower features ``X`` and higher features ``Y``.

    The model of the module docstring, fitted by EM in torch on CPU or GPU,
    with scikit-learn's estimator API (``fit``, ``predict``,
    ``predict_proba``, ``score``, ``get_params``/``set_params``): the
    constructor stores its arguments, :meth:`fit` validates them.

    Parameters
    ----------
    n_lower : int, default 32
        ``K_x``, components of the lower mixture (latent ``z``).
    n_higher : int, default 10
        ``K_y``, components of the higher mixture (latent ``w``); the number
        of classes when ``Y`` are logits.
    covariance : {"diag"}, default "diag"
        Covariance type; only diagonal (the paper's choice after whitening,
        §4.1).
    whiten : bool, default True
        PCA-whiten ``X`` and ``Y`` first, keeping every component (§4.1).
    variant : {"corrected", "paper"}, default "corrected"
        ``"corrected"``: true EM for eq. 1, with the joint
        responsibilities; ``"paper"``: the factorised E-step printed in
        App. A (eq. 15-21), whose log-likelihood can decrease (see Notes).
    max_iter : int, default 100
        Maximum EM iterations; a ``sklearn.exceptions.ConvergenceWarning``
        is raised when it ends the fit before convergence.
    tol : float, default 1e-3
        Stop when the mean log-likelihood per sample changes by less.
    n_init : int, default 1
        Initialisations; the fit with the highest log-likelihood is kept.
    reg_covar : float, default 1e-6
        Added to every variance; with 0 a constant feature of ``X`` or ``Y``
        is a ``ValueError``.
    random_state : None, int or torch.Generator, default None
        Seed of the k-means initialisation.
    device : str, torch.device or None, default None
        Where EM runs and the parameters live; ``None`` is the device of
        ``X`` if it is a tensor, else the CPU.
    dtype : {"float64", "float32"}, default "float64"
        Precision of the fit (``"float32"`` is faster, mainly on GPU).
    verbose : bool, default False
        Show a progress bar over EM iterations.

    Attributes
    ----------
    lower_means_, lower_covariances_ : Tensor of shape (K_x, D)
        Means ``mu`` and diagonal variances ``Sigma`` (whitened coordinates).
    higher_means_, higher_covariances_ : Tensor of shape (K_y, D_y)
        Means ``phi`` and variances ``Theta`` (whitened coordinates).
    weights_ : Tensor of shape (K_y,)
        Prior ``pi = p(w)``.
    Q_ : Tensor of shape (K_x, K_y) or (R, K_x, K_y)
        ``p(z=i | w=j)`` (columns sum to 1); one matrix per position for
        spatial (3-D) lower input.
    n_positions_ : int
        ``R`` (1 for 2-D lower input).
    n_features_in_, n_higher_features_in_ : int
        ``D`` and ``D_y``.
    converged_ : bool
        Whether EM met ``tol``.
    n_iter_ : int
        EM iterations of the kept initialisation.
    lower_bound_ : float
        Final mean log-likelihood per sample (whitened coordinates).
    log_likelihood_history_ : list of float
        One value per E-step.

    Raises
    ------
    ValueError
        At :meth:`fit`: an out-of-range setting, more components than rows,
        NaN or Inf, or a fit that broke down.
    TypeError
        At :meth:`fit`: a setting of the wrong type.

    Notes
    -----
    Where the implementation departs from the paper, and why:

    - **Corrected E-step (default).**  The E-step printed in App. A (eq. 15)
      uses ``g_ni ∝ (Q π)_i G(x_n|i)`` and ``h_nj ∝ π_j G(y_n|j)`` separately
      and the M-step (eq. 20-21) uses ``g_ni h_nj`` as if the joint posterior
      factorised (eq. 15 also writes ``π_j`` where ``π_r`` belongs).  That is
      not EM for eq. 1, and its log-likelihood can decrease.
      ``variant="corrected"`` uses the true joint responsibilities
      ``r_nij ∝ Q_ij π_j G(x_n|i) G(y_n|j)`` (spatially
      ``p(w | x, y) p(z^(r) | w, x^(r))``), computed without materialising
      the ``N x K_x x K_y`` tensor: per-row max-shifted densities and matrix
      products, with an exact log-sum-exp for the rare rows whose shifted
      sums would underflow.  ``variant="paper"`` reproduces eq. 15-21.
    - **Spatial EM.**  The paper does not say how the extension is trained.
      Here it is exact EM for the spatial model: ``w`` is shared by all
      ``R`` positions, ``z^(r)`` is per position; the ``mu``/``Sigma``
      statistics are pooled over positions, ``Q^(r)`` is accumulated per
      position.
    - **Whitening** (§4.1): PCA whitening keeping every component, with
      eigenvalues floored at ``1e-6`` times their mean so that
      rank-deficient features (dead ReLU channels) stay finite and the map
      stays invertible.  :meth:`score_samples` returns densities of the
      original features (the whitening Jacobian is added).
    - **Initialisation** (App. A): ``mu``/``Sigma`` from k-means on ``x``
      (positions pooled), ``phi``/``Theta`` from k-means on ``y`` or from
      given labels (:meth:`fit`); ``Q`` and ``pi`` uniform.
    - ``10 * eps`` is added to every responsibility count (as scikit-learn
      does), so no weight or ``Q`` entry is exactly 0.

    References
    ----------
    .. [1] Joint Gaussian Mixture Model for versatile deep visual model
       explanation. Anonymous ICLR 2023 submission, OpenReview amyZRbMrUA.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.proxy import JointGaussianMixture
    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.randn(60, 2, dtype=torch.float64, generator=g) + 3 * torch.arange(3.0).repeat(20)[:, None]
    >>> x = y @ torch.randn(2, 4, dtype=torch.float64, generator=g)
    >>> jg = JointGaussianMixture(n_lower=3, n_higher=3, random_state=0).fit(x, y)
    >>> jg.predict_proba(x).shape
    torch.Size([60, 3])
    >>> bool(jg.converged_)
    True
    """

    def __init__(
        self,
        n_lower: int = 32,
        n_higher: int = 10,
        covariance: str = "diag",
        whiten: bool = True,
        variant: str = "corrected",
        max_iter: int = 100,
        tol: float = 1e-3,
        n_init: int = 1,
        reg_covar: float = 1e-6,
        random_state: RandomState = None,
        device: Union[str, torch.device, None] = None,
        dtype: str = "float64",
        verbose: bool = False,
    ) -> None:
        self.n_lower = n_lower
        self.n_higher = n_higher
        self.covariance = covariance
        self.whiten = whiten
        self.variant = variant
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    # ------------------------------------------------------------ validation
    def _check_params(self) -> None:
        check_int(self.n_lower, "n_lower", 1)
        check_int(self.n_higher, "n_higher", 1)
        check_choice(self.covariance, "covariance", ("diag",))
        check_variant(self.variant, "JointGaussianMixture", _VARIANTS)
        check_choice(self.dtype, "dtype", tuple(_DTYPES))
        check_int(self.max_iter, "max_iter", 1)
        check_float(self.tol, "tol", 0.0)
        check_int(self.n_init, "n_init", 1)
        check_float(self.reg_covar, "reg_covar", 0.0)
        if not isinstance(self.whiten, bool):
            raise TypeError(f"whiten must be a bool, got {type(self.whiten).__name__}")

    def _resolve_device(self, x: Any) -> torch.device:
        if self.device is not None:
            return check_device(self.device)
        if isinstance(x, Tensor):
            return x.device
        return torch.device("cpu")

    def _as_tensor(self, a: Any, name: str, dtype: torch.dtype, device: torch.device) -> Tensor:
        if isinstance(a, np.ndarray):
            if a.dtype.kind not in "fiub":
                raise TypeError(f"{name} must hold numbers, got dtype {a.dtype}")
            a = torch.from_numpy(np.ascontiguousarray(a))
        if not isinstance(a, Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor or a numpy array, got {type(a).__name__}"
            )
        if a.is_complex():
            raise TypeError(f"{name} must be real, got {a.dtype}")
        check_finite(a, name)
        check_magnitude(a, name, dtype)
        return a.to(device=device, dtype=dtype)

    def _check_lower(self, X: Any, dtype: torch.dtype, device: torch.device, fitted: bool) -> Tensor:
        x = self._as_tensor(X, "X", dtype, device)
        if x.dim() == 2:
            x = x[:, None, :]
        elif x.dim() != 3:
            raise ValueError(
                f"X must be 2-D (n_samples x n_features) or 3-D (n_samples x "
                f"n_positions x n_features, the spatial extension), got shape {tuple(x.shape)}"
            )
        if x.shape[0] == 0 or x.shape[2] == 0:
            raise ValueError(f"X has shape {tuple(x.shape)}; it needs at least one row and one feature")
        if fitted:
            if x.shape[2] != self.n_features_in_ or x.shape[1] != self.n_positions_:
                raise ValueError(
                    f"X has {x.shape[1]} position(s) x {x.shape[2]} features but the mixture "
                    f"was fitted on {self.n_positions_} x {self.n_features_in_}; pass "
                    "features extracted the same way as in fit"
                )
        return x

    def _check_higher(self, Y: Any, n: int, dtype: torch.dtype, device: torch.device, fitted: bool) -> Tensor:
        y = self._as_tensor(Y, "Y", dtype, device)
        if y.dim() == 1:
            y = y[:, None]
        if y.dim() != 2:
            raise ValueError(
                f"Y must be 2-D (n_samples x n_higher_features), got shape {tuple(y.shape)}"
            )
        if y.shape[0] != n:
            raise ValueError(
                f"X has {n} rows but Y has {y.shape[0]}; pass the lower and higher "
                "features of the same examples, one row each"
            )
        if fitted and y.shape[1] != self.n_higher_features_in_:
            raise ValueError(
                f"Y has {y.shape[1]} features but the mixture was fitted on "
                f"{self.n_higher_features_in_}"
            )
        return y

    def _check_fitted(self) -> None:
        if not hasattr(self, "Q_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call "
                "'fit(X, Y)' (or load a saved one) before using it."
            )

    @property
    def _dt(self) -> torch.dtype:
        return self.lower_means_.dtype

    @property
    def _dev(self) -> torch.device:
        return self.lower_means_.device

    def _chunk_rows(self, r: int) -> int:
        per_row = r * max(self.n_lower, 1) + r * max(self.n_higher, 1)
        return max(1, (1 << 23) // max(per_row, 1))

    # ---------------------------------------------------------- core maths
    def _lower_terms(
        self, xw: Tensor, means: Tensor, variances: Tensor, log_q: Tensor,
        xx: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """For whitened lower rows ``xw`` (n x R x D) return

        - ``lx``: log G(x^(r) | i), n x R x K_x;
        - ``a``: its max over i, n x R x 1, and ``A = exp(lx - a)``;
        - ``log_s``: log p(x^(r) | w=j) = log sum_i Q^(r)_ij G(x^(r)|i), n x R x K_y
          (fast: max-shifted product; exact log-sum-exp where that underflows);
        - ``bad``: n x R bool mask of the rows that needed the exact path.
        """
        n, r, d = xw.shape
        xxf = None if xx is None else xx.reshape(n * r, 2 * d)
        lx = _log_gauss_diag(xw.reshape(n * r, d), means, variances, xxf).reshape(n, r, -1)
        a = lx.amax(2, keepdim=True)
        big_a = torch.exp(lx - a)
        s = torch.bmm(big_a.transpose(0, 1), log_q.exp()).transpose(0, 1)  # n x R x Ky
        bad = s.amin(2) < _UNDERFLOW[s.dtype]
        log_s = torch.log(s) + a
        if bool(bad.any()):
            nb, rb = bad.nonzero(as_tuple=True)
            exact = torch.logsumexp(lx[nb, rb][:, :, None] + log_q[rb], dim=1)
            log_s[nb, rb] = exact
        return lx, a, big_a, log_s, bad

    def _estep_stats(
        self, xw: Tensor, yw: Tensor, p: Dict[str, Tensor], paper: bool,
        xx: Optional[Tensor] = None, yy: Optional[Tensor] = None,
    ) -> Dict[str, Tensor]:
        """One E-step over all rows (chunked); returns sufficient statistics and
        the summed log-likelihood.  ``xx = [xw^2, xw]`` and ``yy = [yw^2, yw]``
        may be passed precomputed (they are constant during a fit)."""
        n, r, d = xw.shape
        if xx is None:
            xx = torch.cat([xw * xw, xw], 2)
        if yy is None:
            yy = torch.cat([yw * yw, yw], 1)
        kx, ky = p["log_q"].shape[1], p["log_q"].shape[2]
        dt, dev = xw.dtype, xw.device
        st = {
            "nz": torch.zeros(kx, dtype=dt, device=dev),
            "sxx_sx": torch.zeros(kx, 2 * d, dtype=dt, device=dev),
            "nw": torch.zeros(ky, dtype=dt, device=dev),
            "syy_sy": torch.zeros(ky, 2 * yw.shape[1], dtype=dt, device=dev),
            "nq": torch.zeros(r, kx, ky, dtype=dt, device=dev),
            "ll": torch.zeros((), dtype=dt, device=dev),
        }
        q = p["log_q"].exp()
        log_pi = p["log_pi"]
        step = self._chunk_rows(r)
        for s0 in range(0, n, step):
            xc, yc = xw[s0 : s0 + step], yw[s0 : s0 + step]
            xxc, yyc = xx[s0 : s0 + step], yy[s0 : s0 + step]
            m = xc.shape[0]
            lx, a, big_a, log_s, bad = self._lower_terms(xc, p["mu"], p["var"], p["log_q"], xxc)
            ly = _log_gauss_diag(yc, p["phi"], p["theta"], yyc)
            log_joint = log_pi + ly + log_s.sum(1)  # m x Ky
            ll = torch.logsumexp(log_joint, 1)
            st["ll"] += ll.sum()
            if paper:
                # App. A eq. 15: g from the marginal prior of z, h from y only.
                log_lam = torch.logsumexp(p["log_q"] + log_pi, 2)  # R x Kx
                g = torch.softmax(lx + log_lam, 2)  # m x R x Kx
                h = torch.softmax(log_pi + ly, 1)  # m x Ky
                z, wgt = g, h
                st["nq"] += torch.einsum("nri,nj->rij", g, h)
            else:
                log_w = log_joint - ll[:, None]
                wgt = torch.exp(log_w)  # p(w | x, y), m x Ky
                # ratio = p(w=j|x,y) / S_scaled(n, r, j), where S_scaled = exp(log_s - a)
                log_s_scaled = log_s - a
                ratio = torch.exp(log_w[:, None, :] - log_s_scaled)
                ratio = torch.where(torch.isfinite(log_s_scaled), ratio, torch.zeros_like(ratio))
                a_fast = big_a.masked_fill(bad[:, :, None], 0.0) if bool(bad.any()) else big_a
                # p(z^(r)=i | x, y) = A_nri * sum_j Q_rij ratio_nrj
                z = a_fast * torch.bmm(ratio.transpose(0, 1), q.transpose(1, 2)).transpose(0, 1)
                st["nq"] += q * torch.bmm(a_fast.permute(1, 2, 0), ratio.transpose(0, 1))
                if bool(bad.any()):
                    nb, rb = bad.nonzero(as_tuple=True)
                    t = torch.exp(
                        log_w[nb][:, None, :]
                        + lx[nb, rb][:, :, None]
                        + p["log_q"][rb]
                        - log_s[nb, rb][:, None, :]
                    )  # nbad x Kx x Ky
                    z[nb, rb] = t.sum(2)
                    st["nq"].index_add_(0, rb, t)
            zf = z.reshape(m * r, kx)
            st["nz"] += zf.sum(0)
            st["sxx_sx"] += zf.T @ xxc.reshape(m * r, 2 * d)
            st["nw"] += wgt.sum(0)
            st["syy_sy"] += wgt.T @ yyc
        d_y = yw.shape[1]
        st["sxx"], st["sx"] = st["sxx_sx"][:, :d], st["sxx_sx"][:, d:]
        st["syy"], st["sy"] = st["syy_sy"][:, :d_y], st["syy_sy"][:, d_y:]
        return st

    def _mstep(self, st: Dict[str, Tensor], n: int) -> Dict[str, Tensor]:
        eps = 10.0 * torch.finfo(st["nz"].dtype).eps
        reg = float(self.reg_covar)
        nz = st["nz"] + eps
        mu = st["sx"] / nz[:, None]
        var = (st["sxx"] / nz[:, None] - mu * mu).clamp_min(0) + reg
        nw = st["nw"] + eps
        phi = st["sy"] / nw[:, None]
        theta = (st["syy"] / nw[:, None] - phi * phi).clamp_min(0) + reg
        pi = nw / nw.sum()
        nq = st["nq"] + eps
        q = nq / nq.sum(1, keepdim=True)
        return {
            "mu": mu, "var": var, "phi": phi, "theta": theta,
            "log_pi": torch.log(pi), "log_q": torch.log(q),
        }

    def _init_params(
        self, xw: Tensor, yw: Tensor, gen: torch.Generator, higher_labels: Optional[Tensor]
    ) -> Dict[str, Tensor]:
        n, r, d = xw.shape
        kx, ky = int(self.n_lower), int(self.n_higher)
        eps = 10.0 * torch.finfo(xw.dtype).eps
        reg = float(self.reg_covar)

        def from_labels(v: Tensor, lab: Tensor, k: int) -> Tuple[Tensor, Tensor]:
            one = torch.zeros(v.shape[0], k, dtype=v.dtype, device=v.device)
            one[torch.arange(v.shape[0], device=v.device), lab] = 1.0
            cnt = one.sum(0)
            nk = cnt + eps
            mean = (one.T @ v) / nk[:, None]
            var = ((one.T @ (v * v)) / nk[:, None] - mean * mean).clamp_min(0) + reg
            empty = cnt == 0
            if bool(empty.any()):  # a label never used: start at random rows
                idx = torch.randint(0, v.shape[0], (int(empty.sum()),), generator=gen)
                mean[empty] = v[idx.to(v.device)]
                var[empty] = v.var(0, unbiased=False) + reg
            return mean, var

        xf = xw.reshape(n * r, d)
        mu, var = from_labels(xf, _kmeans(xf, kx, gen), kx)
        if higher_labels is not None:
            phi, theta = from_labels(yw, higher_labels, ky)
        else:
            phi, theta = from_labels(yw, _kmeans(yw, ky, gen), ky)
        dt, dev = xw.dtype, xw.device
        return {
            "mu": mu, "var": var, "phi": phi, "theta": theta,
            "log_pi": torch.full((ky,), -math.log(ky), dtype=dt, device=dev),
            "log_q": torch.full((r, kx, ky), -math.log(kx), dtype=dt, device=dev),
        }

    # -------------------------------------------------------------- fitting
    def fit(self, X: ArrayLike, Y: ArrayLike, higher_labels: Optional[ArrayLike] = None) -> "JointGaussianMixture":
        r"""Fit the mixture by EM (App. A) on paired lower/higher features.

        Parameters
        ----------
        X : Tensor or ndarray
            Lower features, ``N x D``, or ``N x R x D`` for the spatial
            extension (``R`` positions sharing ``mu``/``Sigma``, one
            ``Q^(r)`` each).
        Y : Tensor or ndarray
            Higher features, ``N x D_y`` (e.g. logits).
        higher_labels : Tensor or ndarray or None, default None
            ``N`` integer labels in ``0..n_higher-1`` that replace k-means on
            ``Y`` for initialising the higher mixture (e.g. the model's
            predicted classes, so that component ``j`` starts at class
            ``j``); ``None`` is k-means, as in the paper.

        Returns
        -------
        JointGaussianMixture
            ``self``, fitted.

        Raises
        ------
        ValueError
            An out-of-range setting, more components than rows, NaN or Inf,
            labels out of range, or a fit that broke down.
        TypeError
            A setting of the wrong type, or float ``higher_labels``.

        Warns
        -----
        sklearn.exceptions.ConvergenceWarning
            ``max_iter`` ended the fit before convergence.
        """
        self._check_params()
        dev = self._resolve_device(X)
        dt = _DTYPES[self.dtype]
        x = self._check_lower(X, dt, dev, fitted=False)
        n, r, d = x.shape
        y = self._check_higher(Y, n, dt, dev, fitted=False)
        kx, ky = int(self.n_lower), int(self.n_higher)
        if kx > n * r:
            raise ValueError(
                f"n_lower={kx} components but only {n * r} lower feature vectors; "
                "use fewer components or more samples"
            )
        if ky > n:
            raise ValueError(
                f"n_higher={ky} components but only {n} samples; use fewer "
                "components or more samples"
            )
        if float(self.reg_covar) == 0.0:
            for t, name in ((x.reshape(n * r, d), "X"), (y, "Y")):
                const = torch.nonzero(t.amax(0) == t.amin(0)).flatten().tolist()
                if const:
                    raise ValueError(
                        f"{name} has {len(const)} constant feature(s) (columns {const[:10]}); "
                        "with reg_covar=0 their variance is zero and every probability "
                        f"would be NaN: keep reg_covar > 0 (default 1e-6) or drop them"
                    )
        labels = None
        if higher_labels is not None:
            lab = higher_labels
            if isinstance(lab, np.ndarray):
                lab = torch.from_numpy(lab)
            if not isinstance(lab, Tensor) or lab.is_floating_point() or lab.dim() != 1:
                raise TypeError("higher_labels must be a 1-D integer tensor or array")
            if lab.shape[0] != n:
                raise ValueError(f"higher_labels has {lab.shape[0]} entries for {n} rows")
            if n and (int(lab.min()) < 0 or int(lab.max()) >= ky):
                raise ValueError(f"higher_labels must lie in 0..{ky - 1} (n_higher={ky})")
            labels = lab.to(dev, torch.long)

        if self.whiten:
            wx = _Whitener.fit(x.reshape(n * r, d))
            wy = _Whitener.fit(y)
        else:
            wx = _Whitener.identity(d, dt, dev)
            wy = _Whitener.identity(y.shape[1], dt, dev)
        xw = wx.forward(x.reshape(n * r, d)).reshape(n, r, d)
        yw = wy.forward(y)

        gen = torch_generator(self.random_state)
        best: Optional[Tuple[float, Dict[str, Tensor], list, bool, int]] = None
        for _ in range(int(self.n_init)):
            params = self._init_params(xw, yw, gen, labels)
            res = self._em(xw, yw, params)
            if best is None or res[0] > best[0]:
                best = res
        assert best is not None
        lower_bound, params, history, converged, n_iter = best
        if not math.isfinite(lower_bound) or not all(bool(torch.isfinite(v).all()) for v in params.values()):
            raise ValueError(
                "the EM fit broke down (a NaN or infinite likelihood): a component "
                "collapsed onto identical rows of X or Y. Raise reg_covar (now "
                f"{self.reg_covar:g}; default 1e-6), drop constant or duplicated "
                "features, or rescale X and Y"
            )
        if not converged:
            warnings.warn(
                f"JointGaussianMixture did not converge in max_iter={self.max_iter} "
                f"iterations (last change of the mean log-likelihood above tol={self.tol}); "
                "increase max_iter or tol, or check the data",
                ConvergenceWarning,
                stacklevel=2,
            )
        self._set_params(params, wx, wy)
        self.n_positions_ = r
        self.n_features_in_ = d
        self.n_higher_features_in_ = int(y.shape[1])
        self.converged_ = bool(converged)
        self.n_iter_ = int(n_iter)
        self.lower_bound_ = float(lower_bound)
        self.log_likelihood_history_ = list(history)
        return self

    def _em(self, xw: Tensor, yw: Tensor, params: Dict[str, Tensor]) -> Tuple[float, Dict[str, Tensor], list, bool, int]:
        from tqdm.auto import tqdm

        n = xw.shape[0]
        paper = self.variant == "paper"
        xx = torch.cat([xw * xw, xw], 2)
        yy = torch.cat([yw * yw, yw], 1)
        history: list = []
        converged = False
        prev = -math.inf
        bar = tqdm(range(int(self.max_iter)), disable=not self.verbose, desc="JGMM EM")
        for _ in bar:
            st = self._estep_stats(xw, yw, params, paper, xx, yy)
            ll = float(st["ll"]) / n
            history.append(ll)
            params = self._mstep(st, n)
            if self.verbose:
                bar.set_postfix(loglik=f"{ll:.4f}")
            if abs(ll - prev) < float(self.tol):
                converged = True
                break
            prev = ll
        bar.close()
        return history[-1], params, history, converged, len(history)

    def _set_params(self, p: Dict[str, Tensor], wx: _Whitener, wy: _Whitener) -> None:
        p = {k: v.contiguous() for k, v in p.items()}
        self.lower_means_ = p["mu"]
        self.lower_covariances_ = p["var"]
        self.higher_means_ = p["phi"]
        self.higher_covariances_ = p["theta"]
        self.weights_ = p["log_pi"].exp()
        q = p["log_q"].exp()
        self._log_q = p["log_q"]
        self._log_pi = p["log_pi"]
        self._wx, self._wy = wx, wy
        self.Q_ = q[0] if q.shape[0] == 1 else q
        # Psi_ij = p(w=j | z=i) (eq. 2), per position
        psi = torch.softmax(p["log_q"] + p["log_pi"], 2)
        self.Psi_ = psi[0] if psi.shape[0] == 1 else psi

    @property
    def _params(self) -> Dict[str, Tensor]:
        return {
            "mu": self.lower_means_, "var": self.lower_covariances_,
            "phi": self.higher_means_, "theta": self.higher_covariances_,
            "log_pi": self._log_pi, "log_q": self._log_q,
        }

    # ------------------------------------------------------------ whitening
    def whiten_lower(self, X: ArrayLike) -> ArrayLike:
        """Map lower features to the whitened coordinates the mixture lives in.

        Parameters
        ----------
        X : Tensor or ndarray
            ``N x D`` or ``N x R x D`` lower features.

        Returns
        -------
        Tensor or ndarray
            Same shape and type as ``X``.
        """
        self._check_fitted()
        x = self._check_lower(X, self._dt, self._dev, fitted=True)
        n, r, d = x.shape
        out = self._wx.forward(x.reshape(n * r, d)).reshape(n, r, d)
        return self._out(out if _is3d(X) else out[:, 0], X)

    def unwhiten_lower(self, W: ArrayLike) -> ArrayLike:
        """Inverse of :meth:`whiten_lower`.

        Parameters
        ----------
        W : Tensor or ndarray
            Whitened lower features, last dimension ``D``.

        Returns
        -------
        Tensor or ndarray
            Features in the original coordinates, same shape as ``W``.
        """
        self._check_fitted()
        w = self._as_tensor(W, "W", self._dt, self._dev)
        shape = w.shape
        out = self._wx.inverse(w.reshape(-1, shape[-1])).reshape(shape)
        return self._out(out, W)

    def whiten_higher(self, Y: ArrayLike) -> ArrayLike:
        """Map higher features to whitened coordinates.

        Parameters
        ----------
        Y : Tensor or ndarray
            ``N x D_y`` higher features.

        Returns
        -------
        Tensor or ndarray
            ``N x D_y`` whitened features.
        """
        self._check_fitted()
        y = self._as_tensor(Y, "Y", self._dt, self._dev)
        y2 = y[:, None] if y.dim() == 1 else y
        return self._out(self._wy.forward(y2), Y)

    def unwhiten_higher(self, W: ArrayLike) -> ArrayLike:
        """Inverse of :meth:`whiten_higher`.

        Parameters
        ----------
        W : Tensor or ndarray
            ``N x D_y`` whitened higher features.

        Returns
        -------
        Tensor or ndarray
            ``N x D_y`` features in the original coordinates.
        """
        self._check_fitted()
        w = self._as_tensor(W, "W", self._dt, self._dev)
        return self._out(self._wy.inverse(w), W)

    @staticmethod
    def _out(t: Tensor, like: Any) -> ArrayLike:
        if isinstance(like, np.ndarray):
            return t.detach().cpu().numpy()
        return t

    def _whitened_lower(self, X: Any) -> Tensor:
        self._check_fitted()
        x = self._check_lower(X, self._dt, self._dev, fitted=True)
        n, r, d = x.shape
        return self._wx.forward(x.reshape(n * r, d)).reshape(n, r, d)

    def _chunks(self, n: int):
        step = self._chunk_rows(self.n_positions_)
        for s0 in range(0, n, step):
            yield slice(s0, min(n, s0 + step))

    def _log_lower_given_higher_w(self, xw: Tensor) -> Tensor:
        """log p(x^(r) | w=j) in whitened coordinates, n x R x K_y."""
        p = self._params
        return torch.cat(
            [self._lower_terms(xw[sl], p["mu"], p["var"], p["log_q"])[3] for sl in self._chunks(xw.shape[0])]
        )

    # ------------------------------------------------------------ inference
    def log_prob_given_higher(self, X: ArrayLike) -> ArrayLike:
        r"""``log p(x | w=j)`` for every ``j`` (eq. 4, the prototype score).

        In the original feature coordinates; spatially,
        ``log p({x^(r)} | w) = sum_r log p(x^(r) | w)`` (eq. 10).

        Parameters
        ----------
        X : Tensor or ndarray
            ``N x D`` or ``N x R x D`` lower features.

        Returns
        -------
        Tensor or ndarray
            ``N x K_y``, of the type of ``X``.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        """
        xw = self._whitened_lower(X)
        out = self._log_lower_given_higher_w(xw).sum(1) + self.n_positions_ * self._wx.log_det()
        return self._out(out, X)

    def predict_proba(self, X: ArrayLike) -> ArrayLike:
        r"""``p(w=j | x)``, the proxy model's posterior (eq. 3; eq. 11 spatially).

        Parameters
        ----------
        X : Tensor or ndarray
            ``N x D`` or ``N x R x D`` lower features.

        Returns
        -------
        Tensor or ndarray
            ``N x K_y``, rows summing to 1, of the type of ``X``.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.

        Examples
        --------
        >>> import torch
        >>> from captum_prior.proxy import JointGaussianMixture
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randn(60, 2, dtype=torch.float64, generator=g) + 3 * torch.arange(3.0).repeat(20)[:, None]
        >>> x = y @ torch.randn(2, 4, dtype=torch.float64, generator=g)
        >>> jg = JointGaussianMixture(n_lower=3, n_higher=3, random_state=0).fit(x, y)
        >>> jg.predict_proba(x[:2]).sum(1)
        tensor([1., 1.], dtype=torch.float64)
        """
        xw = self._whitened_lower(X)
        lp = self._log_lower_given_higher_w(xw).sum(1) + self._log_pi
        return self._out(torch.softmax(lp, 1), X)

    def predict(self, X: ArrayLike) -> ArrayLike:
        """``argmax_j p(w=j | x)``: the proxy model's higher component.

        Parameters
        ----------
        X : Tensor or ndarray
            ``N x D`` or ``N x R x D`` lower features.

        Returns
        -------
        Tensor or ndarray
            ``(N,)`` component indices, of the type of ``X``.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        """
        proba = self.predict_proba(X)
        if isinstance(proba, np.ndarray):
            return proba.argmax(1)
        return proba.argmax(1)

    def predict_lower_proba(self, X: ArrayLike) -> ArrayLike:
        r"""``p(z=i | x)`` with prior ``λ = Q π`` (eq. 2).

        Parameters
        ----------
        X : Tensor or ndarray
            ``N x D`` or ``N x R x D`` lower features.

        Returns
        -------
        Tensor or ndarray
            ``N x K_x`` (``N x R x K_x`` spatially, one posterior per position), of the type of ``X``.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        """
        xw = self._whitened_lower(X)
        p = self._params
        log_lam = torch.logsumexp(p["log_q"] + p["log_pi"], 2)  # R x Kx
        n, r, d = xw.shape
        lx = _log_gauss_diag(xw.reshape(n * r, d), p["mu"], p["var"]).reshape(n, r, -1)
        out = torch.softmax(lx + log_lam, 2)
        return self._out(out if _is3d(X) else out[:, 0], X)

    def log_prob_lower_components(self, X: ArrayLike) -> ArrayLike:
        r"""``log G(x^(r) | mu_i, Sigma_i)`` of each lower component (original coordinates).

        Parameters
        ----------
        X : Tensor or ndarray
            ``N x D`` or ``N x R x D`` lower features.

        Returns
        -------
        Tensor or ndarray
            ``N x K_x`` (``N x R x K_x`` spatially), of the type of ``X``.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        """
        xw = self._whitened_lower(X)
        n, r, d = xw.shape
        lx = _log_gauss_diag(xw.reshape(n * r, d), self.lower_means_, self.lower_covariances_)
        out = lx.reshape(n, r, -1) + self._wx.log_det()
        return self._out(out if _is3d(X) else out[:, 0], X)

    def predict_higher_proba(self, Y: ArrayLike) -> ArrayLike:
        r"""``p(w=j | y)`` from the higher features alone.

        Parameters
        ----------
        Y : Tensor or ndarray
            ``N x D_y`` higher features.

        Returns
        -------
        Tensor or ndarray
            ``N x K_y``, rows summing to 1.
        """
        self._check_fitted()
        y = self._check_higher(Y, _nrows(Y), self._dt, self._dev, fitted=True)
        ly = _log_gauss_diag(self._wy.forward(y), self.higher_means_, self.higher_covariances_)
        return self._out(torch.softmax(ly + self._log_pi, 1), Y)

    def predict_lower_proba_from_higher(self, Y: ArrayLike) -> ArrayLike:
        r"""``p(z=i | y)`` (eq. 3, second part).

        Parameters
        ----------
        Y : Tensor or ndarray
            ``N x D_y`` higher features.

        Returns
        -------
        Tensor or ndarray
            ``N x K_x`` (``N x R x K_x`` spatially).
        """
        self._check_fitted()
        y = self._check_higher(Y, _nrows(Y), self._dt, self._dev, fitted=True)
        yw = self._wy.forward(y)
        ly = _log_gauss_diag(yw, self.higher_means_, self.higher_covariances_)
        h = torch.softmax(ly + self._log_pi, 1)  # p(w | y)
        out = torch.einsum("rij,nj->nri", self._log_q.exp(), h)
        return self._out(out if self.n_positions_ > 1 else out[:, 0], Y)

    def score_samples(self, X: ArrayLike, Y: Optional[ArrayLike] = None) -> ArrayLike:
        r"""Per-sample log-likelihood in the original coordinates.

        Parameters
        ----------
        X : Tensor or ndarray
            ``N x D`` or ``N x R x D`` lower features.
        Y : Tensor or ndarray or None, default None
            ``N x D_y`` higher features; ``None`` gives the lower marginal.

        Returns
        -------
        Tensor or ndarray
            ``(N,)``: ``log p(x, y)`` (eq. 1), or ``log p(x)``.
        """
        xw = self._whitened_lower(X)
        n = xw.shape[0]
        lp = self._log_lower_given_higher_w(xw).sum(1) + self._log_pi
        jac = self.n_positions_ * self._wx.log_det()
        if Y is not None:
            y = self._check_higher(Y, n, self._dt, self._dev, fitted=True)
            yw = self._wy.forward(y)
            lp = lp + _log_gauss_diag(yw, self.higher_means_, self.higher_covariances_)
            jac += self._wy.log_det()
        return self._out(torch.logsumexp(lp, 1) + jac, X)

    def score(self, X: ArrayLike, Y: Optional[ArrayLike] = None) -> float:
        """Mean log-likelihood per sample (see :meth:`score_samples`).

        Parameters
        ----------
        X : Tensor or ndarray
            Lower features.
        Y : Tensor or ndarray or None, default None
            Higher features.

        Returns
        -------
        float
        """
        s = self.score_samples(X, Y)
        return float(s.mean())

    # ------------------------------------------------------------- sampling
    def sample(
        self,
        n_samples: int = 1,
        higher_component: Optional[int] = None,
        lower_component: Any = None,
        random_state: Any = None,
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""Draw from the joint model (ancestral sampling).

        Parameters
        ----------
        n_samples : int, default 1
            Number of draws.
        higher_component : int or None, default None
            Fix ``w = j``: the lower part is then a draw from ``p(x | w=j)``
            (eq. 4, sampled prototypes); ``None`` draws ``w ~ pi``.
        lower_component : int, sequence of R ints, or None, default None
            Fix ``z^(r)`` (one index for every position, or one per
            position): ``x^(r) ~ G(mu_i, Sigma_i)``, and ``w`` is drawn from
            ``p(w | z)``.  Used for counterfactuals and semi-factuals.
        random_state : None, int or torch.Generator, default None
            Seed; the same int gives the same draws.

        Returns
        -------
        tuple of Tensor
            ``(X, Y, w, z)``: lower features in the original coordinates
            (``n x D`` or ``n x R x D``), higher features ``n x D_y``, the
            drawn ``w`` (``n``) and ``z`` (``n x R``).

        Raises
        ------
        ValueError
            Both components fixed, or a component out of range.

        Examples
        --------
        >>> import torch
        >>> from captum_prior.proxy import JointGaussianMixture
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randn(60, 2, dtype=torch.float64, generator=g) + 3 * torch.arange(3.0).repeat(20)[:, None]
        >>> x = y @ torch.randn(2, 4, dtype=torch.float64, generator=g)
        >>> jg = JointGaussianMixture(n_lower=3, n_higher=3, random_state=0).fit(x, y)
        >>> xs, ys, w, z = jg.sample(5, higher_component=1, random_state=0)
        >>> xs.shape, w.tolist()
        (torch.Size([5, 4]), [1, 1, 1, 1, 1])
        """
        self._check_fitted()
        n = check_int(n_samples, "n_samples", 1)
        if higher_component is not None and lower_component is not None:
            raise ValueError("fix at most one of higher_component and lower_component")
        gen = torch_generator(random_state)
        r, kx, ky = self.n_positions_, int(self.lower_means_.shape[0]), int(self.weights_.shape[0])
        q = self._log_q.exp().cpu()  # R x Kx x Ky
        if lower_component is not None:
            zc = torch.as_tensor(lower_component, dtype=torch.long).reshape(-1)
            if zc.numel() == 1:
                zc = zc.expand(r)
            if zc.numel() != r or int(zc.min()) < 0 or int(zc.max()) >= kx:
                raise ValueError(
                    f"lower_component must be one index or {r} indices in 0..{kx - 1}"
                )
            z = zc[None, :].expand(n, r).clone()
            logw = self._log_pi.cpu() + self._log_q.cpu()[torch.arange(r), zc].sum(0)
            w = torch.multinomial(torch.softmax(logw, 0), n, replacement=True, generator=gen)
        else:
            if higher_component is not None:
                j = check_int(higher_component, "higher_component", 0, ky - 1)
                w = torch.full((n,), j, dtype=torch.long)
            else:
                w = torch.multinomial(self.weights_.cpu(), n, replacement=True, generator=gen)
            # z^(r) ~ Q^(r)[:, w] for each position
            probs = q.permute(0, 2, 1)[:, w]  # R x n x Kx
            z = torch.multinomial(probs.reshape(r * n, kx), 1, generator=gen).reshape(r, n).T
        d = self.n_features_in_
        eps_x = torch.randn(n, r, d, generator=gen, dtype=self._dt).to(self._dev)
        mu, var = self.lower_means_, self.lower_covariances_
        zd = z.to(self._dev)
        xw = mu[zd] + eps_x * var[zd].sqrt()
        x = self._wx.inverse(xw.reshape(n * r, d)).reshape(n, r, d)
        eps_y = torch.randn(n, self.n_higher_features_in_, generator=gen, dtype=self._dt).to(self._dev)
        wd = w.to(self._dev)
        yw = self.higher_means_[wd] + eps_y * self.higher_covariances_[wd].sqrt()
        y = self._wy.inverse(yw)
        if r == 1:
            x = x[:, 0]
        return x, y, wd, zd

    # -------------------------------------------------------- save and load
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the fitted mixture to a safetensors file (loading runs no code).

        The write is atomic.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write; its folder must exist.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        FileNotFoundError
            The folder does not exist.
        """
        self._check_fitted()
        tensors = {
            "lower_means": self.lower_means_, "lower_covariances": self.lower_covariances_,
            "higher_means": self.higher_means_, "higher_covariances": self.higher_covariances_,
            "log_pi": self._log_pi, "log_q": self._log_q,
            "wx_mean": self._wx.mean, "wx_components": self._wx.components, "wx_scale": self._wx.scale,
            "wy_mean": self._wy.mean, "wy_components": self._wy.components, "wy_scale": self._wy.scale,
        }
        params = self.get_params()
        rs = params.get("random_state")
        params["random_state"] = rs if isinstance(rs, (int, type(None))) else None
        params["device"] = None if params.get("device") is None else str(params["device"])
        meta = {
            "params": params,
            "n_positions": self.n_positions_,
            "n_features_in": self.n_features_in_,
            "n_higher_features_in": self.n_higher_features_in_,
            "converged": self.converged_,
            "n_iter": self.n_iter_,
            "lower_bound": self.lower_bound_,
            "log_likelihood_history": self.log_likelihood_history_,
        }
        save_state(path, _KIND, _FORMAT_VERSION, tensors, meta)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], device: Union[str, torch.device, None] = None) -> "JointGaussianMixture":
        """Read a mixture written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`save`.
        device : str, torch.device or None, default None
            Where the parameters are put; ``None`` is the CPU.

        Returns
        -------
        JointGaussianMixture
            The fitted mixture.

        Raises
        ------
        FileNotFoundError
            No such file.
        captum_prior.errors.FileFormatError
            The file is damaged, holds another kind of object or another
            format version (a ``ValueError``).
        """
        check_device(device)
        t, meta = load_state(path, _KIND, (_FORMAT_VERSION,))
        with reading(path):
            return cls._from_state(t, meta, device)

    @classmethod
    def _from_state(cls, t: Dict[str, Tensor], meta: Dict[str, Any], device: Any) -> "JointGaussianMixture":
        params = dict(meta["params"])
        params["device"] = device if device is not None else None
        est = cls(**params)
        dev = torch.device(device) if device is not None else torch.device("cpu")
        t = {k: v.to(dev) for k, v in t.items()}
        p = {
            "mu": t["lower_means"], "var": t["lower_covariances"],
            "phi": t["higher_means"], "theta": t["higher_covariances"],
            "log_pi": t["log_pi"], "log_q": t["log_q"],
        }
        wx = _Whitener(t["wx_mean"], t["wx_components"], t["wx_scale"])
        wy = _Whitener(t["wy_mean"], t["wy_components"], t["wy_scale"])
        est._set_params(p, wx, wy)
        est.n_positions_ = int(meta["n_positions"])
        est.n_features_in_ = int(meta["n_features_in"])
        est.n_higher_features_in_ = int(meta["n_higher_features_in"])
        est.converged_ = bool(meta["converged"])
        est.n_iter_ = int(meta["n_iter"])
        est.lower_bound_ = float(meta["lower_bound"])
        est.log_likelihood_history_ = list(meta["log_likelihood_history"])
        return est


def _is3d(a: Any) -> bool:
    return hasattr(a, "ndim") and a.ndim == 3


def _nrows(a: Any) -> int:
    return int(a.shape[0]) if hasattr(a, "shape") and len(a.shape) else 0
