"""DMM-MEN parallel tempering (issue 18): every tempered update targets the
exact tempered conditional, the replica exchange leaves the product of the
tempered targets invariant, and the estimator option validates, seeds,
saves and loads.

The tempered target of a replica at inverse temperature t is
``p(y | z, beta, sigma^2)^t x prior``.  The brute-force references below use
the identity ``N(y | m, s^2)^t = N(y | m, s^2 / t) (2 pi s^2 / t)^(1/2)
(2 pi s^2)^(-t/2)`` (variance inflation), which is independent of the
sampler's own data-scaling implementation.
"""

import itertools

import numpy as np
import pytest
from scipy import stats
from test_dmm_men_sampler import (
    _block_draws_pvalues,
    _block_sampler,
    _collapsed_problem,
    _tempering_const,
)  # noqa: E402 (tests/ is on sys.path)

from captum_prior.proxy import DMMMEN
from captum_prior.proxy._dmm_men_sampler import (
    Hyper,
    Sampler,
    State,
    replica_exchange,
    run_chain,
)

T_INV = 0.4  # inverse temperature of the tempered checks


def _problem(seed=0, n=7, J=3, t=T_INV):
    return _collapsed_problem(seed, n, J, inv_temp=t)


def _bf_log_marginal_y(st, X0, y0, ivar, z, t):
    """sum_j log int prod_{i in S_j} N(y_i | x_i beta, s_j^2)^t p(beta_j) dbeta_j
    by variance inflation (scipy Gaussians)."""
    lp = 0.0
    for k in range(st.sig2.size):
        S = z == k
        m = int(S.sum())
        if not m:
            continue
        tau = st.omega[k] / (1 + st.omega[k])
        cov_b = np.diag([ivar, *(st.sig2[k] * (1 - tau) / st.lam2[st.c[k]])])
        cov = X0[S] @ cov_b @ X0[S].T + st.sig2[k] / t * np.eye(m)
        lp += stats.multivariate_normal(np.zeros(m), cov).logpdf(y0[S])
        lp += _tempering_const(m, st.sig2[k], t)
    return lp


def test_tempered_allocations_match_brute_force():
    """z_i | beta (paper's update) and z_i | z_-i with beta integrated out
    (collapsed), and the split-merge set marginals, at t = 0.4."""
    smp, st, X0, y0, ivar = _problem()
    J = st.sig2.size
    # given beta: pi_j N(y_i | x_i beta_j, s_j^2)^t
    ref = st.log_pi[None, :] + T_INV * stats.norm.logpdf(
        y0[:, None], X0 @ st.beta.T, np.sqrt(st.sig2)[None, :]
    )
    own = smp.loglik_matrix(st) + st.log_pi[None, :]
    np.testing.assert_allclose(
        own - np.logaddexp.reduce(own, axis=1, keepdims=True),
        ref - np.logaddexp.reduce(ref, axis=1, keepdims=True),
        atol=1e-10,
    )
    # collapsed, including the rank-1 bookkeeping after moves
    for _sweep in range(3):
        smp.extra_record = []
        smp._step_z_collapsed(st)
        for i, z_before, logp in smp.extra_record:
            out = np.empty(J)
            for j in range(J):
                zz = z_before.copy()
                zz[i] = j
                out[j] = st.log_pi[j] + _bf_log_marginal_y(st, X0, y0, ivar, zz, T_INV)
            np.testing.assert_allclose(logp, out - np.logaddexp.reduce(out), atol=1e-9)
        smp.extra_record = None
        smp._step_beta_all(st)
    # split-merge pieces: the set marginals are the tempered ones
    for z in itertools.islice(itertools.product(range(J), repeat=len(y0)), 0, 400, 37):
        z = np.array(z)
        own = sum(smp._log_marglik_set(st, k, np.flatnonzero(z == k)) for k in range(J))
        np.testing.assert_allclose(
            own, _bf_log_marginal_y(st, X0, y0, ivar, z, T_INV), rtol=1e-10
        )


