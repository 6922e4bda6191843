"""DMM-MEN sampler: each update targets the exact full conditional.

Every check compares draws with a density computed independently by
numerical integration (Kolmogorov-Smirnov), so a wrong term in any
conditional (e.g. the omitted tau or prior terms of the reference code)
makes the test fail.
"""

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import log_ndtr

from captum_prior.proxy._dmm_men_post import (
    chain_diagnostics,
    convergence_problems,
    relabel,
    scalar_summary,
)
from captum_prior.proxy._dmm_men_sampler import (
    Hyper,
    Sampler,
    State,
    beta_tau_stats,
    inverse_gaussian_rv,
    log_orthant_normal,
    log_prior_beta_tau,
    truncated_tau_odds_rv,
)


def _grid_cdf(logpdf, lo, hi, n=20001):
    """CDF on a grid (trapezoid) from an unnormalised log density."""
    x = np.linspace(lo, hi, n)
    lp = logpdf(x)
    w = np.exp(lp - lp.max())
    c = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(x))])
    return x, c / c[-1]


def _ks_grid(samples, x, cdf):
    return stats.kstest(samples, lambda v: np.interp(v, x, cdf)).pvalue


def test_scale_mixture_equals_orthant_normal_prior():
    """Integrating tau out of Eq. (6)-(7) gives the elastic-net prior of Eq. (5)."""
    sig2, lam1, lam2 = 0.7, 1.3, 0.6
    sig = np.sqrt(sig2)
    gam = lam1**2 / (8 * lam2 * sig2)
    for beta in (-1.7, -0.2, 0.05, 0.9, 2.5):

        def joint(t, beta=beta):
            st = beta_tau_stats(np.array([[beta]]), np.array([[t / (1 - t)]]))
            return np.exp(
                log_prior_beta_tau(
                    st, 1, np.array([sig2]), np.array([lam1]), np.array([lam2])
                )[0, 0]
            )

        mix, _ = integrate.quad(joint, 0, 1, limit=200, points=[gam / 2, 0.5])
        # Eq. (5) for p = 1, normalised: exp(-(lam1|b| + lam2 b^2)/(2 sig2)) / C
        log_c = (
            np.log(2 * np.sqrt(2 * np.pi * sig2 / lam2))
            + log_ndtr(-lam1 / (2 * sig * np.sqrt(lam2)))
            + lam1**2 / (8 * lam2 * sig2)
        )
        orthant = np.exp(-(lam1 * abs(beta) + lam2 * beta**2) / (2 * sig2) - log_c)
        assert mix == pytest.approx(orthant, rel=1e-5)
        # the sampler's collapsed (tau integrated out) prior is the same density
        st = beta_tau_stats(np.array([[beta]]), np.ones((1, 1)))
        lon = log_orthant_normal(
            st, 1, np.array([sig2]), np.array([lam1]), np.array([lam2])
        )
        assert np.exp(lon[0, 0]) == pytest.approx(orthant, rel=1e-10)


@pytest.mark.parametrize("gam", [0.01, 0.8, 3.0, 60.0])
def test_truncated_tau_prior_draws(gam):
    """Exact draws of tau ~ Inv-Gamma(1/2, gam) truncated to (0, 1) (Eq. 7)."""
    rng = np.random.default_rng(0)
    om = truncated_tau_odds_rv(rng, np.full(4000, gam))
    tau = om / (1 + om)
    x, cdf = _grid_cdf(lambda t: -1.5 * np.log(t) - gam / t, 1e-6, 1 - 1e-9, 200001)
    assert _ks_grid(tau, x, cdf) > 1e-3
    assert np.all((tau > 0) & (tau < 1))


