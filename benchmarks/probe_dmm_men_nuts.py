"""Probe (issue 18): does HMC on DMM-MEN's allocation-marginal posterior mix
better than the Gibbs sampler at the paper's size?

Not part of the package and not run by the tests: it needs JAX and NumPyro,
installed in a separate virtual environment (they are not dependencies):

    python -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax numpyro arviz-stats==0.8.*

The problem file is the one ``bench_dmm_men_modes.py --cache FILE`` writes
(``Xd`` with the intercept column, ``y``).  The model is DMM-MEN's, with
every discrete and auxiliary variable summed or integrated out: the
allocations z (mixture likelihood), tau (the orthant-normal prior of
Eq. 5), the penalty assignments c and their weights w ~ Dir(1/K) (a sum over
all K**J = 729 assignments with Dirichlet-multinomial weights).  Whitened
coefficients (Stan's QR reparameterisation on the centred design) and
centred intercepts; NUTS with a diagonal metric adapted in warm-up.

Usage::

    /tmp/jaxenv/bin/python benchmarks/probe_dmm_men_nuts.py N_WARMUP N_DRAWS SEED MAX_TREE_DEPTH [PROBLEM.npz] [OUT.npz]
    /tmp/jaxenv/bin/python benchmarks/probe_dmm_men_nuts.py --hessian-metric N_WARMUP N_DRAWS SEED MAX_TREE_DEPTH [PROBLEM.npz] [OUT.npz]
    /tmp/jaxenv/bin/python benchmarks/probe_dmm_men_nuts.py --summary OUT.npz

``--hessian-metric``: after the diagonal warm-up, a fixed dense metric, the
inverse of the potential's Hessian at the last warm-up state (made positive
definite), with N_WARMUP // 2 more draws to adapt the step size.

The second form prints the single-chain bulk ESS (ArviZ) of the potential
energy, the mixture log-likelihood and the population map's top-20 entries
from a saved run.
"""

import itertools
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import gammaln, log_ndtr, logsumexp
from numpyro.infer import MCMC, NUTS, init_to_value

jax.config.update("jax_enable_x64", True)


def summary(path):
    from arviz_stats.base import array_stats as a

    d = np.load(path)

    def ess(x):
        return float(
            a.ess(np.asarray(x)[None, :], method="bulk", chain_axis=0, draw_axis=1)
        )

    v = d["v"]
    log1mv = np.log1p(-v)
    cum = np.concatenate([np.zeros((len(v), 1)), np.cumsum(log1mv, 1)], 1)
    pi = np.exp(np.concatenate([np.log(v) + cum[:, :-1], cum[:, -1:]], 1))
    pop = np.einsum("tj,tjp->tp", pi, d["beta"])  # sum_j pi_j beta_j
    top = np.argsort(-np.abs(pop.mean(0)))[:20]
    e = [ess(pop[:, k]) for k in top]
    print(f"draws {len(d['pe'])}, mean leapfrog steps {float(np.mean(d['ns'])):.1f}")
    print(
        f"bulk ESS: potential energy {ess(d['pe']):.1f}, mixture log-lik {ess(d['mixll']):.1f}, "
        f"population map top-20 worst {min(e):.1f} median {float(np.median(e)):.1f}"
    )


HESSIAN = "--hessian-metric" in sys.argv
if HESSIAN:
    sys.argv.remove("--hessian-metric")
if sys.argv[1] == "--summary":
    summary(sys.argv[2])
    sys.exit(0)
