"""A batched variational Bayesian Gaussian mixture in torch.

:class:`BatchedBayesianGMM` fits one variational Bayesian Gaussian mixture
*per batch element* of ``X`` (``B x N x D``): the ``N`` feature rows of each of
``B`` images, all at once, on ``X``'s device.  The model, the priors and the
updates are those of scikit-learn's ``BayesianGaussianMixture`` (Bishop 2006,
§10.2; Blei & Jordan 2006 for the Dirichlet-process stick-breaking weights),
so that on the same initialisation the two give the same lower bound and the
same responsibilities (``tests/test_vbgmm.py``):

- weights: a truncated Dirichlet process (stick-breaking Beta posteriors,
  ``weight_concentration_prior_type="dirichlet_process"``) or a Dirichlet
  distribution (``"dirichlet_distribution"``); the concentration prior
  defaults to ``1 / n_components``;
- means: a Gaussian prior centred on the image's row mean, precision prior 1;
- precisions: a Wishart prior with ``D`` degrees of freedom whose scale is the
  rows' empirical covariance (``"full"``) or variance (``"diag"``);
- initialisation: k-means (greedy k-means++ seeding and Lloyd iterations),
  seeded with a ``torch.Generator``, or given responsibilities;
- coordinate ascent until the lower bound changes by less than ``tol`` or
  ``max_iter`` iterations.  Each image stops on its own: once converged its
  parameters are frozen while the others continue, as if fitted alone.

The lower bound is scikit-learn's (up to the same additive constant).
Only ``"full"`` and ``"diag"`` covariances are implemented.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor

from captum_prior._validation import check_choice, check_float, check_int

COVARIANCE_TYPES = ("full", "diag")
WEIGHT_PRIORS = ("dirichlet_process", "dirichlet_distribution")
INITS = ("kmeans", "random")


def make_generator(random_state: Union[int, torch.Generator, None], device: torch.device) -> torch.Generator:
    """A generator on ``device`` from an int seed, a generator, or None (fresh seed)."""
    if isinstance(random_state, torch.Generator):
        return random_state
    g = torch.Generator(device=device)
    if random_state is None:
        g.seed()
    else:
        g.manual_seed(int(random_state))
    return g


def kmeans_labels(x: Tensor, k: int, generator: torch.Generator, max_iter: int = 100) -> Tensor:
    """Batched k-means: greedy k-means++ seeding (``2 + log k`` candidates per
    centre, as scikit-learn) and Lloyd iterations until no label changes.

    ``x`` is ``B x N x D``; returns the ``B x N`` labels."""
    b, n, _ = x.shape
    ar = torch.arange(b, device=x.device)
    trials = 2 + int(math.log(k))
    first = torch.randint(n, (b,), generator=generator, device=x.device)
    centres = [x[ar, first]]
    d2 = ((x - centres[0][:, None]) ** 2).sum(-1)  # B x N
    for _ in range(1, k):
        w = d2.clamp_min(0) + 1e-300
        cand = torch.multinomial(w, trials, replacement=True, generator=generator)  # B x T
        cx = x[ar[:, None], cand]  # B x T x D
        cd = torch.cdist(cx, x) ** 2  # B x T x N
        pot = torch.minimum(cd, d2[:, None]).sum(-1)  # B x T
        best = pot.argmin(1)
        centres.append(cx[ar, best])
        d2 = torch.minimum(d2, cd[ar, best])
    c = torch.stack(centres, 1)  # B x K x D
    labels = torch.cdist(x, c).argmin(-1)
    for _ in range(max_iter):
        onehot = torch.nn.functional.one_hot(labels, k).to(x.dtype)  # B x N x K
        cnt = onehot.sum(1)  # B x K
        s = onehot.transpose(1, 2) @ x
        c = torch.where(cnt[..., None] > 0, s / cnt.clamp_min(1)[..., None], c)
        new = torch.cdist(x, c).argmin(-1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels


class BatchedBayesianGMM:
    r"""Variational Bayesian Gaussian mixtures, one per batch element.

    Args:
        n_components (int, optional): truncation level / number of components.
                    Default: 5
        covariance_type (str, optional): ``"full"`` or ``"diag"``. Default: ``"full"``
        tol (float, optional): convergence threshold on the change of the lower
                    bound. Default: 1e-3 (scikit-learn's)
        reg_covar (float, optional): added to the covariance diagonals.
                    Default: 1e-6
        max_iter (int, optional): cap on the coordinate-ascent iterations.
                    Default: 100
        weight_concentration_prior_type (str, optional): ``"dirichlet_process"``
                    or ``"dirichlet_distribution"``. Default: ``"dirichlet_process"``
        weight_concentration_prior (float, optional): Default: None (``1/K``)
        mean_precision_prior (float, optional): Default: None (1.0)
        degrees_of_freedom_prior (float, optional): Default: None (``D``)
        init (str, optional): ``"kmeans"`` or ``"random"`` responsibilities.
                    Default: ``"kmeans"``
        random_state (int or torch.Generator, optional): seed of the
                    initialisation. Default: None
        dtype (torch.dtype, optional): the dtype the fit runs in.
                    Default: ``torch.float64``

    Fitted attributes (leading dimension ``B``): ``weight_concentration_``
    (a pair for the Dirichlet process), ``mean_precision_``, ``means_``,
    ``degrees_of_freedom_``, ``covariances_``, ``precisions_cholesky_``,
    ``lower_bound_``, ``n_iter_``, ``converged_``.
    """

    def __init__(
        self,
        n_components: int = 5,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        weight_concentration_prior_type: str = "dirichlet_process",
        weight_concentration_prior: Optional[float] = None,
        mean_precision_prior: Optional[float] = None,
        degrees_of_freedom_prior: Optional[float] = None,
        init: str = "kmeans",
        random_state: Union[int, torch.Generator, None] = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.n_components = check_int(n_components, "n_components", 1)
        self.covariance_type = check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
        self.tol = check_float(tol, "tol", 0.0)
        self.reg_covar = check_float(reg_covar, "reg_covar", 0.0)
        self.max_iter = check_int(max_iter, "max_iter", 0)
        self.weight_concentration_prior_type = check_choice(
            weight_concentration_prior_type, "weight_concentration_prior_type", WEIGHT_PRIORS
        )
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.init = check_choice(init, "init", INITS)
        self.random_state = random_state
        self.dtype = dtype

    # -- fit -----------------------------------------------------------------
    def fit(self, X: Tensor, resp: Optional[Tensor] = None) -> "BatchedBayesianGMM":
        """Fit one mixture per ``X[b]`` (``X``: ``B x N x D``, or ``N x D`` for
        one). ``resp`` (``B x N x K``), if given, replaces the k-means
        initialisation. Returns self."""
        x = self._check_X(X)
        b, n, d = x.shape
        k = self.n_components
        if n < 2:
            raise ValueError(f"X has {n} rows per mixture; a Bayesian GMM needs at least 2")
        if n < k and resp is None and self.init == "kmeans":
            raise ValueError(f"X has {n} rows per mixture but n_components={k}; lower n_components")
        # priors (per image)
        self._wcp = 1.0 / k if self.weight_concentration_prior is None else float(self.weight_concentration_prior)
        self._mpp = 1.0 if self.mean_precision_prior is None else float(self.mean_precision_prior)
        self._dfp = float(d) if self.degrees_of_freedom_prior is None else float(self.degrees_of_freedom_prior)
        if self._dfp <= d - 1:
            raise ValueError(f"degrees_of_freedom_prior must be > n_features - 1 = {d - 1}")
        self.mean_prior_ = x.mean(1)  # B x D
        xc = x - self.mean_prior_[:, None]
        if self.covariance_type == "full":
            self.covariance_prior_ = xc.transpose(1, 2) @ xc / (n - 1)
        else:
            self.covariance_prior_ = (xc * xc).sum(1) / (n - 1)
        self._ar_d = torch.arange(d, device=x.device, dtype=x.dtype)
        self._eye = torch.eye(d, device=x.device, dtype=x.dtype)
        # initialisation
        if resp is None:
            g = make_generator(self.random_state, x.device)
            if self.init == "kmeans":
                labels = kmeans_labels(x, k, g)
                resp = torch.nn.functional.one_hot(labels, k).to(x.dtype)
            else:
                resp = torch.rand(b, n, k, generator=g, device=x.device, dtype=x.dtype)
                resp = resp / resp.sum(-1, keepdim=True)
        else:
            resp = torch.as_tensor(resp).to(device=x.device, dtype=x.dtype)
            if resp.dim() == 2:
                resp = resp.unsqueeze(0)
            if resp.shape != (b, n, k):
                raise ValueError(f"resp must have shape {(b, n, k)}, got {tuple(resp.shape)}")
        state = self._m_step(x, resp)
        lb = torch.full((b,), -math.inf, device=x.device, dtype=x.dtype)
        done = torch.zeros(b, dtype=torch.bool, device=x.device)
        n_iter = torch.zeros(b, dtype=torch.long, device=x.device)
        any_done = False  # while no element has converged, no masking is needed
        for _ in range(self.max_iter):
            log_resp = self._log_resp(x, state)
            new = self._m_step(x, log_resp.exp())
            new_lb = self._lower_bound(log_resp, new, d)
            change = new_lb - lb
            if any_done:
                active = ~done
                state = {key: _select(active, v, state[key]) for key, v in new.items()}
                lb = torch.where(active, new_lb, lb)
                n_iter = n_iter + active.long()
            else:
                state, lb, n_iter = new, new_lb, n_iter + 1
            done = done | (change.abs() < self.tol)
            n_done = int(done.sum())
            if n_done == b:
                break
            any_done = n_done > 0
        for key, v in state.items():
            setattr(self, key, v)
        self.lower_bound_ = lb
        self.n_iter_ = n_iter
        self.converged_ = done
        return self

    def predict_proba(self, X: Tensor) -> Tensor:
        """Posterior responsibilities ``B x N x K`` (``X``: ``B x N x D``; a
        mixture fitted on one batch element is applied to every ``X[b]``)."""
        if not hasattr(self, "means_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this BatchedBayesianGMM is not fitted yet; call fit(X) first")
        x = self._check_X(X)
        return self._log_resp(x, self._state()).exp()

    def predict(self, X: Tensor) -> Tensor:
        """The most probable component of each row, ``B x N``."""
        return self.predict_proba(X).argmax(-1)

    @property
    def weights_(self) -> Tensor:
        """Expected mixture weights ``B x K``."""
        if self.weight_concentration_prior_type == "dirichlet_process":
            a, b = self.weight_concentration_
            frac = a / (a + b)
            rest = torch.cumprod(b / (a + b), -1)
            w = frac * torch.cat([torch.ones_like(rest[..., :1]), rest[..., :-1]], -1)
            return w / w.sum(-1, keepdim=True)
        wc = self.weight_concentration_
        return wc / wc.sum(-1, keepdim=True)

    # -- internals -------------------------------------------------------------
    _KEYS = ("weight_concentration_", "mean_precision_", "means_", "degrees_of_freedom_",
             "covariances_", "precisions_cholesky_")

    def _state(self) -> dict:
        return {k: getattr(self, k) for k in self._KEYS}

    def _check_X(self, X: Tensor) -> Tensor:
        if not isinstance(X, Tensor):
            raise TypeError(f"X must be a torch.Tensor, got {type(X).__name__}")
        x = X.to(self.dtype)
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.dim() != 3:
            raise ValueError(f"X must be B x N x D (or N x D), got shape {tuple(X.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("X contains NaN or Inf")
        return x

    def _m_step(self, x: Tensor, resp: Tensor) -> dict:
        """Variational M-step (Bishop eqs. 10.58-10.63, scikit-learn's form)."""
        eps = 10 * torch.finfo(x.dtype).eps
        nk = resp.sum(1) + eps  # B x K
        rt = resp.transpose(1, 2)  # B x K x N
        xk = (rt @ x) / nk[..., None]  # B x K x D
        mpp, dfp = self._mpp, self._dfp
        if self.weight_concentration_prior_type == "dirichlet_process":
            tail = nk.flip(-1).cumsum(-1).flip(-1)
            wc = (1.0 + nk, self._wcp + torch.cat([tail[..., 1:], torch.zeros_like(tail[..., :1])], -1))
        else:
            wc = self._wcp + nk
        mean_prec = mpp + nk
        means = (mpp * self.mean_prior_[:, None] + nk[..., None] * xk) / mean_prec[..., None]
        dof = dfp + nk
        dm = xk - self.mean_prior_[:, None]  # B x K x D
        if self.covariance_type == "full":
            diff = x[:, None] - xk[:, :, None]  # B x K x N x D
            sk = (rt[..., None] * diff).transpose(-1, -2) @ diff / nk[..., None, None]
            sk = sk + self.reg_covar * self._eye
            cov = (self.covariance_prior_[:, None] + nk[..., None, None] * sk
                   + (nk * mpp / mean_prec)[..., None, None] * dm[..., :, None] * dm[..., None, :])
            cov = cov / dof[..., None, None]
            chol = torch.linalg.cholesky(cov)
            prec_chol = torch.linalg.solve_triangular(chol, self._eye.expand_as(chol), upper=False).transpose(-1, -2)
        else:
            sk = (rt @ (x * x)) / nk[..., None] - xk * xk + self.reg_covar
            cov = self.covariance_prior_[:, None] + nk[..., None] * (sk + (mpp / mean_prec)[..., None] * dm * dm)
            cov = cov / dof[..., None]
            prec_chol = cov.rsqrt()
        return {"weight_concentration_": wc, "mean_precision_": mean_prec, "means_": means,
                "degrees_of_freedom_": dof, "covariances_": cov, "precisions_cholesky_": prec_chol}

    def _log_det_chol(self, prec_chol: Tensor) -> Tensor:
        if self.covariance_type == "full":
            return prec_chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return prec_chol.log().sum(-1)

    def _log_resp(self, x: Tensor, s: dict) -> Tensor:
        """Variational E-step: log responsibilities ``B x N x K`` (Bishop eq. 10.46-10.49)."""
        d = x.shape[-1]
        pc, mu, dof = s["precisions_cholesky_"], s["means_"], s["degrees_of_freedom_"]
        if self.covariance_type == "full":
            y = x[:, None] @ pc - (mu[..., None, :] @ pc)  # B x K x N x D
            sq = (y * y).sum(-1).transpose(1, 2)  # B x N x K
        else:
            prec = pc * pc
            sq = ((mu * mu * prec).sum(-1)[:, None] - 2 * x @ (mu * prec).transpose(1, 2)
                  + (x * x) @ prec.transpose(1, 2))
        ar = self._ar_d if self._ar_d.shape[0] == d else torch.arange(d, device=x.device, dtype=x.dtype)
        log_lambda = d * math.log(2.0) + torch.digamma(0.5 * (dof[..., None] - ar)).sum(-1)  # B x K
        per_k = (self._log_det_chol(pc) - 0.5 * d * dof.log() + 0.5 * (log_lambda - d / s["mean_precision_"]))
        wc = s["weight_concentration_"]
        if self.weight_concentration_prior_type == "dirichlet_process":
            a, b = wc
            dsum = torch.digamma(a + b)
            db = torch.digamma(b) - dsum
            log_w = torch.digamma(a) - dsum + torch.cat([torch.zeros_like(db[..., :1]), db.cumsum(-1)[..., :-1]], -1)
        else:
            log_w = torch.digamma(wc) - torch.digamma(wc.sum(-1, keepdim=True))
        w = -0.5 * (d * math.log(2 * math.pi) + sq) + (per_k + log_w)[:, None]
        return w - torch.logsumexp(w, -1, keepdim=True)

    def _lower_bound(self, log_resp: Tensor, s: dict, d: int) -> Tensor:
        """The evidence lower bound, per batch element (scikit-learn's, up to a constant)."""
        dof = s["degrees_of_freedom_"]
        ldet = self._log_det_chol(s["precisions_cholesky_"]) - 0.5 * d * dof.log()
        ar = torch.arange(d, device=dof.device, dtype=dof.dtype)
        log_wishart = -(dof * ldet + dof * d * 0.5 * math.log(2.0)
                        + torch.lgamma(0.5 * (dof[..., None] - ar)).sum(-1))
        wc = s["weight_concentration_"]
        if self.weight_concentration_prior_type == "dirichlet_process":
            a, b = wc
            log_norm_w = -(torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)).sum(-1)
        else:
            log_norm_w = torch.lgamma(wc.sum(-1)) - torch.lgamma(wc).sum(-1)
        ent = (log_resp.exp() * log_resp).sum((1, 2))
        return -ent - log_wishart.sum(-1) - log_norm_w - 0.5 * d * s["mean_precision_"].log().sum(-1)


def _select(mask: Tensor, new, old):
    """``new`` where ``mask`` (per batch element), else ``old``; tuples element-wise."""
    if isinstance(new, tuple):
        return tuple(_select(mask, a, b) for a, b in zip(new, old))
    return torch.where(mask.reshape(-1, *([1] * (new.dim() - 1))), new, old)