def test_tau_conditional_inverse_gaussian():
    """omega = tau/(1-tau) | beta, sigma^2, lambda ~ IG: matches the exact
    conditional density of tau from Eq. (6) x Eq. (7)."""
    rng = np.random.default_rng(1)
    beta, sig2, lam1, lam2 = 0.4, 0.5, 2.0, 1.5
    mean = np.full(5000, lam1 / (2 * lam2 * abs(beta)))
    shape = np.full(5000, lam1**2 / (4 * lam2 * sig2))
    om = inverse_gaussian_rv(rng, mean, shape)
    tau = om / (1 + om)
    gam = lam1**2 / (8 * lam2 * sig2)

    def logpdf(t):
        return (
            -0.5 * np.log(1 - t)
            - lam2 * beta**2 / (2 * sig2 * (1 - t))
            - 1.5 * np.log(t)
            - gam / t
        )

    x, cdf = _grid_cdf(logpdf, 1e-6, 1 - 1e-7, 200001)
    assert _ks_grid(tau, x, cdf) > 1e-3


def test_inverse_gaussian_huge_mean_is_finite():
    rng = np.random.default_rng(2)
    om = inverse_gaussian_rv(rng, np.full(1000, 1e200), np.full(1000, 0.3))
    assert np.all(np.isfinite(om)) and np.all(om > 0)


def _lambda_sampler(M, beta, omega, sig2, s1=4.0, s2=1.0, V=1.0):
    p = beta.shape[1]
    h = Hyper(
        J=M, K=M, a=0.5, b=0.5, e=5.0, f=1.0, s1=s1, s2=s2, V=V, intercept_var=None
    )
    X = np.ones((2, p))
    smp = Sampler(X, np.zeros(2), h, np.random.default_rng(4))
    st = State(
        z=np.zeros(2, dtype=np.int64),
        log_pi=np.zeros(M),
        log_1mu=np.zeros(M - 1),
        log_u=np.zeros(M - 1),
        alpha=1.0,
        c=np.arange(M),
        log_w=np.zeros(M),
        beta=beta,
        omega=omega,
        sig2=sig2,
        lam1=np.full(M, 8.0),
        lam2=np.full(M, 2.0),
    )
    return smp, st


def test_lambda_mh_targets_exact_conditional():
    """The lambda step targets, with tau integrated out, Gamma prior x
    Eq. (5): 400 independent chains vs a numerical 2-D grid."""
    M, p = 400, 5
    rng = np.random.default_rng(5)
    b1 = rng.normal(0, 0.5, p)
    o1 = rng.uniform(0.2, 3.0, p)
    beta = np.tile(b1, (M, 1))
    omega = np.tile(o1, (M, 1))
    sig2 = np.full(M, 0.3)
    smp, st = _lambda_sampler(M, beta, omega, sig2)
    for it in range(250):
        smp._step_lambda(st, adapt=it < 100, it=it)
    stt = beta_tau_stats(b1[None, :], o1[None, :])
    g = np.linspace(-6, 5, 500)
    L1, L2 = np.meshgrid(np.exp(g), np.exp(g), indexing="ij")
    lp = log_orthant_normal(
        {k: np.full(L1.size, v[0]) for k, v in stt.items()},
        p,
        np.full(L1.size, 0.3),
        L1.ravel(),
        L2.ravel(),
        pairs=True,
    ).reshape(L1.shape)
    lp += stats.gamma.logpdf(L1, 4.0, scale=2.0) + stats.gamma.logpdf(
        L2, 1.0, scale=2.0
    )
    lp += np.log(L1) + np.log(L2)  # density in log space
    w = np.exp(lp - lp.max())
    for axis, draws in ((1, st.lam1), (0, st.lam2)):
        marg = w.sum(axis=axis)
        cdf = np.cumsum(marg) / marg.sum()
        assert _ks_grid(np.log(draws), g, cdf) > 1e-3


def test_lambda_step_without_members_draws_prior():
    M, p = 400, 2
    smp, st = _lambda_sampler(M, np.zeros((M, p)) + 0.1, np.ones((M, p)), np.ones(M))
    st.c = np.zeros(M, dtype=np.int64)  # only penalty component 0 has members
    draws = []
    for it in range(10):
        smp._step_lambda(st, adapt=False, it=it)
        draws.append(st.lam1[1:].copy())
    d = np.concatenate(draws)
    assert stats.kstest(d, stats.gamma(4.0, scale=2.0).cdf).pvalue > 1e-3


