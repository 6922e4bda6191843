"""Gibbs + Metropolis-Hastings sampler for DMM-MEN (private).

The model (Guo et al., NeurIPS 2018, §3.3, Eq. 2-7) for data ``X`` (n x p),
``y`` (n), with DP truncation ``J`` and ``K`` elastic-net prior components:

    y_i | z_i = j       ~ N(x_i beta_j, sigma_j^2)                      (Eq. 2)
    pi                  = stick-breaking(u),  u_j ~ Beta(1, alpha)      (Eq. 3)
    alpha               ~ Gamma(e, rate f)
    sigma_j^2           ~ Inv-Gamma(a, b)
    w                   ~ Dir(1/K, ..., 1/K),  c_j ~ Cat(w)
    beta_j | tau_j, ... ~ N(0, sigma_j^2 / lambda_{2,c_j} diag(1 - tau_j))       (Eq. 6)
    tau_jl | ...        ~ Inv-Gamma(1/2, lambda_1^2 / (8 lambda_2 sigma_j^2))
                          truncated to (0, 1)                            (Eq. 7)
    lambda_{1,k}        ~ Gamma(shape s1, rate V/2),  lambda_{2,k} ~ Gamma(shape s2, rate V/2)

Integrating tau out of (6)-(7) gives the orthant-normal elastic-net prior (5)
(Hans 2011; Li & Lin 2010 with tau = 1/tau_LiLin); this is checked
numerically in the tests.  Every update below is the *exact* full conditional
(Gibbs) or a Metropolis-Hastings step whose target is the exact full
conditional.  Where the authors' released R sampler departs from that,
the departure is named in the step's comment.

The sampler is partially collapsed (van Dyk & Park 2008): ``c_j`` and
lambda are drawn with tau integrated out (the Eq. 5 density), each followed
by a fresh tau draw; each occupied component's ``(sigma_j^2, beta_j)`` is
drawn as one block (sigma^2 with beta integrated out); lambda gets
``LAMBDA_STEPS`` random-walk updates per sweep.

Internally tau is carried as its odds ``omega = tau / (1 - tau)`` so that
``1 / (1 - tau) = 1 + omega`` and ``1 / tau = 1 + 1 / omega`` are exact even
when tau is within rounding of 0 or 1.  Everything is computed in log space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from scipy.special import gammaln, log_ndtr

LOG_2PI = float(np.log(2.0 * np.pi))
LOG_2SQRTPI = float(np.log(2.0 * np.sqrt(np.pi)))
# Numerical floor/ceiling for omega = tau / (1 - tau): only reached when a
# coefficient is within ~1e-12 of its bound; documented departure.
OMEGA_MIN, OMEGA_MAX = 1e-12, 1e12
# Metropolis-Hastings updates of the penalties lambda per sweep (each O(J K)).
LAMBDA_STEPS = 5


@dataclass
class Hyper:
    """Hyper-parameters (already validated)."""

    J: int
    K: int
    a: float
    b: float
    e: float
    f: float
    s1: float  # shape of lambda_1's Gamma prior
    s2: float  # shape of lambda_2's Gamma prior
    V: float  # rate of both lambda priors is V / 2
    intercept_var: Optional[
        float
    ]  # prior variance of the intercept, None = no intercept


@dataclass
class State:
    z: np.ndarray  # (n,) int
    log_pi: np.ndarray  # (J,)
    log_1mu: np.ndarray  # (J-1,) log(1 - u_j)
    log_u: np.ndarray  # (J-1,)
    alpha: float
    c: np.ndarray  # (J,) int
    log_w: np.ndarray  # (K,)
    beta: np.ndarray  # (J, q); column 0 is the intercept when fitted
    omega: np.ndarray  # (J, p) odds of tau
    sig2: np.ndarray  # (J,)
    lam1: np.ndarray  # (K,)
    lam2: np.ndarray  # (K,)
    mu: Optional[np.ndarray] = None  # (n, J) cached X beta_j for the current beta
    extra: Dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------
# random variates
# --------------------------------------------------------------------------


def log_gamma_rv(rng: np.random.Generator, shape: np.ndarray) -> np.ndarray:
    """log of Gamma(shape, 1) variates, exact also for tiny shapes.

    For shape < 1 uses G(s) = G(s + 1) U^{1/s}, so the log never underflows.
    """
    shape = np.asarray(shape, dtype=float)
    small = shape < 1.0
    g = rng.standard_gamma(np.where(small, shape + 1.0, shape))
    out = np.log(g)
    if np.any(small):
        u = rng.random(shape.shape)
        out = np.where(small, out + np.log(u) / np.where(small, shape, 1.0), out)
    return out


def inverse_gaussian_rv(
    rng: np.random.Generator, mean: np.ndarray, shape: np.ndarray
) -> np.ndarray:
    """Inverse-Gaussian(mean, shape) variates (Michael, Schucany & Haas 1976).

    Written with ``r = mean * chi2_1 / (2 shape)``: the two roots are
    ``mean * d`` and ``mean / d`` with ``d = 1 + r + sqrt(r (r + 2))``, which
    is free of cancellation and overflow even for huge means (coefficients
    near zero).
    """
    mean = np.asarray(mean, dtype=float)
    nu = rng.standard_normal(mean.shape)
    r = mean * (nu * nu) / (2.0 * shape)
    with np.errstate(over="ignore"):
        d = 1.0 + r + np.sqrt(r) * np.sqrt(r + 2.0)
        x_small = mean / d
        take_small = rng.random(mean.shape) * (1.0 + 1.0 / d) <= 1.0
        return np.where(take_small, x_small, mean * d)


def truncated_tau_odds_rv(rng: np.random.Generator, gam: np.ndarray) -> np.ndarray:
    """Exact draws of omega = tau/(1-tau) for tau ~ Inv-Gamma(1/2, gam) on (0, 1).

    With s = 1/tau, x = gam * s ~ Gamma(1/2, 1) truncated to x > gam, and
    omega = gam / (x - gam).  Two exact rejection samplers:
    gam <= 1: x = Z^2 / 2 with Z half-normal, kept if Z > sqrt(2 gam)
    (acceptance 2 Phi(-sqrt(2 gam)) >= 0.157);
    gam > 1: x = gam + Exp(1), kept with probability sqrt(gam / x)
    (acceptance >= 0.7).  The excess x - gam is formed without cancellation.
    """
    gam = np.asarray(gam, dtype=float)
    excess = np.empty(gam.shape)
    flat_g = gam.reshape(-1)
    flat_e = excess.reshape(-1)
    todo = np.arange(flat_g.size)
    while todo.size:
        g = flat_g[todo]
        small = g <= 1.0
        ex = np.empty(todo.size)
        ok = np.empty(todo.size, dtype=bool)
        if small.any():
            a = np.sqrt(2.0 * g[small])
            zz = np.abs(rng.standard_normal(a.size))
            ok[small] = zz > a
            ex[small] = 0.5 * (zz - a) * (zz + a)
        big = ~small
        if big.any():
            e_ = rng.standard_exponential(int(big.sum()))
            ok[big] = rng.random(e_.size) ** 2 <= g[big] / (g[big] + e_)
            ex[big] = e_
        flat_e[todo[ok]] = ex[ok]
        todo = todo[~ok]
    return np.minimum(
        np.maximum(gam / np.maximum(excess, 1e-300), OMEGA_MIN), OMEGA_MAX
    )


# --------------------------------------------------------------------------
# log densities
# --------------------------------------------------------------------------


def beta_tau_stats(beta_pen: np.ndarray, omega: np.ndarray) -> Dict[str, np.ndarray]:
    """Per-component sufficient statistics of (beta, tau) for the prior terms.

    Q = sum_l beta_l^2 / (1 - tau_l); T = sum_l 1 / tau_l;
    S1 = sum_l log(1 - tau_l); S2 = sum_l log tau_l;
    A1 = sum_l |beta_l|; B2 = sum_l beta_l^2 (for the tau-collapsed prior).
    """
    l1p = np.log1p(omega)
    return {
        "A1": np.sum(np.abs(beta_pen), axis=-1),
        "B2": np.sum(beta_pen * beta_pen, axis=-1),
        "Q": np.sum(beta_pen * beta_pen * (1.0 + omega), axis=-1),
        "T": np.sum(1.0 + 1.0 / omega, axis=-1),
        "S1": -np.sum(l1p, axis=-1),
        "S2": np.sum(np.log(omega) - l1p, axis=-1),
    }


def log_prior_beta_tau(
    stats: Dict[str, np.ndarray],
    p: int,
    sig2: np.ndarray,
    lam1: np.ndarray,
    lam2: np.ndarray,
    pairs: bool = False,
) -> np.ndarray:
    """``log N(beta_j | 0, sig2_j/lam2_k diag(1-tau_j)) + sum_l log TIG(tau_jl)``.

    Returns a ``(J, K)`` matrix (components x penalty components), or with
    ``pairs=True`` the ``(J,)`` vector for aligned ``lam1[j], lam2[j]``:
    Eq. (6) and (7) with every normalising constant that depends on a
    parameter, including the truncation constant of (7),
    ``Phi(-lam1 / (2 sigma sqrt(lam2)))``.
    """
    if pairs:
        s2, L1, L2 = sig2, lam1, lam2
        Q, T, S1, S2 = stats["Q"], stats["T"], stats["S1"], stats["S2"]
    else:
        s2 = sig2[:, None]
        L1 = lam1[None, :]
        L2 = lam2[None, :]
        Q, T = stats["Q"][:, None], stats["T"][:, None]
        S1, S2 = stats["S1"][:, None], stats["S2"][:, None]
    # Eq. (6): Gaussian with covariance sig2/lam2 * diag(1 - tau)
    log_norm = (
        -0.5 * p * (LOG_2PI + np.log(s2) - np.log(L2)) - 0.5 * S1 - L2 * Q / (2.0 * s2)
    )
    # Eq. (7): Inv-Gamma(1/2, gamma) truncated to (0, 1),
    # gamma = lam1^2 / (8 lam2 sig2); normaliser 2 sqrt(pi) Phi(-sqrt(2 gamma)) / sqrt(gamma)
    gam = L1 * L1 / (8.0 * L2 * s2)
    log_tig = (
        0.5 * p * np.log(gam)
        - 1.5 * S2
        - gam * T
        - p * LOG_2SQRTPI
        - p * log_ndtr(-np.sqrt(2.0 * gam))
    )
    return log_norm + log_tig


def log_orthant_normal(
    stats: Dict[str, np.ndarray],
    p: int,
    sig2: np.ndarray,
    lam1: np.ndarray,
    lam2: np.ndarray,
    pairs: bool = False,
) -> np.ndarray:
    """``log f(beta_j | lam1, lam2, sig2_j)``: the orthant-normal elastic-net
    prior of Eq. (5) (Hans 2011), i.e. Eq. (6)-(7) with tau integrated out:

        -(lam1 |beta|_1 + lam2 |beta|^2) / (2 sig2) - p log 2
        - p/2 log(2 pi sig2 / lam2) - p log Phi(-lam1 / (2 sigma sqrt(lam2)))
        - p lam1^2 / (8 lam2 sig2).

    Shapes as in :func:`log_prior_beta_tau`.
    """
    if pairs:
        s2, L1, L2 = sig2, lam1, lam2
        A1, B2 = stats["A1"], stats["B2"]
    else:
        s2, L1, L2 = sig2[:, None], lam1[None, :], lam2[None, :]
        A1, B2 = stats["A1"][:, None], stats["B2"][:, None]
    cc = L1 / (2.0 * np.sqrt(L2 * s2))
    return (
        -(L1 * A1 + L2 * B2) / (2.0 * s2)
        - p * np.log(2.0)
        - 0.5 * p * (LOG_2PI + np.log(s2) - np.log(L2))
        - p * log_ndtr(-cc)
        - 0.5 * p * cc * cc
    )


def log_gamma_pdf(x: np.ndarray, shape: float, rate: float) -> np.ndarray:
    return shape * np.log(rate) - gammaln(shape) + (shape - 1.0) * np.log(x) - rate * x


def log_invgamma_pdf(x: np.ndarray, shape: float, scale: float) -> np.ndarray:
    return (
        shape * np.log(scale) - gammaln(shape) - (shape + 1.0) * np.log(x) - scale / x
    )


def sig2_logtarget(s: np.ndarray, A, B, cc, p: int) -> np.ndarray:
    """Log density (up to a constant) of ``s = log sigma^2`` under the exact
    conditional ``IG(A, B) x Phi(-cc / sigma)^-p`` (Jacobian included)."""
    x = cc * np.exp(-0.5 * s)
    return -A * s - B * np.exp(-s) - p * log_ndtr(-x)


def _laplace_t_proposal(
    rng: np.random.Generator,
    s_old: np.ndarray,
    A: np.ndarray,
    B: np.ndarray,
    cc: np.ndarray,
    p: int,
    nu: float = 4.0,
    exact_logtarget: Optional[Any] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Student-t independence proposal in ``s = log sigma^2`` centred at the
    mode of ``IG(A, B) x Phi(-cc / sigma)^-p`` (:func:`sig2_logtarget`) with
    its Laplace scale, and the log MH ratio for the target
    ``exact_logtarget(s)`` (default: that same density).  The proposal
    depends only on ``(A, B, cc, p)``, never on ``s_old``.
    Returns ``(s_new, log_ratio)``."""
    s = np.log(B / A)

    def derivs(s):
        x = cc * np.exp(-0.5 * s)
        mills = np.exp(-0.5 * x * x - 0.5 * LOG_2PI - log_ndtr(-x))
        g1 = -A + B * np.exp(-s) - 0.5 * p * x * mills
        g2 = -B * np.exp(-s) + 0.25 * p * x * mills * (x * (mills - x) + 1.0)
        return g1, g2

    for _ in range(30):
        g1, g2 = derivs(s)
        step = np.where(g2 < 0, -g1 / np.where(g2 < 0, g2, -1.0), np.sign(g1))
        step = np.minimum(np.maximum(step, -2.0), 2.0)
        s = s + step
        if np.abs(step).max() < 1e-4:  # the mode only centres the proposal
            break
    _, g2 = derivs(s)
    scale = np.where(g2 < 0, 1.0 / np.sqrt(np.maximum(-g2, 1e-12)), 1.0)
    s_new = s + scale * rng.standard_t(nu, size=s.shape)

    def log_q(v):
        r = (v - s) / scale
        return -0.5 * (nu + 1.0) * np.log1p(r * r / nu)

    if exact_logtarget is None:

        def exact_logtarget(v):
            return sig2_logtarget(v, A, B, cc, p)

    log_ratio = (
        exact_logtarget(s_new) - exact_logtarget(s_old) + log_q(s_old) - log_q(s_new)
    )
    return s_new, log_ratio