def test_tempered_sigma2_beta_block_targets_exact_conditional():
    """(sigma^2, beta) block at t = 0.4: sigma^2 | z, tau, lambda with beta
    integrated out (KS against the variance-inflated brute force), then
    beta | sigma^2 with the tempered conjugate mean and covariance."""
    smp, st, X0, y0, omega, ivar = _block_sampler(inv_temp=T_INV)
    for _ in range(12):
        smp._step_sig2_beta(st)
    assert _block_draws_pvalues(st, X0, y0, omega, ivar, t=T_INV) > 1e-3


def test_replica_exchange_leaves_product_target_invariant():
    """Two replicas (t = 1 and 0.3) over the 81 allocations of a 4-sample,
    3-component problem (beta, sigma^2, pi fixed): start from exact draws of
    p_1(z_a) p_0.3(z_b), apply the exchange, and both marginals are still
    exact (chi-square); swaps are accepted often enough for power, and the
    Gram caches travel with the states at the right scale."""
    smp, st, X0, y0, _ = _problem(seed=4, n=4, J=3, t=1.0)
    st.sig2 = np.array([0.3, 0.5, 0.4])
    st.beta[1] = st.beta[0] + 0.8
    hot = Sampler(X0, y0, smp.h, np.random.default_rng(7), inv_temp=0.3)
    states = np.array(list(itertools.product(range(3), repeat=4)))
    ll = np.array(
        [
            stats.norm.logpdf(
                y0, np.einsum("nq,nq->n", X0, st.beta[z]), np.sqrt(st.sig2[z])
            ).sum()
            for z in states
        ]
    )
    lprior = np.array([st.log_pi[z].sum() for z in states])
    p1 = np.exp(lprior + ll - np.logaddexp.reduce(lprior + ll))
    p3 = np.exp(lprior + 0.3 * ll - np.logaddexp.reduce(lprior + 0.3 * ll))
    assert 0.5 * np.abs(p1 - p3).sum() > 0.3  # the two targets differ a lot
    rng = np.random.default_rng(1)
    n_rep = 6000
    sa, sb = rng.choice(81, n_rep, p=p1), rng.choice(81, n_rep, p=p3)
    code = np.array([27, 9, 3, 1])
    ca, cb = np.zeros(81), np.zeros(81)
    acc, tries = np.zeros(1), np.zeros(1)

    def copy_state(z):
        s = State(
            **{
                k: getattr(st, k)
                for k in State.__dataclass_fields__
                if k not in ("mu", "extra")
            }
        )
        s.z = states[z].copy()
        s.beta, s.sig2 = st.beta.copy(), st.sig2.copy()
        return s

    for a, b in zip(sa, sb):
        pair = [copy_state(a), copy_state(b)]
        smp._refresh_gram(pair[0].z)
        hot._refresh_gram(pair[1].z)
        replica_exchange([smp, hot], pair, 0, acc, tries)
        ca[int(pair[0].z @ code)] += 1
        cb[int(pair[1].z @ code)] += 1
    assert 0.1 < acc[0] / tries[0] < 0.9
    for counts, p in ((ca, p1), (cb, p3)):
        keep = n_rep * p > 5
        obs = np.append(counts[keep], counts[~keep].sum())
        exp = np.append(n_rep * p[keep], n_rep * p[~keep].sum())
        assert stats.chisquare(obs, exp).pvalue > 1e-3
    # Gram caches travel with the states, on the receiving replica's scale
    n_acc, i = acc[0], 0
    while acc[0] == n_acc:
        pair = [copy_state(sa[i]), copy_state(sb[i])]
        i += 1
        smp._refresh_gram(pair[0].z)
        hot._refresh_gram(pair[1].z)
        replica_exchange([smp, hot], pair, 0, acc, tries)
    for s_, st_ in ((smp, pair[0]), (hot, pair[1])):
        assert np.array_equal(s_._gram_z, st_.z)
        s_._update_gram(st_.z)
        for j in range(3):
            Xs = X0[st_.z == j]
            np.testing.assert_allclose(s_.G[j], s_.inv_temp * Xs.T @ Xs, atol=1e-12)


