"""A batched variational Bayesian Gaussian mixture (the engine of BGMMPrior).

:class:`BatchedBayesianGMM` fits one variational Bayesian Gaussian mixture
*per batch element* of ``X`` (``B x N x D``): the ``N`` feature rows of each of
``B`` images, all at once.  The model, the priors and the updates are those of
scikit-learn's ``BayesianGaussianMixture`` (Bishop 2006, §10.2; Blei & Jordan
2006 for the Dirichlet-process stick-breaking weights), so that from the same
initialisation the two give the same lower bound and the same
responsibilities; scikit-learn is the test oracle:

- weights: a truncated Dirichlet process (stick-breaking Beta posteriors,
  ``weight_concentration_prior_type="dirichlet_process"``) or a Dirichlet
  distribution (``"dirichlet_distribution"``); the concentration prior
  defaults to ``1 / n_components``;
- means: a Gaussian prior centred on the image's row mean, precision prior 1;
- precisions: a Wishart prior with ``D`` degrees of freedom whose scale is the
  rows' empirical covariance (``"full"``) or variance (``"diag"``);
- initialisation: k-means (:func:`captum_prior._kmeans.kmeans`), seeded by
  ``random_state``, or given responsibilities;
- coordinate ascent until the lower bound changes by less than ``tol`` or
  ``max_iter`` iterations.  Each image stops on its own, where it would
  stop if fitted alone.

The lower bound is scikit-learn's (up to the same additive constant).
Only ``"full"`` and ``"diag"`` covariances are implemented.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np
import scipy.special
import torch
from torch import Tensor

from captum_prior._kmeans import kmeans
from captum_prior._random import torch_generator
from captum_prior._validation import check_choice, check_float, check_int

COVARIANCE_TYPES = ("full", "diag")
WEIGHT_PRIORS = ("dirichlet_process", "dirichlet_distribution")
ENGINES = ("auto", "torch", "numpy")


class _TorchOps:
    """The few array functions the updates need that torch and NumPy spell
    differently (everything else is written once: operators, ``sum(axis,
    keepdims=)``, ``cumsum``, ``swapaxes``, ``diagonal``, ``linalg``)."""

    digamma = staticmethod(torch.digamma)
    lgamma = staticmethod(torch.lgamma)
    log = staticmethod(torch.log)
    exp = staticmethod(torch.exp)
    where = staticmethod(torch.where)
    linalg = torch.linalg

    @staticmethod
    def amax(a, axis: int):
        return a.amax(axis, keepdim=True)


class _NumpyOps:
    """NumPy / SciPy counterparts of :class:`_TorchOps`."""

    digamma = staticmethod(scipy.special.digamma)
    lgamma = staticmethod(scipy.special.gammaln)
    log = staticmethod(np.log)
    exp = staticmethod(np.exp)
    where = staticmethod(np.where)
    linalg = np.linalg

    @staticmethod
    def amax(a, axis: int):
        return a.max(axis, keepdims=True)


class BatchedBayesianGMM:
    r"""Variational Bayesian Gaussian mixtures, one per batch element.

    The coordinate-ascent updates are written once, against the operations
    torch tensors and NumPy arrays share (``_TorchOps`` and ``_NumpyOps`` name
    the few that differ). On the CPU they run in NumPy by default: a
    per-image fit of some 50 rows is bound by the cost of each operation's
    dispatch, not by arithmetic, and NumPy dispatches such small arrays'
    operations faster than torch. On any other device they run in torch, on
    that device. Inputs and fitted attributes are torch tensors on ``X``'s
    device either way; the k-means start always draws from a torch
    generator, so the engine does not change which start a seed gives.

    Parameters
    ----------
    n_components : int, optional
        Truncation level / number of components. Default: 5
    covariance_type : {"full", "diag"}, optional
        Default: ``"full"``
    tol : float, optional
        Convergence threshold on the change of the lower bound. Default: 1e-3
    reg_covar : float, optional
        Added to the covariance diagonals. Default: 1e-6
    max_iter : int, optional
        Cap on the coordinate-ascent iterations. Default: 100
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}, optional
        Default: ``"dirichlet_process"``
    weight_concentration_prior : float, optional
        Default: None (``1 / n_components``)
    mean_precision_prior : float, optional
        Default: None (1.0)
    degrees_of_freedom_prior : float, optional
        Default: None (the number of features ``D``)
    random_state : None, int or torch.Generator, optional
        Seed of the k-means start (:func:`captum_prior._random.torch_generator`).
        Default: None
    dtype : torch.dtype, optional
        The dtype the fit runs in. Default: ``torch.float64``
    engine : {"auto", "torch", "numpy"}, optional
        ``"auto"``: NumPy for CPU inputs, else torch; ``"numpy"`` needs CPU
        inputs. Default: ``"auto"``

    Attributes
    ----------
    weight_concentration_, mean_precision_, means_, degrees_of_freedom_, covariances_, precisions_cholesky_ : Tensor
        The variational posterior, leading dimension ``B`` (the weight
        concentration is a pair of tensors for the Dirichlet process).
    lower_bound_ : Tensor
        ``B`` final lower bounds.
    n_iter_ : Tensor
        ``B`` iteration counts.
    converged_ : Tensor
        ``B`` booleans.

    References
    ----------
    C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer 2006, §10.2.
    D. M. Blei and M. I. Jordan, "Variational inference for Dirichlet process
    mixtures", Bayesian Analysis 1(1), 2006.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.priors._vbgmm import BatchedBayesianGMM
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.cat([torch.randn(2, 20, 2, generator=g), 5 + torch.randn(2, 20, 2, generator=g)], 1)
    >>> gm = BatchedBayesianGMM(n_components=3, random_state=0).fit(x)
    >>> gm.predict_proba(x).shape, gm.converged_.tolist()
    (torch.Size([2, 40, 3]), [True, True])
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
        random_state: Union[int, torch.Generator, None] = None,
        dtype: torch.dtype = torch.float64,
        engine: str = "auto",
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
        self.random_state = random_state
        self.dtype = dtype
        self.engine = check_choice(engine, "engine", ENGINES)

    # -- fit -----------------------------------------------------------------
    def fit(self, X: Tensor, resp: Optional[Tensor] = None) -> "BatchedBayesianGMM":
        """Fit one mixture per ``X[b]``.

        Parameters
        ----------
        X : Tensor
            ``B x N x D`` rows (``N x D`` for one mixture), ``N >= 2``.
        resp : Tensor, optional
            ``B x N x K`` starting responsibilities, instead of k-means.

        Returns
        -------
        BatchedBayesianGMM
            self
        """
        x = self._check_X(X)
        b, n, d = x.shape
        k = self.n_components
        if n < 2:
            raise ValueError(f"X has {n} rows per mixture; a Bayesian GMM needs at least 2")
        if n < k and resp is None:
            raise ValueError(f"X has {n} rows per mixture but n_components={k}; lower n_components")
        # priors (per image)
        self._wcp = 1.0 / k if self.weight_concentration_prior is None else float(self.weight_concentration_prior)
        self._mpp = 1.0 if self.mean_precision_prior is None else float(self.mean_precision_prior)
        self._dfp = float(d) if self.degrees_of_freedom_prior is None else float(self.degrees_of_freedom_prior)
        if self._dfp <= d - 1:
            raise ValueError(f"degrees_of_freedom_prior must be > n_features - 1 = {d - 1}")
        # initialisation (always torch: the generator decides the start, whatever the engine)
        if resp is None:
            labels = kmeans(x, k, torch_generator(self.random_state), tol=0.0)
            resp = torch.nn.functional.one_hot(labels, k).to(x.dtype)
        else:
            resp = torch.as_tensor(resp).to(device=x.device, dtype=x.dtype)
            if resp.dim() == 2:
                resp = resp.unsqueeze(0)
            if resp.shape != (b, n, k):
                raise ValueError(f"resp must have shape {(b, n, k)}, got {tuple(resp.shape)}")
        xa = self._engine_array(x)
        mean_prior = xa.mean(1)  # B x D
        xc = xa - mean_prior[:, None]
        if self.covariance_type == "full":
            cov_prior = xc.swapaxes(1, 2) @ xc / (n - 1)
        else:
            cov_prior = (xc * xc).sum(1) / (n - 1)
        self._priors = (mean_prior, cov_prior)
        self._prepare(xa)
        state, lb, n_iter, done = self._coordinate_ascent(xa, self._engine_array(resp).swapaxes(1, 2))
        self.mean_prior_, self.covariance_prior_ = (self._to_torch(v, x) for v in self._priors)
        for key in self._KEYS:
            setattr(self, key, self._to_torch(state[key], x))
        self.lower_bound_ = self._to_torch(lb, x)
        self.n_iter_ = self._to_torch(n_iter, x).long()
        self.converged_ = self._to_torch(done, x)
        return self

    def _coordinate_ascent(self, x, rt):
        """The iterations of :meth:`fit` from responsibilities ``rt`` (``B x K x N``),
        in the engine's arrays: E-step, M-step, lower bound, until each
        element's bound changes by less than ``tol`` or ``max_iter``.

        An element that has converged leaves the batch: its state is stored
        and the arrays of the remaining elements are cut down to them, so the
        iterations cost what the still-running elements need, and each
        element stops where it would have stopped alone."""
        b, d = x.shape[0], x.shape[-1]
        state = self._m_step(x, rt)
        out = {key: state[key] for key in self._KEYS}  # filled in as elements stop
        lb_out = self._full(b, -math.inf, x)
        n_out = self._full(b, 0, x)
        done_out = self._full(b, False, x)
        priors = self._priors
        idx = self._arange(b, x)  # the batch indices of the running elements
        lb = lb_out
        for it in range(1, self.max_iter + 1):
            log_r = self._log_resp_kn(x, state)
            r = self._ops.exp(log_r)
            state = self._m_step(x, r)
            new_lb = self._lower_bound(r, log_r, state, d)
            stop = abs(new_lb - lb) < self.tol
            lb = new_lb
            n_stop = int(stop.sum())
            if n_stop == 0 and it < self.max_iter:
                continue
            if len(idx) == b and (n_stop == b or it == self.max_iter):  # all stop together
                self._priors = priors
                return ({key: state[key] for key in self._KEYS}, lb,
                        self._full(b, it, x), stop)
            sel = stop if it < self.max_iter else stop | True
            _store(out, state, idx[sel], sel, self._KEYS)
            lb_out[idx[sel]] = lb[sel]
            n_out[idx[sel]] = it
            done_out[idx[stop]] = True
            if n_stop == len(idx) or it == self.max_iter:
                break
            keep = ~stop
            idx, x, lb = idx[keep], x[keep], lb[keep]
            state = {key: _take(v, keep) for key, v in state.items()}
            self._priors = tuple(v[keep] for v in self._priors)
            self._prepare(x)
        self._priors = priors
        return out, lb_out, n_out, done_out

    def predict_proba(self, X: Tensor) -> Tensor:
        """Posterior responsibilities ``B x N x K`` of the rows ``X``
        (``B x N x D``; a mixture fitted on one batch element is applied to
        every ``X[b]``).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before :meth:`fit`.
        """
        if not hasattr(self, "means_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this BatchedBayesianGMM is not fitted yet; call fit(X) first")
        x = self._check_X(X)
        xa = self._engine_array(x)
        self._prepare(xa)
        state = {k: self._engine_array(v) for k, v in self._state().items()}
        state.update(self._derived(state, x.shape[-1]))
        return self._to_torch(self._ops.exp(self._log_resp_kn(xa, state)).swapaxes(1, 2), x)

    def predict(self, X: Tensor) -> Tensor:
        """The most probable component of each row of ``X``, ``B x N``."""
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
        x = X.detach().to(self.dtype)
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.dim() != 3:
            raise ValueError(f"X must be B x N x D (or N x D), got shape {tuple(X.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("X contains NaN or Inf")
        if self.engine == "numpy" and x.device.type != "cpu":
            raise ValueError(f"engine='numpy' needs CPU inputs, got X on {x.device}; use engine='auto'")
        numpy = self.engine == "numpy" or (self.engine == "auto" and x.device.type == "cpu")
        self._ops = _NumpyOps if numpy else _TorchOps
        return x

    def _engine_array(self, v):
        """``v`` (a tensor, or a pair of them) as the engine's array (the
        engine is chosen for each input by :meth:`_check_X`)."""
        if isinstance(v, tuple):
            return tuple(self._engine_array(a) for a in v)
        return v.detach().numpy() if self._ops is _NumpyOps else v

    @staticmethod
    def _to_torch(v, like: Tensor):
        if isinstance(v, tuple):
            return tuple(BatchedBayesianGMM._to_torch(a, like) for a in v)
        return torch.from_numpy(np.ascontiguousarray(v)).to(like.device) if isinstance(v, np.ndarray) else v

    def _prepare(self, x) -> None:
        """Per-call constants of the rows ``x`` (``B x N x D``, engine arrays)."""
        d = x.shape[-1]
        if isinstance(x, np.ndarray):
            self._ar_d, self._eye = np.arange(d, dtype=x.dtype), np.eye(d, dtype=x.dtype)
            self._eps = 10 * np.finfo(x.dtype).eps
        else:
            self._ar_d = torch.arange(d, device=x.device, dtype=x.dtype)
            self._eye = torch.eye(d, device=x.device, dtype=x.dtype)
            self._eps = 10 * torch.finfo(x.dtype).eps
        if self.covariance_type == "diag":
            self._x2 = x * x
            self._xt, self._x2t = x.swapaxes(1, 2), self._x2.swapaxes(1, 2)

    @staticmethod
    def _arange(b: int, like):
        if isinstance(like, np.ndarray):
            return np.arange(b)
        return torch.arange(b, device=like.device)

    def _full(self, b: int, value, like):
        if isinstance(like, np.ndarray):
            dtype = bool if isinstance(value, bool) else (np.int64 if isinstance(value, int) else like.dtype)
            return np.full(b, value, dtype=dtype)
        dtype = torch.bool if isinstance(value, bool) else (torch.long if isinstance(value, int) else like.dtype)
        return torch.full((b,), value, dtype=dtype, device=like.device)

    def _m_step(self, x, rt) -> dict:
        """Variational M-step (Bishop eqs. 10.58-10.63, scikit-learn's form)
        from the responsibilities ``rt`` (``B x K x N``).

        The state also holds the per-component terms of the next E-step and of
        the lower bound (keys starting with ``_``), computed once here.  Written
        as few, whole-batch array operations: a per-image fit of 49 rows is
        bound by the per-operation overhead, not by arithmetic."""
        ops, d = self._ops, x.shape[-1]
        mean_prior, cov_prior = self._priors
        nk = rt.sum(-1) + self._eps  # B x K
        sx = rt @ x  # B x K x D, = nk * xk
        xk = sx / nk[..., None]
        mpp, dfp = self._mpp, self._dfp
        if self.weight_concentration_prior_type == "dirichlet_process":
            # b_k = prior + sum_{j > k} n_j
            wc = (1.0 + nk, self._wcp + (nk.sum(-1, keepdims=True) - nk.cumsum(-1)))
        else:
            wc = self._wcp + nk
        mean_prec = mpp + nk
        m0 = mean_prior[:, None]
        means = (mpp * m0 + sx) / mean_prec[..., None]
        dof = dfp + nk
        dm = xk - m0  # B x K x D
        coef = nk * (mpp / mean_prec)
        if self.covariance_type == "full":
            diff = x[:, None] - xk[:, :, None]  # B x K x N x D
            scatter = (rt[..., None] * diff).swapaxes(-1, -2) @ diff  # = nk * S_k
            cov = (cov_prior[:, None] + scatter + (nk * self.reg_covar)[..., None, None] * self._eye
                   + (coef[..., None] * dm)[..., :, None] * dm[..., None, :]) / dof[..., None, None]
            chol = ops.linalg.cholesky(cov)
            # the inverse of a triangular factor is triangular: the precision's Cholesky factor
            prec_chol = ops.linalg.inv(chol).swapaxes(-1, -2)
            log_det = -ops.log(chol.diagonal(0, -2, -1)).sum(-1)
        else:
            scatter = rt @ self._x2 - sx * xk + (nk * self.reg_covar)[..., None]  # = nk * S_k
            cov = (cov_prior[:, None] + scatter + coef[..., None] * dm * dm) / dof[..., None]
            prec_chol = cov ** -0.5
            log_det = ops.log(prec_chol).sum(-1)
        state = {"weight_concentration_": wc, "mean_precision_": mean_prec, "means_": means,
                 "degrees_of_freedom_": dof, "covariances_": cov, "precisions_cholesky_": prec_chol}
        state.update(self._derived(state, d, log_det))
        return state

    def _derived(self, s: dict, d: int, log_det=None) -> dict:
        """Per-component terms shared by the E-step and the lower bound."""
        ops = self._ops
        dof, pc = s["degrees_of_freedom_"], s["precisions_cholesky_"]
        if log_det is None:
            log_det = ops.log(pc.diagonal(0, -2, -1) if self.covariance_type == "full" else pc).sum(-1)
        ldet = log_det - 0.5 * d * ops.log(dof)  # log|Lambda|^(1/2) of the expected precision
        half = 0.5 * (dof[..., None] - self._ar_d)  # B x K x D
        wc = s["weight_concentration_"]
        if self.weight_concentration_prior_type == "dirichlet_process":
            a, b = wc
            dsum = ops.digamma(a + b)
            db = ops.digamma(b) - dsum
            log_w = ops.digamma(a) - dsum + (db.cumsum(-1) - db)
        else:
            log_w = ops.digamma(wc) - ops.digamma(wc.sum(-1, keepdims=True))
        # Bishop eq. 10.46-10.49 up to terms equal for all components (they
        # cancel in the normalisation): log pi_k + 1/2 E[log|Lambda_k|] - D / (2 beta_k)
        per_k = ldet + 0.5 * (ops.digamma(half).sum(-1) - d / s["mean_precision_"]) + log_w
        return {"_ldet": ldet, "_half": half, "_per_k": per_k}

    def _log_resp_kn(self, x, s: dict):
        """Variational E-step: log responsibilities ``B x K x N`` (Bishop eq. 10.46-10.49)."""
        ops = self._ops
        pc, mu = s["precisions_cholesky_"], s["means_"]
        if self.covariance_type == "full":
            y = (x[:, None] - mu[:, :, None]) @ pc  # B x K x N x D
            sq = (y * y).sum(-1)  # B x K x N
        else:
            prec = pc * pc
            sq = (mu * mu * prec).sum(-1)[..., None] - 2 * (mu * prec) @ self._xt + prec @ self._x2t
        w = s["_per_k"][..., None] - 0.5 * sq
        w = w - ops.amax(w, 1)  # finite: every term is
        return w - ops.log(ops.exp(w).sum(1, keepdims=True))

    def _lower_bound(self, r, log_r, s: dict, d: int):
        """The evidence lower bound, per batch element (scikit-learn's, up to a constant)."""
        ops = self._ops
        dof = s["degrees_of_freedom_"]
        log_wishart = -(dof * (s["_ldet"] + d * 0.5 * math.log(2.0)) + ops.lgamma(s["_half"]).sum(-1))
        wc = s["weight_concentration_"]
        if self.weight_concentration_prior_type == "dirichlet_process":
            a, b = wc
            log_norm_w = -(ops.lgamma(a) + ops.lgamma(b) - ops.lgamma(a + b)).sum(-1)
        else:
            log_norm_w = ops.lgamma(wc.sum(-1)) - ops.lgamma(wc).sum(-1)
        ent = (r * log_r).sum((1, 2))
        return -ent - log_wishart.sum(-1) - log_norm_w - 0.5 * d * ops.log(s["mean_precision_"]).sum(-1)


def _take(v, mask):
    """The batch elements ``mask`` of an array (or of each array of a pair)."""
    return tuple(a[mask] for a in v) if isinstance(v, tuple) else v[mask]


def _store(out: dict, state: dict, where, mask, keys) -> None:
    """Write the batch elements ``mask`` of ``state`` into ``out`` at the batch
    indices ``where``."""
    for key in keys:
        if isinstance(out[key], tuple):
            for o, v in zip(out[key], state[key]):
                o[where] = v[mask]
        else:
            out[key][where] = state[key][mask]