# --------------------------------------------------------------------------
# the sampler
# --------------------------------------------------------------------------


class Sampler:
    """One chain of the DMM-MEN sampler over fixed data.

    Parameters
    ----------
    X
        (n, q) float64; if ``hyper.intercept_var`` is not None, column 0 is
        ones.
    y
        (n,) float64.
    hyper
        hyper-parameters.
    rng
        numpy Generator (the only source of randomness).
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        hyper: Hyper,
        rng: np.random.Generator,
    ) -> None:
        # copies: the arrays may be read-only joblib memmaps
        self.X = np.array(X, dtype=np.float64, order="C")
        self.y = np.array(y, dtype=np.float64, order="C")
        self.h = hyper
        self.rng = rng
        self.n, self.q = self.X.shape
        self.off = 0 if hyper.intercept_var is None else 1
        self.p = self.q - self.off  # number of penalised coefficients
        self.Xt = torch.from_numpy(self.X)
        self.lam_step = np.full((2, hyper.K), 0.5)  # RW-MH steps on log lambda
        self.lam_acc = np.zeros((2, hyper.K))
        self.lam_tries = np.zeros((2, hyper.K))
        self.sig_acc = 0
        self.sig_tries = 0
        self._gram_z: Optional[np.ndarray] = None
        self._sweeps_since_full = 0
        self.G = np.zeros((hyper.J, self.q, self.q))
        self.Xy = np.zeros((hyper.J, self.q))

    # ---------------------------------------------------------------- init
    def initial_state(self, z0: np.ndarray) -> State:
        h, rng = self.h, self.rng
        J, K = h.J, h.K
        lam1 = np.full(K, h.s1 / (h.V / 2.0))  # prior means
        lam2 = np.full(K, h.s2 / (h.V / 2.0))
        st = State(
            z=z0.astype(np.int64),
            log_pi=np.full(J, -np.log(J)),
            log_1mu=np.zeros(J - 1),
            log_u=np.zeros(J - 1),
            alpha=float(h.e),  # as the reference code: alpha starts at e
            c=rng.integers(0, K, size=J),
            log_w=np.full(K, -np.log(K)),
            beta=np.zeros((J, self.q)),
            omega=np.ones((J, self.p)),  # tau = 0.5, as the reference code
            sig2=np.ones(J),
            lam1=lam1,
            lam2=lam2,
        )
        self._refresh_gram(st.z)
        # ridge start for beta and residual variance for sigma^2
        var_y = float(np.var(self.y)) + 1e-12
        for j in range(J):
            A = self.G[j] + np.eye(self.q) * 1e-2 * (1.0 + np.trace(self.G[j]) / self.q)
            st.beta[j] = np.linalg.solve(A, self.Xy[j])
            m = st.z == j
            if m.sum() > self.q:
                r = self.y[m] - self.X[m] @ st.beta[j]
                st.sig2[j] = max(float(np.mean(r * r)), 1e-6 * var_y)
            else:
                st.sig2[j] = var_y
        self._stick_breaking(st)
        return st

    # ---------------------------------------------------------- Gram upkeep
    def _refresh_gram(self, z: np.ndarray) -> None:
        for j in range(self.h.J):
            Xj = self.X[z == j]
            self.G[j] = Xj.T @ Xj
            self.Xy[j] = Xj.T @ self.y[z == j]
        self._gram_z = z.copy()
        self._sweeps_since_full = 0

    def _update_gram(self, z: np.ndarray) -> None:
        """Per-component X'X and X'y, updated only for samples that moved."""
        old = self._gram_z
        moved = np.flatnonzero(old != z)
        self._sweeps_since_full += 1
        if moved.size == 0:
            return
        if moved.size * 2 > self.n or self._sweeps_since_full > 200:
            self._refresh_gram(z)
            return
        Xm, ym, zo, zn = self.X[moved], self.y[moved], old[moved], z[moved]
        for j in np.union1d(zo, zn):
            s = (zn == j).astype(float) - (zo == j).astype(float)
            keep = s != 0
            if not keep.any():
                continue
            Xs = Xm[keep]
            self.G[j] += (Xs * s[keep, None]).T @ Xs
            self.Xy[j] += Xs.T @ (s[keep] * ym[keep])
        self._gram_z = z.copy()

    # ---------------------------------------------------------------- steps
    def _mu(self, st: State) -> np.ndarray:
        if st.mu is None:
            st.mu = self.X @ st.beta.T  # (n, J)
        return st.mu

    def loglik_matrix(self, st: State) -> np.ndarray:
        """``log N(y_i | x_i beta_j, sigma_j^2)``, shape ``(n, J)``."""
        r = self.y[:, None] - self._mu(st)
        out = (
            -0.5 * (LOG_2PI + np.log(st.sig2))[None, :]
            - r * r / (2.0 * st.sig2)[None, :]
        )
        return out

    def _step_z(self, st: State) -> None:
        # exact: P(z_i = j) oc pi_j N(y_i | x_i beta_j, sigma_j^2); Gumbel-max draw
        logp = self.loglik_matrix(st) + st.log_pi[None, :]
        g = -np.log(-np.log(self.rng.random(logp.shape)))
        st.z = np.argmax(logp + g, axis=1)

    def _stick_breaking(self, st: State) -> None:
        # exact: u_j | z, alpha ~ Beta(1 + n_j, alpha + n_{>j}), j < J (Ishwaran & James 2001)
        J = self.h.J
        n_j = np.bincount(st.z, minlength=J).astype(float)
        n_gt = np.cumsum(n_j[::-1])[::-1]  # n_{>=j}
        n_after = np.append(n_gt[1:], 0.0)[: J - 1]
        lg = log_gamma_rv(
            self.rng, np.concatenate([1.0 + n_j[: J - 1], st.alpha + n_after])
        )
        lg1, lg2 = lg[: J - 1], lg[J - 1 :]
        lse = np.logaddexp(lg1, lg2)
        st.log_u = lg1 - lse
        st.log_1mu = lg2 - lse
        cum = np.concatenate([[0.0], np.cumsum(st.log_1mu)])
        st.log_pi = np.append(st.log_u + cum[: J - 1], cum[J - 1])

    def _step_alpha(self, st: State) -> None:
        # exact: alpha | u ~ Gamma(e + J - 1, rate f - sum_{j<J} log(1 - u_j))
        shape = self.h.e + self.h.J - 1.0
        rate = self.h.f - float(np.sum(st.log_1mu))
        st.alpha = float(self.rng.standard_gamma(shape) / rate)  # shape >= J - 1 + e

    def _stats(self, st: State) -> Dict[str, np.ndarray]:
        # cached; every step that changes beta or tau drops the cache
        if st.extra.get("stats") is None:
            st.extra["stats"] = beta_tau_stats(st.beta[:, self.off :], st.omega)
        return st.extra["stats"]

    def _prior_terms(self, st: State, lam1, lam2, pairs: bool) -> np.ndarray:
        # Eq. (5): the elastic-net density of beta with tau integrated out
        fn = log_orthant_normal
        return fn(self._stats(st), self.p, st.sig2, lam1, lam2, pairs=pairs)

    def _step_c(self, st: State) -> None:
        # exact: P(c_j = k) oc w_k N(beta_j | 0, sig2_j/lam2_k S_tau) prod_l TIG(tau_jl | lam_k)
        # (the reference code omits the tau term, which depends on lambda_k);
        # collapsed: P(c_j = k) oc w_k f_k(beta_j) of Eq. (5), tau integrated
        # out, followed by a fresh tau draw (partially collapsed Gibbs).
        lp = self._prior_terms(st, st.lam1, st.lam2, pairs=False)
        lp = lp + st.log_w[None, :]
        g = -np.log(-np.log(self.rng.random(lp.shape)))
        st.c = np.argmax(lp + g, axis=1)

    def _step_w(self, st: State) -> None:
        # exact: w | c ~ Dir(1/K + counts)
        K = self.h.K
        cnt = np.bincount(st.c, minlength=K).astype(float)
        lg = log_gamma_rv(self.rng, 1.0 / K + cnt)
        st.log_w = lg - np.logaddexp.reduce(lg)

    def _precision_chol(
        self, st: State, occ: np.ndarray, sig2: np.ndarray
    ) -> Tuple[torch.Tensor, np.ndarray]:
        """Cholesky factors of ``A_j = X_j'X_j + D_j`` for components ``occ``
        (``D_j`` = prior precision of beta_j times sigma_j^2, whose intercept
        entry ``sigma_j^2 / intercept_var`` depends on ``sig2``), and
        ``log diag(D_j)`` summed."""
        q, off = self.q, self.off
        m = occ.size
        d = np.empty((m, q))
        if off:
            d[:, 0] = sig2 / self.h.intercept_var
        d[:, off:] = st.lam2[st.c[occ]][:, None] * (1.0 + st.omega[occ])
        A = self.G[occ].copy()
        idx = np.arange(q)
        A[:, idx, idx] += d
        L, info = torch.linalg.cholesky_ex(torch.from_numpy(A))
        if bool((info != 0).any()):  # pragma: no cover - only on extreme scaling
            jitter = 1e-10 * (1.0 + np.abs(A[:, idx, idx]).max(axis=1))
            A[:, idx, idx] += jitter[:, None]
            L = torch.linalg.cholesky(torch.from_numpy(A))
        with np.errstate(divide="ignore"):  # d00 = 0 only for the proposal
            return L, np.log(d).sum(axis=1)

    def _sig2_marginal_logtarget(
        self, st: State, occ: np.ndarray, yy: np.ndarray, n_j: np.ndarray
    ):
        """Exact log density of ``s = log sigma_j^2`` given ``z, c, tau,
        lambda`` with beta_j integrated out (Jacobian included), as a function
        of a vector ``s`` over ``occ``; also returns the factors it used.

            p(s) oc IG(e^s | a, b) e^s
                    x (e^s)^{-n_j/2} |D_j|^{1/2} |A_j|^{-1/2}
                      exp(-(y_j'y_j - m_j'A_j m_j) / (2 e^s))     [beta integrated]
                    x prod_l TIG(tau_jl | lambda, e^s)             [Eq. 7]
        """
        h, p = self.h, self.p
        stats = self._stats(st)
        L1, L2 = st.lam1[st.c[occ]], st.lam2[st.c[occ]]
        cache: Dict[bytes, Any] = {}

        def f(sv: np.ndarray) -> np.ndarray:
            sig2 = np.exp(sv)
            L, logd = self._precision_chol(st, occ, sig2)
            cache[sv.tobytes()] = L
            v = torch.linalg.solve_triangular(
                L, torch.from_numpy(self.Xy[occ])[:, :, None], upper=False
            )
            mAm = (v * v).sum(dim=(1, 2)).numpy()
            logdetA = 2.0 * torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(1).numpy()
            S = np.maximum(yy - mAm, 0.0)
            gam = L1 * L1 / (8.0 * L2 * sig2)
            tig = (
                0.5 * p * np.log(gam)
                - gam * stats["T"][occ]
                - p * log_ndtr(-np.sqrt(2.0 * gam))
            )
            return (
                -h.a * sv
                - h.b / sig2
                - 0.5 * n_j * sv
                + 0.5 * logd
                - 0.5 * logdetA
                - S / (2.0 * sig2)
                + tig
            )

        return f, cache

    def _step_sig2_beta(self, st: State) -> None:
        # Blocked Gibbs for (sigma_j^2, beta_j) | z, c, tau, lambda (occupied j):
        # sigma_j^2 from its conditional with beta_j integrated out (exact
        # target above; independence MH with the Laplace-t proposal of the
        # conjugate part, whose shape/scale are a + n_j/2 + p/2 and
        # b + (y'y - m'Am)/2 + lam1^2 T / (8 lam2) at D00 -> 0), then
        # beta_j | sigma_j^2 exactly.  Removes the sigma^2-beta dependence of
        # the one-at-a-time updates (Eq. 6 scales beta's prior by sigma^2).
        self._update_gram(st.z)
        h, p = self.h, self.p
        nj_all = np.bincount(st.z, minlength=h.J)
        occ = np.flatnonzero(nj_all > 0)
        n_j = nj_all[occ].astype(float)
        yy = np.bincount(st.z, weights=self.y * self.y, minlength=h.J)[occ]
        stats = self._stats(st)
        L1, L2 = st.lam1[st.c[occ]], st.lam2[st.c[occ]]
        target, cache = self._sig2_marginal_logtarget(st, occ, yy, n_j)
        s_old = np.log(st.sig2[occ])
        # proposal: the conjugate part with a flat intercept prior (D00 = 0),
        # which does not depend on the current sigma^2 (independence MH)
        Lref, _ = self._precision_chol(st, occ, np.zeros(occ.size))
        v = torch.linalg.solve_triangular(
            Lref, torch.from_numpy(self.Xy[occ])[:, :, None], upper=False
        )
        mAm = (v * v).sum(dim=(1, 2)).numpy()
        A_approx = h.a + 0.5 * n_j + 0.5 * p
        B_approx = (
            h.b
            + 0.5 * np.maximum(yy - mAm, 0.0)
            + L1 * L1 * stats["T"][occ] / (8.0 * L2)
        )
        cc = L1 / (2.0 * np.sqrt(L2))
        s_new, log_ratio = _laplace_t_proposal(
            self.rng,
            s_old,
            A_approx,
            B_approx,
            cc,
            p,
            exact_logtarget=target,
        )
        Lold = cache[s_old.tobytes()]
        acc = (np.log(self.rng.random(occ.size)) < log_ratio) & np.isfinite(log_ratio)
        sig2 = np.where(acc, np.exp(s_new), np.exp(s_old))
        self.sig_acc += int(acc.sum())
        self.sig_tries += acc.size
        Lnew = cache[s_new.tobytes()]
        L = torch.where(torch.from_numpy(acc)[:, None, None], Lnew, Lold)
        st.sig2[occ] = sig2
        eps = torch.from_numpy(self.rng.standard_normal((occ.size, self.q, 1)))
        sd = torch.from_numpy(np.sqrt(sig2))[:, None, None]
        rhs = torch.from_numpy(self.Xy[occ])[:, :, None] + sd * (L @ eps)
        st.beta[occ] = torch.cholesky_solve(rhs, L).squeeze(-1).numpy()
        st.mu = None
        st.extra["stats"] = None

    def _step_tau(self, st: State) -> None:
        # exact (Li & Lin 2010, re-expressed on (0,1)): omega = tau/(1-tau) ~
        # Inverse-Gaussian(mean lam1/(2 lam2 |beta|), shape lam1^2/(4 lam2 sig2)),
        # drawn with the *current* beta (the reference code uses the previous one).
        L1 = st.lam1[st.c][:, None]
        L2 = st.lam2[st.c][:, None]
        ab = np.maximum(np.abs(st.beta[:, self.off :]), 1e-300)
        mean = np.minimum(L1 / (2.0 * L2 * ab), 1e300)
        shape = np.broadcast_to(L1 * L1 / (4.0 * L2 * st.sig2[:, None]), mean.shape)
        om = inverse_gaussian_rv(self.rng, mean, shape)
        st.omega = np.minimum(np.maximum(om, OMEGA_MIN), OMEGA_MAX)
        st.extra["stats"] = None

    def _lam_logtarget(self, st, stats, lam1, lam2, active):
        # per k: sum over components j with c_j = k of the Eq. (6) and (7) terms
        # (beta AND tau both depend on lambda), plus the Gamma priors; collapsed:
        # the Eq. (5) density of beta_j (tau integrated out) instead.
        h = self.h
        lp = self._prior_terms(st, lam1[st.c], lam2[st.c], pairs=True)
        lik = np.bincount(st.c, weights=np.where(active, lp, 0.0), minlength=h.K)
        prior = log_gamma_pdf(lam1, h.s1, h.V / 2.0) + log_gamma_pdf(
            lam2, h.s2, h.V / 2.0
        )
        return lik + prior

    def _step_lambda(
        self, st: State, adapt: bool, it: int, active: Optional[np.ndarray] = None
    ) -> None:
        # Random-walk MH on log lambda_{1,k} and log lambda_{2,k} in turn with the
        # exact conditional (Gamma prior + beta term + tau term incl. truncation
        # constant; Jacobian of the log transform).  The reference code omits the
        # prior, the beta term and the truncation constant.  Components with no
        # member draw (exactly) from the prior.  Step sizes adapt only in burn-in.
        h, K = self.h, self.h.K
        stats = self._stats(st)
        if active is None:
            active = np.ones(h.J, dtype=bool)
        used = np.bincount(st.c[active], minlength=K) > 0
        for which in (0, 1):
            cur = self._lam_logtarget(st, stats, st.lam1, st.lam2, active)
            cur = cur + np.log(st.lam1) + np.log(st.lam2)
            step = self.lam_step[which] * self.rng.standard_normal(K)
            l1 = st.lam1 * np.exp(step) if which == 0 else st.lam1
            l2 = st.lam2 * np.exp(step) if which == 1 else st.lam2
            new = (
                self._lam_logtarget(st, stats, l1, l2, active) + np.log(l1) + np.log(l2)
            )
            ratio = new - cur
            acc = (np.log(self.rng.random(K)) < ratio) & np.isfinite(ratio) & used
            if which == 0:
                st.lam1 = np.where(acc, l1, st.lam1)
            else:
                st.lam2 = np.where(acc, l2, st.lam2)
            self.lam_acc[which] += acc & used
            self.lam_tries[which] += used
            if adapt:
                gain = 1.0 / np.sqrt(it + 1.0)
                rate = np.minimum(1.0, np.exp(np.minimum(ratio, 0.0)))
                self.lam_step[which] = np.where(
                    used,
                    np.clip(
                        self.lam_step[which] * np.exp(gain * (rate - 0.44)), 1e-3, 5.0
                    ),
                    self.lam_step[which],
                )
        # unused penalty components: exact draw from the Gamma priors
        free = ~used
        if free.any():
            nf = int(free.sum())
            st.lam1[free] = np.exp(log_gamma_rv(self.rng, np.full(nf, h.s1))) / (
                h.V / 2.0
            )
            st.lam2[free] = np.exp(log_gamma_rv(self.rng, np.full(nf, h.s2))) / (
                h.V / 2.0
            )

    def _step_empty(self, st: State, n_j: np.ndarray) -> None:
        # Components without samples: their joint conditional of
        # (sigma^2, tau, beta) is the prior given lambda_{c_j}, drawn exactly
        # as one block: sigma^2 ~ IG(a, b), tau | sigma^2 ~ Eq. (7),
        # beta | tau, sigma^2 ~ Eq. (6) (intercept ~ N(0, s^2)).  The reference
        # code resets tau to 0.5 and leaves beta at 0 instead.
        empty = np.flatnonzero(n_j == 0)
        if empty.size == 0:
            return
        h, m = self.h, empty.size
        w = np.exp(st.log_w - np.logaddexp.reduce(st.log_w))
        cw = np.cumsum(w / w.sum())
        st.c[empty] = np.minimum(
            np.searchsorted(cw, self.rng.random(m), side="right"), h.K - 1
        )
        sig2 = h.b / np.exp(log_gamma_rv(self.rng, np.full(m, h.a)))
        L1 = st.lam1[st.c[empty]][:, None]
        L2 = st.lam2[st.c[empty]][:, None]
        gam = np.broadcast_to(L1 * L1 / (8.0 * L2 * sig2[:, None]), (m, self.p))
        omega = truncated_tau_odds_rv(self.rng, gam)
        sd = np.sqrt(sig2[:, None] / (L2 * (1.0 + omega)))
        beta = np.empty((m, self.q))
        beta[:, self.off :] = sd * self.rng.standard_normal((m, self.p))
        if self.off:
            beta[:, 0] = np.sqrt(h.intercept_var) * self.rng.standard_normal(m)
        st.sig2[empty] = sig2
        st.omega[empty] = omega
        st.beta[empty] = beta
        st.extra["stats"] = None
        if st.mu is not None:
            st.mu[:, empty] = self.X @ beta.T

    # ---------------------------------------------------------------- sweep
    def sweep(self, st: State, adapt: bool, it: int) -> None:
        """One full sweep, in the order of the authors' code."""
        self._step_z(st)
        self._stick_breaking(st)
        self._step_alpha(st)
        self._step_c(st)
        self._step_tau(st)  # tau | beta, c, lambda, sigma^2 after the collapsed c draw
        self._step_w(st)
        n_j = np.bincount(st.z, minlength=self.h.J).astype(float)
        # (sigma^2, beta) | z, c, tau, lambda as one block
        self._step_sig2_beta(st)
        # {lambda, parameters of empty components} as one block: lambda from its
        # conditional with the empty components' (c, sigma^2, tau, beta)
        # integrated out (their prior integrates to one), then those from their
        # prior given the new lambda.  Without this, prior draws of the empty
        # components pin lambda to its current value and lambda mixes slowly.
        for _ in range(LAMBDA_STEPS):
            self._step_lambda(st, adapt, it, n_j > 0)
        self._step_tau(st)  # tau | ..., new lambda after the collapsed lambda draw
        self._step_empty(st, n_j)

    def log_posterior(self, st: State) -> Dict[str, float]:
        """Joint log density of data and every sampled quantity (up to a constant
        that depends on nothing sampled), and the complete-data log-likelihood."""
        h, K = self.h, self.h.K
        resid = self.y - self._mu(st)[np.arange(self.n), st.z]
        s2z = st.sig2[st.z]
        loglik = float(
            np.sum(-0.5 * (LOG_2PI + np.log(s2z)) - resid * resid / (2.0 * s2z))
        )
        lp = loglik + float(np.sum(st.log_pi[st.z]))
        # u_j ~ Beta(1, alpha): log alpha + (alpha - 1) log(1 - u_j)
        lp += float(np.sum(np.log(st.alpha) + (st.alpha - 1.0) * st.log_1mu))
        lp += float(log_gamma_pdf(np.array(st.alpha), h.e, h.f))
        lp += float(np.sum(log_invgamma_pdf(st.sig2, h.a, h.b)))
        # w ~ Dir(1/K) and c_j ~ Cat(w)
        a0 = 1.0 / K
        lp += float(gammaln(1.0) - K * gammaln(a0) + (a0 - 1.0) * np.sum(st.log_w))
        lp += float(np.sum(st.log_w[st.c]))
        # beta and tau given c
        pr = log_prior_beta_tau(
            self._stats(st), self.p, st.sig2, st.lam1[st.c], st.lam2[st.c], pairs=True
        )
        lp += float(np.sum(pr))
        if self.off:
            b0 = st.beta[:, 0]
            lp += float(
                np.sum(
                    -0.5 * (LOG_2PI + np.log(h.intercept_var))
                    - b0 * b0 / (2.0 * h.intercept_var)
                )
            )
        lam_prior = float(np.sum(log_gamma_pdf(st.lam1, h.s1, h.V / 2.0)))
        lam_prior += float(np.sum(log_gamma_pdf(st.lam2, h.s2, h.V / 2.0)))
        lp += lam_prior
        # marginal: tau integrated out (Eq. 5) and the empty components'
        # (c, sigma^2, tau, beta) integrated out (their prior integrates to 1)
        occ = np.bincount(st.z, minlength=h.J) > 0
        lpm = loglik + float(np.sum(st.log_pi[st.z]))
        lpm += float(np.sum(np.log(st.alpha) + (st.alpha - 1.0) * st.log_1mu))
        lpm += float(log_gamma_pdf(np.array(st.alpha), h.e, h.f))
        lpm += float(gammaln(1.0) - K * gammaln(a0) + (a0 - 1.0) * np.sum(st.log_w))
        lpm += float(np.sum(st.log_w[st.c[occ]]))
        lpm += float(np.sum(log_invgamma_pdf(st.sig2[occ], h.a, h.b)))
        on = log_orthant_normal(
            self._stats(st), self.p, st.sig2, st.lam1[st.c], st.lam2[st.c], pairs=True
        )
        lpm += float(np.sum(on[occ]))
        if self.off:
            b0 = st.beta[occ, 0]
            lpm += float(
                np.sum(
                    -0.5 * (LOG_2PI + np.log(h.intercept_var))
                    - b0 * b0 / (2.0 * h.intercept_var)
                )
            )
        lpm += lam_prior
        return {
            "log_posterior": lp,
            "log_posterior_marginal": lpm,
            "log_likelihood": loglik,
        }