problem = sys.argv[5] if len(sys.argv) > 5 else "/tmp/i18c/problem_class1.npz"
out_path = sys.argv[6] if len(sys.argv) > 6 else None
d = np.load(problem)
X = d["Xd"][:, 1:]
y = d["y"]
n_warm = int(sys.argv[1])
n_samp = int(sys.argv[2])
seed = int(sys.argv[3])
maxdepth = int(sys.argv[4]) if len(sys.argv) > 4 else 8
J, K, p = 6, 3, X.shape[1]
iv = (10 * np.sqrt(np.mean(y * y))) ** 2
xbar = X.mean(0)
Xc = X - xbar
Qm, Rm = np.linalg.qr(Xc)
sc = np.sqrt(len(y) - 1)
Qs = Qm * sc
Rs = Rm / sc  # Xc = Qs Rs, Qs'Qs = (n-1) I
Rinv = np.linalg.inv(Rs)
Xj, yj = jnp.asarray(Qs), jnp.asarray(y)
Rinv_j, xbar_j = jnp.asarray(Rinv), jnp.asarray(xbar)
C = np.array(list(itertools.product(range(K), repeat=J)))  # 729 x J
cnt = np.stack([(C == k).sum(1) for k in range(K)], 1)
a0 = 1.0 / K
log_dm = (
    gammaln(K * a0) - gammaln(K * a0 + J) + np.sum(gammaln(a0 + cnt) - gammaln(a0), 1)
)  # Dirichlet-multinomial
C, log_dm = jnp.asarray(C), jnp.asarray(log_dm)


def log_on(A1, B2, s2, L1, L2):  # orthant normal, (J,K)
    cc = L1 / (2.0 * jnp.sqrt(L2 * s2))
    return (
        -(L1 * A1 + L2 * B2) / (2.0 * s2)
        - p * jnp.log(2.0)
        - 0.5 * p * (jnp.log(2 * jnp.pi) + jnp.log(s2) - jnp.log(L2))
        - p * log_ndtr(-cc)
        - 0.5 * p * cc * cc
    )


def model():
    alpha = numpyro.sample("alpha", dist.Gamma(5.0, 1.0))
    v = numpyro.sample("v", dist.Beta(jnp.ones(J - 1), alpha * jnp.ones(J - 1)))
    log1mv = jnp.log1p(-v)
    cum = jnp.concatenate([jnp.zeros(1), jnp.cumsum(log1mv)])
    log_pi = jnp.concatenate([jnp.log(v) + cum[:-1], cum[-1:]])
    sig2 = numpyro.sample("sig2", dist.InverseGamma(0.5 * jnp.ones(J), 0.5))
    lam1 = numpyro.sample("lam1", dist.Gamma(4.0 * jnp.ones(K), 0.5))
    lam2 = numpyro.sample("lam2", dist.Gamma(1.0 * jnp.ones(K), 0.5))
    c0 = numpyro.sample(
        "c0", dist.ImproperUniform(dist.constraints.real, (), event_shape=(J,))
    )
    theta = numpyro.sample(
        "theta", dist.ImproperUniform(dist.constraints.real, (), event_shape=(J, p))
    )
    beta = theta @ Rinv_j.T  # beta_j = Rinv theta_j (constant Jacobian)
    b0 = c0 - beta @ xbar_j
    numpyro.deterministic("beta", beta)
    numpyro.factor("b0prior", dist.Normal(0.0, jnp.sqrt(iv)).log_prob(b0).sum())
    A1 = jnp.abs(beta).sum(1)[:, None]
    B2 = (beta * beta).sum(1)[:, None]
    on = log_on(A1, B2, sig2[:, None], lam1[None, :], lam2[None, :])  # J x K
    lp_c = logsumexp(log_dm + on[jnp.arange(J)[None, :], C].sum(1))
    numpyro.factor("prior_beta", lp_c)
    mu = c0[None, :] + Xj @ theta.T
    ll = (
        -0.5 * (jnp.log(2 * jnp.pi) + jnp.log(sig2))[None, :]
        - (yj[:, None] - mu) ** 2 / (2 * sig2)[None, :]
    )
    mix = logsumexp(ll + log_pi[None, :], axis=1).sum()
    numpyro.factor("lik", mix)
    numpyro.deterministic("mixll", mix)


rng = np.random.default_rng(seed)
z0 = rng.integers(0, J, len(y))
bet, b0s, s2s = [], [], []
for j in range(J):
    m = z0 == j
    Xm = np.column_stack([np.ones(m.sum()), X[m]])
    A = Xm.T @ Xm + np.eye(p + 1)
    bb = np.linalg.solve(A, Xm.T @ y[m])
    b0s.append(bb[0])
    bet.append(bb[1:])
    s2s.append(np.mean((y[m] - Xm @ bb) ** 2))