def test_relabel_recovers_injected_permutations():
    rng = np.random.default_rng(6)
    n, J, T = 300, 3, 200
    truth = rng.integers(0, J, n)
    perms = np.array([rng.permutation(J) for _ in range(T)])
    z = np.empty((T, n), dtype=np.int64)
    for t in range(T):
        zt = truth.copy()
        flip = rng.random(n) < 0.05
        zt[flip] = rng.integers(0, J, flip.sum())
        z[t] = perms[t][zt]  # true component k appears as label perms[t][k]
    perm, ref, _ = relabel(z, J)
    inv = np.argsort(perm, axis=1)
    zr = np.take_along_axis(inv, z, axis=1)
    # after relabelling every draw agrees with the reference labelling
    agree = (zr == ref[None, :]).mean(axis=1)
    assert agree.min() > 0.85
    assert (z == z[0][None, :]).mean(axis=1).min() < 0.5  # there was switching


def _ar1(rng, phi, C, n):
    x = np.empty((C, n))
    x[:, 0] = rng.standard_normal(C) / np.sqrt(1 - phi**2)
    e = rng.standard_normal((C, n))
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


def test_diagnostics_on_known_ar1_chain_agree_with_theory_and_arviz():
    """Four stationary AR(1) chains (phi = 0.9): the bulk ESS is close to
    the exact n (1 - phi) / (1 + phi), R-hat ~ 1, MCSE ~ sd / sqrt(ESS); and
    ArviZ's own functions (when installed) give the same numbers."""
    rng = np.random.default_rng(7)
    phi, C, n = 0.9, 4, 3000
    x = _ar1(rng, phi, C, n)
    d = scalar_summary(x)
    exact = C * n * (1 - phi) / (1 + phi)  # 631.6
    assert 0.7 * exact < d["ess_bulk"] < 1.3 * exact
    assert d["rhat"] < 1.01
    sd = 1 / np.sqrt(1 - phi**2)
    assert d["mcse_mean"] == pytest.approx(sd / np.sqrt(exact), rel=0.2)
    az = pytest.importorskip("arviz")
    assert d["rhat"] == pytest.approx(float(az.rhat(x)), rel=1e-10)
    assert d["ess_bulk"] == pytest.approx(float(az.ess(x, method="bulk")), rel=1e-10)
    assert d["ess_tail"] == pytest.approx(float(az.ess(x, method="tail")), rel=1e-10)
    assert d["mcse_mean"] == pytest.approx(float(az.mcse(x)), rel=1e-10)


def test_non_mixing_chains_are_flagged():
    """Chains stuck at different levels (or a random walk) fail R-hat and
    bulk ESS; white noise passes; a constant quantity is not NaN."""
    rng = np.random.default_rng(8)
    white = rng.standard_normal((4, 500))
    stuck = white * 0.1 + np.array([0.0, 0.0, 1.0, 1.0])[:, None]
    walk = np.cumsum(rng.standard_normal((4, 500)), axis=1)
    assert convergence_problems({"white": scalar_summary(white)}) == []
    for bad in (stuck, walk):
        probs = convergence_problems({"q": scalar_summary(bad)})
        assert len(probs) == 1 and "R-hat" in probs[0] and "ESS" in probs[0]
    const = chain_diagnostics(np.ones((2, 50, 3)))
    assert np.all(const["rhat"] == 1.0) and np.all(const["ess_bulk"] == 100)
    with pytest.raises(ValueError, match="n_chains"):
        chain_diagnostics(np.ones(10))