def _three_regimes(seed=0, n=240):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    g = np.floor(3 * rng.random(n)).astype(int)
    B = np.array([[2.0, -1.5, 0, 0], [0, 0, -2.0, 1.5], [-1.0, 0, 0, 2.0]])
    y = np.einsum("np,np->n", X, B[g]) + 0.1 * rng.standard_normal(n)
    return X, y


@pytest.mark.parametrize(
    "bad, match",
    [
        ((1.5, 2.0), "start at 1"),
        ((1.0, 0.8), "increasing"),
        ((1.0, 1.0), "increasing"),
        ((1.0, float("inf")), "increasing"),
        ("1,2", "temperatures"),
        (2, "temperatures"),
        ((1.0, "hot"), "temperatures"),
    ],
)
def test_temperatures_validated(bad, match):
    X, y = _three_regimes(n=30)
    with pytest.raises(ValueError, match=match) as e:
        DMMMEN(n_iter=4, temperatures=bad).fit(X, y)
    assert "temperatures" in str(e.value)


def test_tempered_fit_seeded_saved_and_untempered_unchanged(tmp_path):
    """temperatures=(1,) is the untempered sampler draw for draw; a tempered
    fit is reproducible under its seed, reports swap acceptance, and
    saves/loads (format 4); a format-3 file loads without tempering."""
    X, y = _three_regimes()
    kw = dict(n_iter=40, n_chains=2, n_jobs=1, check_convergence=False, random_state=2)
    plain = DMMMEN(**kw).fit(X, y)
    one = DMMMEN(temperatures=(1.0,), **kw).fit(X, y)
    np.testing.assert_array_equal(plain.trace_, one.trace_)
    pt = DMMMEN(temperatures=(1.0, 1.4, 2.0), **kw).fit(X, y)
    pt2 = DMMMEN(temperatures=[1, 1.4, 2], **kw).fit(X, y)
    np.testing.assert_array_equal(pt.trace_, pt2.trace_)
    assert not np.array_equal(pt.trace_, plain.trace_)
    d = pt.diagnostics_
    assert d["temperatures"] == [1.0, 1.4, 2.0] and len(d["swap_acceptance"]) == 2
    assert all(0.0 <= a <= 1.0 for a in d["swap_acceptance"])
    path = tmp_path / "pt.safetensors"
    pt.save(path)
    back = DMMMEN.load(path)
    assert tuple(back.temperatures) == (1.0, 1.4, 2.0)
    np.testing.assert_array_equal(back.coef_, pt.coef_)
    assert back.diagnostics_ == pt.diagnostics_
    from captum_prior._serialization import save_state

    tensors, meta = plain._state()
    meta = dict(meta)
    meta["params"] = {k: v for k, v in meta["params"].items() if k != "temperatures"}
    old = tmp_path / "v3.safetensors"
    save_state(old, "DMMMEN", 3, tensors, meta)
    assert DMMMEN.load(old).temperatures is None


def test_run_chain_tempering_cost_and_swaps():
    """run_chain with a ladder keeps the T = 1 replica and records one swap
    acceptance per adjacent pair."""
    X, y = _three_regimes(n=120)
    Xd = np.column_stack([np.ones(len(y)), X])
    h = Hyper(
        J=4, K=2, a=0.5, b=0.5, e=5.0, f=1.0, s1=4.0, s2=1.0, V=1.0, intercept_var=100.0
    )
    out = run_chain(Xd, y, h, 3, 30, 15, 1, options={"temperatures": [1.0, 1.5, 2.2]})
    assert out["temperatures"] == [1.0, 1.5, 2.2]
    assert len(out["swap_acceptance"]) == 2 and max(out["swap_acceptance"]) > 0
    assert np.all(np.isfinite(out["marginal_trace"]))