init = dict(
    alpha=5.0,
    v=np.full(J - 1, 0.2),
    sig2=np.array(s2s),
    lam1=np.full(K, 8.0),
    lam2=np.full(K, 2.0),
    c0=np.array(b0s) + np.array(bet) @ xbar,
    theta=np.array(bet) @ Rs.T,
)
kern = NUTS(
    model,
    init_strategy=init_to_value(values={k: jnp.asarray(v) for k, v in init.items()}),
    max_tree_depth=maxdepth,
    dense_mass=False,
)
t0, c0 = time.perf_counter(), time.process_time()
run_key, run_init, run_warm = seed, None, n_warm
if HESSIAN:
    # Phase 1: diagonal-metric warm-up only (N_WARMUP draws) to reach the
    # typical set.  Phase 2: a dense metric from the curvature there, the
    # inverse of the potential's Hessian at the last warm-up state (its
    # eigenvalues floored at 1e-6 of the largest, negatives flipped, so it
    # is positive definite), kept fixed; the step size is adapted in another
    # N_WARMUP // 2 draws, then N_DRAWS are kept.
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import initialize_model

    warm = MCMC(kern, num_warmup=n_warm, num_samples=1, progress_bar=False)
    warm.run(jax.random.PRNGKey(seed))
    z_last = warm.last_state.z
    info = initialize_model(jax.random.PRNGKey(seed), model)
    flat, unravel = ravel_pytree(z_last)

    def pot(f):
        return info.potential_fn(unravel(f))

    hvp = jax.jit(lambda v: jax.jvp(jax.grad(pot), (flat,), (v,))[1])
    eye = jnp.eye(flat.size)
    H = np.stack([np.asarray(hvp(eye[i])) for i in range(flat.size)])
    H = 0.5 * (H + H.T)
    ev, evec = np.linalg.eigh(H)
    print(
        "Hessian eigenvalues: min", ev.min(), "max", ev.max(),
        "negative", int((ev < 0).sum()), "of", ev.size, flush=True,
    )
    ev = np.maximum(np.abs(ev), 1e-6 * np.abs(ev).max())
    minv = (evec / ev) @ evec.T
    print("Hessian phase wall s", time.perf_counter() - t0, flush=True)
    kern = NUTS(
        model,
        inverse_mass_matrix=jnp.asarray(minv),
        dense_mass=True,
        adapt_mass_matrix=False,
        max_tree_depth=maxdepth,
    )
    run_key, run_init, run_warm = seed + 1, z_last, max(1, n_warm // 2)
mcmc = MCMC(kern, num_warmup=run_warm, num_samples=n_samp, progress_bar=False)
mcmc.run(
    jax.random.PRNGKey(run_key),
    init_params=run_init,
    extra_fields=("potential_energy", "num_steps", "diverging"),
)
ex = mcmc.get_extra_fields()
s = mcmc.get_samples()
# JAX dispatches asynchronously: wait for the draws before reading the clocks
jax.block_until_ready((ex, s))
el, cpu = time.perf_counter() - t0, time.process_time() - c0
pe = np.asarray(ex["potential_energy"])
ns = np.asarray(ex["num_steps"])
print(
    "wall s",
    el,
    "CPU s",
    cpu,
    "steps mean",
    ns.mean(),
    "div",
    int(np.asarray(ex["diverging"]).sum()),
)
print(
    "lp windows",
    [
        float(-pe[i : i + max(1, len(pe) // 8)].mean())
        for i in range(0, len(pe), max(1, len(pe) // 8))
    ],
)
print("mixll", np.asarray(s["mixll"])[:: max(1, n_samp // 10)])
print("sticks u, last draw, sorted", np.sort(np.asarray(s["v"][-1])))
out_path = out_path or f"/tmp/i18c/nutsqr_seed{seed}.npz"
np.savez(
    out_path,
    pe=pe,
    beta=np.asarray(s["beta"]),
    mixll=np.asarray(s["mixll"]),
    sig2=np.asarray(s["sig2"]),
    v=np.asarray(s["v"]),
    ns=ns,
    seconds=el,
    cpu_seconds=cpu,
)
summary(out_path)