def _block_sampler(M=300, n0=12, seed=9):
    """M components with identical data (n0 rows, intercept + 2 features),
    fixed allocations, tau and lambda: M independent copies of the
    (sigma^2, beta) block."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((n0, 2))
    X0 = np.column_stack([np.ones(n0), x0])
    y0 = 0.7 + x0 @ np.array([1.2, -0.4]) + 0.5 * rng.standard_normal(n0)
    X = np.tile(X0, (M, 1))
    y = np.tile(y0, M)
    ivar = 4.0
    h = Hyper(
        J=M, K=1, a=0.5, b=0.5, e=5.0, f=1.0, s1=4.0, s2=1.0, V=1.0, intercept_var=ivar
    )
    smp = Sampler(X, y, h, np.random.default_rng(seed + 1))
    omega = np.array([0.6, 2.5])
    st = State(
        z=np.repeat(np.arange(M), n0),
        log_pi=np.full(M, -np.log(M)),
        log_1mu=np.zeros(M - 1),
        log_u=np.zeros(M - 1),
        alpha=1.0,
        c=np.zeros(M, dtype=np.int64),
        log_w=np.zeros(1),
        beta=np.zeros((M, 3)),
        omega=np.tile(omega, (M, 1)),
        sig2=np.full(M, 30.0),  # far from the target
        lam1=np.array([1.7]),
        lam2=np.array([0.8]),
    )
    smp._refresh_gram(st.z)
    return smp, st, X0, y0, omega, ivar


def _block_draws_pvalues(st, X0, y0, omega, ivar, lam1=1.7, lam2=0.8):
    """The smaller KS p-value of the draws of :func:`_block_sampler`'s
    (sigma^2, beta) block against their exact law.

    sigma^2 | z, tau, lambda with beta integrated out: IG prior x
    N(y | 0, X Sigma_beta X' + sigma^2 I) (scipy) x the truncated tau prior of
    Eq. (7); then beta | sigma^2 has the conjugate mean A^-1 X'y,
    A = X'X + diag(s2/ivar, lam2/(1-tau)), so the standardised residuals are
    N(0, 1)."""
    n0 = len(y0)
    tau = omega / (1 + omega)

    def logpdf_s(s):
        out = np.empty_like(s)
        for i, sv in enumerate(s):
            s2 = np.exp(sv)
            cov_b = np.diag([ivar, *(s2 * (1 - tau) / lam2)])
            cov_y = X0 @ cov_b @ X0.T + s2 * np.eye(n0)
            lik = stats.multivariate_normal(np.zeros(n0), cov_y).logpdf(y0)
            gam = lam1**2 / (8 * lam2 * s2)
            tig = np.sum(
                0.5 * np.log(gam) - 1.5 * np.log(tau) - gam / tau
            ) - 2 * log_ndtr(-np.sqrt(2 * gam))
            out[i] = stats.invgamma.logpdf(s2, 0.5, scale=0.5) + sv + lik + tig
        return out

    draws = np.log(st.sig2)
    x, cdf = _grid_cdf(logpdf_s, draws.min() - 3, draws.max() + 3, 4001)
    p_sig2 = _ks_grid(draws, x, cdf)
    s2 = st.sig2
    z = np.empty_like(st.beta)
    for j in range(len(s2)):
        A = X0.T @ X0 + np.diag([s2[j] / ivar, *(lam2 / (1 - tau))])
        L = np.linalg.cholesky(np.linalg.inv(A) * s2[j])
        z[j] = np.linalg.solve(L, st.beta[j] - np.linalg.solve(A, X0.T @ y0))
    return min(p_sig2, stats.kstest(z.ravel(), "norm").pvalue)


def test_blocked_sigma2_beta_targets_exact_marginal():
    """(sigma^2, beta) block: sigma^2 | z, tau, lambda with beta integrated
    out.  The reference density is computed independently: IG prior x
    N(y | 0, X Sigma_beta X' + sigma^2 I) (scipy) x the truncated tau prior
    of Eq. (7); beta | sigma^2 then has the conjugate mean."""
    smp, st, X0, y0, omega, ivar = _block_sampler()
    for _ in range(12):
        smp._step_sig2_beta(st)
        st.extra["stats"] = None
    assert _block_draws_pvalues(st, X0, y0, omega, ivar) > 1e-3
    assert smp.sig_acc / smp.sig_tries > 0.5