# --------------------------------------------------------------------------
# one chain, as run by DMMMEN.fit (possibly in a joblib worker)
# --------------------------------------------------------------------------


def run_chain(
    X: np.ndarray,
    y: np.ndarray,
    hyper: Hyper,
    seed: Any,
    n_iter: int,
    burn: int,
    thin: int,
    n_threads: Optional[int] = None,
) -> Dict[str, Any]:
    """Run one chain of ``n_iter`` sweeps and return its kept draws and traces.

    ``seed`` is anything ``numpy.random.default_rng`` accepts (a
    ``SeedSequence`` spawned from the estimator's ``random_state``).
    ``n_threads`` limits torch and BLAS threads inside the chain (set when the
    chain runs in a worker process).  The chain starts from uniformly random
    allocations.
    """
    if n_threads is not None:
        from threadpoolctl import threadpool_limits

        old = torch.get_num_threads()
        torch.set_num_threads(n_threads)
        try:
            with threadpool_limits(limits=n_threads):
                return run_chain(X, y, hyper, seed, n_iter, burn, thin)
        finally:
            torch.set_num_threads(old)
    import time

    t0, c0 = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(seed)
    J = hyper.J
    n = X.shape[0]
    sampler = Sampler(X, y, hyper, rng)
    st = sampler.initial_state(rng.integers(0, J, size=n))
    keep_idx = np.arange(burn, n_iter, thin)
    T, q = keep_idx.size, X.shape[1]
    zdtype = np.uint8 if J < 256 else np.int32
    out = {
        "z": np.empty((T, n), dtype=zdtype),
        "beta": np.empty((T, J, q)),
        "sig2": np.empty((T, J)),
        "log_pi": np.empty((T, J)),
        "lam": np.empty((T, J, 2)),
        "trace": np.empty(n_iter),
        "marginal_trace": np.empty(n_iter),
        "loglik": np.empty(n_iter),
    }
    slot = 0
    for it in range(n_iter):
        sampler.sweep(st, adapt=it < burn, it=it)
        lp = sampler.log_posterior(st)
        out["trace"][it] = lp["log_posterior"]
        out["marginal_trace"][it] = lp["log_posterior_marginal"]
        ll = sampler.loglik_matrix(st) + st.log_pi[None, :]
        out["loglik"][it] = float(np.sum(np.logaddexp.reduce(ll, axis=1)))
        if it >= burn and (it - burn) % thin == 0:
            out["z"][slot] = st.z
            out["beta"][slot] = st.beta
            out["sig2"][slot] = st.sig2
            out["log_pi"][slot] = st.log_pi
            out["lam"][slot, :, 0] = st.lam1[st.c]
            out["lam"][slot, :, 1] = st.lam2[st.c]
            slot += 1
    out["counters"] = {
        "sig_acc": float(sampler.sig_acc),
        "sig_tries": float(sampler.sig_tries),
        "lam_acc": float(sampler.lam_acc.sum()),
        "lam_tries": float(sampler.lam_tries.sum()),
    }
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = time.process_time() - c0
    return out
