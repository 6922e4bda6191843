"""DMM-MEN: Dirichlet-process mixture of linear regressions with multiple elastic nets.

Guo, Huang, Tao, Xing & Lin, *Explaining Deep Learning Models - A Bayesian
Non-parametric Approach* (NeurIPS 2018), §3.3, Eq. (2)-(7).
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError

from captum_prior._serialization import load_state, reading, save_state
from captum_prior._validation import (
    check_choice,
    check_float,
    check_int,
    check_magnitude,
    warn_at_call_site,
)
from captum_prior.errors import ConvergenceDiagnosticWarning
from captum_prior.proxy._dmm_men_post import (
    ESS_BULK_MIN,
    RHAT_MAX,
    apply_permutation,
    convergence_problems,
    modal_allocation,
    relabel,
    scalar_summary,
    vector_summary,
)
from captum_prior.proxy._dmm_men_sampler import LOG_2PI, Hyper, run_chain

ArrayLike = Union[np.ndarray, torch.Tensor, Any]

_KIND = "DMMMEN"
# 3: the ``collapse_allocations`` parameter (sampler switch) is saved; format
# 1 and 2 files were written by the sampler without it and load with
# ``collapse_allocations=False``.
# 4: the ``temperatures`` parameter (parallel tempering) is saved; formats
# 1-3 load with ``temperatures=None``.
_FORMAT_VERSION = 4
_PARAM_NAMES = (
    "n_components",
    "n_penalties",
    "n_iter",
    "burn_in",
    "a",
    "b",
    "e",
    "f",
    "L",
    "R",
    "V",
    "lambda_prior",
    "fit_intercept",
    "intercept_scale",
    "init",
    "label_swaps",
    "collapse_allocations",
    "split_merge",
    "temperatures",
    "collapse_tau",
    "block_sigma",
    "lambda_steps",
    "n_chains",
    "n_jobs",
    "check_convergence",
    "thin",
    "random_state",
    "progress",
    "n_threads",
)


def _to_numpy(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu").numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array or Tensor ({exc})") from None
    return arr


def check_X(
    X: ArrayLike, n_features: Optional[int] = None, name: str = "X"
) -> np.ndarray:
    """2-D, finite, float64 (and the fitted number of columns, if given)."""
    Xa = _to_numpy(X, name)
    if Xa.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples x n_features), got shape {Xa.shape}; "
            "reshape a single sample with X.reshape(1, -1)"
        )
    if not np.isfinite(Xa).all():
        raise ValueError(f"{name} contains NaN or Inf; clean or impute it first")
    check_magnitude(Xa, name)
    if n_features is not None and Xa.shape[1] != n_features:
        raise ValueError(
            f"{name} has {Xa.shape[1]} features but the model was fitted with "
            f"{n_features}; pass the same columns as in fit"
        )
    return Xa


def check_y(y: ArrayLike, n_samples: int, name: str = "y") -> np.ndarray:
    ya = _to_numpy(y, name)
    if ya.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (one target per sample), got shape {ya.shape}; "
            "fit one model per output (e.g. y[:, k]) or use y.ravel() for a column"
        )
    if ya.shape[0] != n_samples:
        raise ValueError(f"{name} has {ya.shape[0]} entries but X has {n_samples} rows")
    if not np.isfinite(ya).all():
        raise ValueError(f"{name} contains NaN or Inf; clean or impute it first")
    check_magnitude(ya, name)
    return ya


class DMMMEN(RegressorMixin, BaseEstimator):
    r"""Dirichlet-process mixture of linear regressions with multiple elastic nets.

    The truncated stick-breaking DP mixture of ``n_components`` linear
    regressions (Eq. 2-3) whose coefficient vectors share ``n_penalties``
    orthant-normal elastic-net priors (Eq. 4-5), written as the scale mixture
    of Eq. (6)-(7) and sampled by Gibbs and Metropolis-Hastings steps whose
    targets are the *exact* full conditionals.  After sampling, the draws are
    relabelled with the classification-based algorithm of Cron & West (2011)
    (linear assignment via ``scipy.optimize.linear_sum_assignment``) and
    summarised by posterior means.

    Departures from the paper and from the authors' R sampler (``dmm_men.r``,
    see ``methods.md`` §5) and why:

    - **Exact full conditionals.** The reference code draws ``c_j`` without
      the tau-prior term, updates lambda by MH without the Gamma priors, the
      beta term and the truncation constant, and proposes sigma^2 from an
      inverse gamma that ignores the tau term.  Here ``c_j`` uses both
      Eq. (6) and (7); the lambda step (random-walk MH on log lambda,
      step sizes adapted during burn-in only) targets Gamma prior x beta-term
      x tau-term (incl. ``Phi(-lambda_1 / (2 sigma sqrt(lambda_2)))^{-p}``)
      in log space; sigma^2 is drawn by an independence MH step (Student-t
      proposal at the Laplace approximation of its exact conditional in
      log sigma^2); tau is drawn with the current beta (Inverse-Gaussian).
      By default (``collapse_tau=True``) ``c_j`` and lambda are drawn with
      tau integrated out (the closed-form Eq. 5), each followed by a fresh
      tau draw: a partially collapsed Gibbs sampler with the same target.
    - **Empty components.** Their ``(c_j, sigma_j^2, tau_j, beta_j)`` are
      drawn exactly from the prior as one block right after lambda, and the
      lambda step integrates them out; drawing lambda given prior draws that
      were themselves drawn given lambda made lambda mix very slowly. (The
      reference code resets tau to 0.5 and leaves beta at 0.)
    - **Several chains and blocked updates** (not in the paper, whose code
      runs one chain): ``n_chains`` chains checked with ArviZ's R-hat and
      ESS; ``(sigma_j^2, beta_j)`` drawn as one block (sigma^2 with beta
      integrated out) and lambda updated ``lambda_steps`` times per sweep.
      These remove the sigma^2-beta and lambda autocorrelation but not the
      slow drift of the allocations between overlapping components, which
      dominates the global fit's mixing
      (``benchmarks/results/dmm_men_mixing_*.md``).
    - **Collapsed allocations** (``collapse_allocations=True``, not in the
      paper or the code, which draw ``z_i`` given beta): ``z_i`` is drawn
      with every beta integrated out under its conditionally conjugate
      Gaussian prior (Eq. 6 given tau), i.e. from the posterior predictive
      of each component given its other members (Neal 2000, Algorithm 3, on
      the truncated stick-breaking model), then beta is redrawn for every
      component (partially collapsed Gibbs, van Dyk & Park 2008).  Exact;
      O(J p^2) per sample and sweep.  Off by default: it speeds up the
      birth and death of small components on small data, but not the slow
      moves between partitions into large components that limit the global
      fit (``benchmarks/results/dmm_men_mixing_remedies.md``).
    - **Split-merge moves** (``split_merge > 0``, not in the paper or the
      code): Metropolis-Hastings proposals that split a component into an
      empty slot or merge two components (Jain & Neal 2004; sequentially
      allocated proposal of Dahl 2003), targeting ``z`` with beta and the
      stick-breaking weights integrated out, followed by fresh draws of both.
    - **Parallel tempering** (``temperatures``, not in the paper or the code):
      every chain runs one replica per temperature ``T`` on the tempered
      target ``p(y | z, beta, sigma^2)^(1/T) x prior`` (the complete-data
      likelihood flattened, the prior untouched), each with the sweep
      above, and after every sweep adjacent replicas propose to exchange
      their states with the exact replica-exchange acceptance (Geyer 1991;
      Earl & Deem 2005).  Only the ``T = 1`` replica is kept, so the target
      is unchanged; the cost per sweep grows with the number of
      temperatures.
    - **Not adopted: Hamiltonian Monte Carlo.**  A probe ran NUTS on the
      model with z, tau, c and w summed or integrated out, with whitened
      coefficients.  At the paper's size it mixed no better per CPU second
      than this Gibbs sampler: every draw hit the maximum tree depth (255
      leapfrog steps), and the log-posterior ESS was about 10 from 300
      draws (``benchmarks/results/dmm_men_nuts_probe.md``); a dense metric from
      the posterior's Hessian did worse (ESS ~2), as a fifth of its
      eigenvalues are negative at a typical point.
    - **Not a remedy: a sparse concentration or a smaller truncation.**
      With ``e=1, f=200`` (alpha of prior mean 0.005) all six components
      stay filled with hundreds of images each, so the overlap is not an
      over-fitted mixture's; ``n_components=3`` or ``2`` mixes no better
      (``benchmarks/results/dmm_men_mixing_remedies.md`` §5).  At the
      paper's size, the R-hat / ESS thresholds would take at least 90-170
      CPU-hours of this sampler, by the 60 000-sweep run's autocorrelation.
    - **Label-invariant monitoring.** A component's coefficients are only
      defined up to the labelling, so R-hat and ESS of them are not
      diagnostics of the sampler.  The convergence warning monitors the
      marginal log posterior and the top ``n_top_monitored`` entries of the
      label-invariant *population coefficient map*
      ``(1/n) sum_i beta_{z_i}`` (``population_coef_``); the largest
      component's coefficients are still reported in ``diagnostics_``.
    - **lambda prior shapes.** The paper writes ``lambda_1 ~ Gamma(R, V/2)``,
      ``lambda_2 ~ Gamma(L, V/2)``; the code swaps them.  ``lambda_prior``
      picks one (``"paper"``, the default, or ``"code"``); the numeric
      defaults ``L=1, R=4, V=1`` are the code's.
    - **Intercept.** Eq. (1) has none.  ``fit_intercept=True`` (default) adds
      an unpenalised per-component intercept with prior ``N(0, s^2)``,
      ``s = intercept_scale`` (default ``10 * RMS(y)``), which models images
      (where a zero input is meaningful) far better.  ``fit_intercept=False``
      is the paper's model.
    - **Initialisation.** Uniformly random allocations (or k-means on the
      standardised ``[X, y]``), then a ridge fit per component; tau starts
      at 0.5 and alpha at ``e`` as in the code.  k-means on binary LIME
      designs tends to split along one feature, leaving that feature
      constant inside a component, which the sampler then takes long to undo.
    - **Relabelling.** The reference allocation is the kept draw with the
      highest log posterior, then iterated (Cron & West) until stable.

    Args:
        n_components (int, optional): DP truncation level J (the paper's
                    code: 6).  A larger J (e.g. 12) leaves empty slots for
                    ``split_merge`` to split into, a departure from the
                    paper's model; at the paper's size (7 000 images) J = 12
                    with one split-merge proposal per sweep did not mix
                    better (acceptance 0.001, ~4x the cost per sweep;
                    ``benchmarks/results/dmm_men_mixing_remedies.md``).
                    Default: 6
        n_penalties (int, optional): number of elastic-net prior components K. Default: 3
        n_iter (int, optional): MCMC sweeps in total (the code uses 20 000). Default: 2000
        burn_in (int, optional): sweeps discarded (and used to adapt the
                    lambda random-walk steps); ``None`` = ``n_iter // 2``. Default: None
        a (float, optional): shape of sigma_j^2 ~ Inv-Gamma(a, b). Default: 0.5
        b (float, optional): scale of sigma_j^2 ~ Inv-Gamma(a, b). Default: 0.5
        e (float, optional): shape of alpha ~ Gamma(e, rate f). Default: 5.0
        f (float, optional): rate of alpha ~ Gamma(e, rate f). Default: 1.0
        L (float, optional): a lambda prior shape (see ``lambda_prior``). Default: 1.0
        R (float, optional): a lambda prior shape (see ``lambda_prior``). Default: 4.0
        V (float, optional): both lambda priors have rate ``V / 2``. Default: 1.0
        lambda_prior (str, optional): ``"paper"``: lambda_1 ~ Gamma(R, V/2),
                    lambda_2 ~ Gamma(L, V/2); ``"code"``: the shapes swapped.
                    Default: ``"paper"``
        fit_intercept (bool, optional): per-component unpenalised intercept. Default: True
        intercept_scale (float, optional): prior sd of the intercepts;
                    ``None`` = ``10 * sqrt(mean(y^2))``. Default: None
        init (str, optional): initial allocations, ``"random"`` (uniform) or
                    ``"kmeans"`` (on standardised ``[X, y]``). Default: ``"random"``
        label_swaps (bool, optional): add Metropolis-Hastings moves that swap
                    the labels of adjacent components (not in the paper; the
                    chain then visits label orderings and relies on the
                    relabelling). Default: False
        collapse_allocations (bool, optional): draw the allocations ``z_i``
                    with beta integrated out (Neal 2000, Algorithm 3),
                    followed by a fresh beta draw; ``False`` draws ``z_i``
                    given beta (paper and code). Both exact.  On 1 000 of the
                    class-1 images (4 x 200 sweeps) it moved the log
                    posterior's R-hat from 1.60 to 1.25 at ~7x the cost per
                    sweep; at the paper's 7 000 images (every component
                    large) it did not change R-hat or ESS and costs ~15x
                    (``benchmarks/results/dmm_men_mixing_remedies.md``), hence
                    off by default. Default: False
        split_merge (int, optional): split-merge Metropolis-Hastings proposals
                    for the allocations per sweep (Jain & Neal 2004, with
                    the sequentially allocated proposal of Dahl 2003; beta
                    and the sticks integrated out; not in the paper); each
                    costs O(n_j p^2). Default: 0
        temperatures (sequence of float, optional): parallel tempering
                    (replica exchange; Geyer 1991, Earl & Deem 2005): the
                    temperature ladder, starting at 1 and strictly
                    increasing, e.g. ``(1, 1.3, 1.7, 2.2)``; each chain runs
                    one replica per temperature (so ``len(temperatures)``
                    times the cost per sweep), swaps adjacent replicas
                    after every sweep and keeps the ``T = 1`` replica's
                    draws.  ``None`` (or ``(1,)``) = no tempering.  The
                    swap acceptance per adjacent pair is in
                    ``diagnostics_["swap_acceptance"]``.  The ladder must be
                    fine where the complete-data log-likelihood varies a
                    lot: on the paper's 7 000-image global fit (its sd ~200
                    nats) adjacent temperatures ~0.8 % apart swap ~30 % of
                    the time, so 8 temperatures reach only T = 1.06, and at
                    the same CPU cost that ladder mixed no better than the
                    plain sampler (``dmm_men_mixing_remedies.md``), hence off
                    by default. Default: None
        collapse_tau (bool, optional): draw ``c_j`` and lambda from their
                    conditionals with tau integrated out (the Eq. 5 density),
                    each followed by a fresh tau draw (partially collapsed
                    Gibbs, van Dyk & Park 2008), which mixes far better;
                    ``False`` uses the plain full conditionals with the tau
                    and beta terms. Both are exact. Default: True
        block_sigma (bool, optional): draw each component's ``(sigma^2, beta)``
                    as one block: sigma^2 from its conditional with beta
                    integrated out (independence MH on the exact target),
                    then beta given sigma^2; ``False`` alternates the two
                    (as the paper and code). Both exact. Default: True
        lambda_steps (int, optional): Metropolis-Hastings updates of the
                    penalties lambda per sweep (each costs O(J K)). Default: 5
        n_chains (int, optional): independent chains, each of ``n_iter``
                    sweeps with its own burn-in, seeded from one
                    ``numpy.random.SeedSequence`` derived from
                    ``random_state``; their kept draws are pooled and
                    relabelled together. Default: 4
        n_jobs (int, optional): worker processes for the chains (joblib);
                    ``None`` = ``min(n_chains, cpu_count)``, ``-1`` = all
                    cores, ``1`` = sequential in this process. The draws do
                    not depend on it. Default: None
        check_convergence (bool, optional): warn with
                    :class:`~captum_prior.errors.ConvergenceDiagnosticWarning`
                    when the rank-normalised split R-hat exceeds 1.01 or the
                    bulk ESS is below 400 for the (marginal) log posterior or
                    the ``n_top_monitored`` largest entries of the
                    label-invariant population coefficient map
                    (``population_coef_``). Default: True
        thin (int, optional): keep every ``thin``-th sweep after burn-in. Default: 1
        random_state (int or numpy Generator, optional): seed; the same seed
                    gives the same fit. Default: None
        progress (bool, optional): show a tqdm progress bar. Default: False
        n_threads (int, optional): BLAS and torch threads used while sampling
                    (restored afterwards). One thread is fastest for the small
                    per-sweep linear algebra and on shared machines; ``None``
                    keeps the current settings. Default: 1

    Attributes:
        coef_ (ndarray): ``(n_components, n_features)`` posterior-mean
                    coefficients (over the kept draws in which the component
                    holds samples; in the others they are prior draws).
        intercept_ (ndarray): ``(n_components,)`` posterior-mean intercepts
                    (0 without intercept), averaged like ``coef_``.
        weights_ (ndarray): ``(n_components,)`` posterior-mean mixture weights pi.
        sigma2_ (ndarray): ``(n_components,)`` posterior-mean noise variances
                    (averaged like ``coef_``).
        penalty_ (ndarray): ``(n_components, 2)`` posterior means of
                    ``(lambda_1, lambda_2)`` of each component's elastic net.
        population_coef_ (ndarray): ``(n_features,)`` posterior mean of the
                    label-invariant coefficient map ``(1/n) sum_i beta_{z_i}``
                    (each training sample's allocated component's
                    coefficients, averaged over samples); see
                    :meth:`population_coef_draws`.
        labels_ (ndarray): ``(n_samples,)`` posterior modal (relabelled) component of each sample.
        component_sizes_ (ndarray): number of samples per component in ``labels_``.
        trace_ (ndarray): ``(n_chains, n_iter)`` joint log posterior of every
                    sampled quantity (incl. tau and the empty components'
                    prior draws) after every sweep.
        marginal_trace_ (ndarray): ``(n_chains, n_iter)`` log posterior with
                    tau and the empty components integrated out (Eq. 5): the
                    monitored "log posterior" of ``diagnostics_``.
        log_likelihood_trace_ (ndarray): ``(n_chains, n_iter)`` mixture log-likelihood
                    ``sum_i log sum_j pi_j N(y_i | x_i beta_j, sigma_j^2)``.
        n_chains_ (int): chains run.
        beta_draws_, weights_draws_, sigma2_draws_, counts_draws_ (ndarray):
                    relabelled kept draws of all chains, chain-major
                    (``n_chains * n_kept`` rows) (intercept in ``beta_draws_[..., 0]``
                    when fitted; ``counts_draws_`` = samples per component).
        relabel_permutations_ (ndarray): ``(n_kept, n_components)``; row ``t``
                    maps relabelled component ``k`` to the raw label of draw ``t``.
        diagnostics_ (dict): ArviZ diagnostics over the chains' kept draws
                    (``arviz_stats.base.array_stats``: rank-normalised split
                    R-hat, bulk and tail ESS, MCSE of the mean, sd) of
                    ``log_posterior_marginal``, ``log_posterior`` (joint) and
                    ``log_likelihood`` and the number of occupied
                    components ``n_occupied``; the worst case over the
                    ``n_top_monitored`` largest entries of the population
                    coefficient map (``top_population_coef``, monitored)
                    and of the most populated component's coefficients
                    (``top_coef_largest_component``: label-dependent,
                    reported only); ``converged`` (both thresholds met for
                    the marginal log posterior and ``top_population_coef``),
                    ``convergence_problems`` (the failing quantities with their
                    R-hat and ESS, as text; empty when converged); MH acceptance
                    rates, relabelling iterations, chain and fit seconds.
                    (Replaces the hand-written ESS and Geweke z.)
    """

    def __init__(
        self,
        n_components: int = 6,
        n_penalties: int = 3,
        n_iter: int = 2000,
        burn_in: Optional[int] = None,
        a: float = 0.5,
        b: float = 0.5,
        e: float = 5.0,
        f: float = 1.0,
        L: float = 1.0,
        R: float = 4.0,
        V: float = 1.0,
        lambda_prior: str = "paper",
        fit_intercept: bool = True,
        intercept_scale: Optional[float] = None,
        init: str = "random",
        label_swaps: bool = False,
        collapse_allocations: bool = False,
        split_merge: int = 0,
        temperatures: Optional[Sequence[float]] = None,
        collapse_tau: bool = True,
        block_sigma: bool = True,
        lambda_steps: int = 5,
        n_chains: int = 4,
        n_jobs: Optional[int] = None,
        check_convergence: bool = True,
        thin: int = 1,
        random_state: Any = None,
        progress: bool = False,
        n_threads: Optional[int] = 1,
    ) -> None:
        self.n_components = n_components
        self.n_penalties = n_penalties
        self.n_iter = n_iter
        self.burn_in = burn_in
        self.a = a
        self.b = b
        self.e = e
        self.f = f
        self.L = L
        self.R = R
        self.V = V
        self.lambda_prior = lambda_prior
        self.fit_intercept = fit_intercept
        self.intercept_scale = intercept_scale
        self.init = init
        self.label_swaps = label_swaps
        self.collapse_allocations = collapse_allocations
        self.split_merge = split_merge
        self.temperatures = temperatures
        self.collapse_tau = collapse_tau
        self.block_sigma = block_sigma
        self.lambda_steps = lambda_steps
        self.n_chains = n_chains
        self.n_jobs = n_jobs
        self.check_convergence = check_convergence
        self.thin = thin
        self.random_state = random_state
        self.progress = progress
        self.n_threads = n_threads

    # ------------------------------------------------------------------ fit
    def _validated(self) -> Dict[str, Any]:
        J = check_int(self.n_components, "n_components", 1)
        K = check_int(self.n_penalties, "n_penalties", 1)
        n_iter = check_int(self.n_iter, "n_iter", 2)
        burn = (
            n_iter // 2
            if self.burn_in is None
            else check_int(self.burn_in, "burn_in", 0)
        )
        if burn >= n_iter:
            raise ValueError(
                f"burn_in ({burn}) must be smaller than n_iter ({n_iter}); keep at "
                "least one sweep after burn-in"
            )
        hyper = {}
        for nm in ("a", "b", "e", "f", "L", "R", "V"):
            hyper[nm] = check_float(getattr(self, nm), nm, 0.0, low_inclusive=False)
        check_choice(self.lambda_prior, "lambda_prior", ("paper", "code"))
        check_choice(self.init, "init", ("kmeans", "random"))
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise TypeError(f"fit_intercept must be a bool, got {self.fit_intercept!r}")
        if self.intercept_scale is not None:
            check_float(
                self.intercept_scale, "intercept_scale", 0.0, low_inclusive=False
            )
        thin = check_int(self.thin, "thin", 1)
        n_chains = check_int(self.n_chains, "n_chains", 1)
        check_int(self.lambda_steps, "lambda_steps", 1)
        check_int(self.split_merge, "split_merge", 0)
        temps = self._temperatures()
        if self.n_jobs is not None:
            n_jobs = check_int(self.n_jobs, "n_jobs", -(10**6))
            if n_jobs == 0:
                raise ValueError(
                    "n_jobs must be a positive int, -1 (all cores) or None"
                )
        for nm in (
            "block_sigma",
            "collapse_tau",
            "collapse_allocations",
            "label_swaps",
            "check_convergence",
        ):
            if not isinstance(getattr(self, nm), (bool, np.bool_)):
                raise TypeError(f"{nm} must be a bool, got {getattr(self, nm)!r}")
        return dict(
            J=J,
            K=K,
            n_iter=n_iter,
            burn=burn,
            thin=thin,
            n_chains=n_chains,
            temperatures=temps,
            **hyper,
        )

    def _temperatures(self) -> Optional[List[float]]:
        """The validated ladder (``None`` = no tempering)."""
        t = self.temperatures
        if t is None:
            return None
        if isinstance(t, (str, bytes)) or not hasattr(t, "__len__"):
            raise ValueError(
                "temperatures must be None or a sequence of floats starting at 1, "
                f"got {t!r}"
            )
        try:
            ts = [float(v) for v in t]
        except (TypeError, ValueError):
            raise ValueError(
                f"temperatures must be a sequence of floats, got {t!r}"
            ) from None
        if not ts or ts[0] != 1.0:
            raise ValueError(
                f"temperatures must start at 1 (the kept replica), got {t!r}"
            )
        if not all(np.isfinite(ts)) or any(b <= a for a, b in zip(ts, ts[1:])):
            raise ValueError(
                f"temperatures must be finite and strictly increasing, got {t!r}"
            )
        return ts if len(ts) > 1 else None

    def _rng(self) -> np.random.Generator:
        rs = self.random_state
        if isinstance(rs, np.random.Generator):
            return rs
        if rs is None or (
            isinstance(rs, (int, np.integer)) and not isinstance(rs, bool)
        ):
            return np.random.default_rng(rs)
        raise TypeError(
            f"random_state must be None, an int or a numpy Generator, got {type(rs).__name__}"
        )

    def fit(self, X: ArrayLike, y: ArrayLike) -> "DMMMEN":
        """Sample the posterior of DMM-MEN given ``X`` (n x p) and ``y`` (n).

        Args:
            X (array or Tensor): ``n_samples x n_features`` inputs (finite, no
                        constant column).
            y (array or Tensor): ``n_samples`` responses (e.g. the logit of a
                        model's class probability, paper §3.1 footnote 1).

        Returns:
            self

        Raises:
            ValueError: NaN/Inf in X or y, constant features, y not 1-D,
                fewer samples than ``n_components``, bad hyper-parameters.
        """
        if self.n_threads is None:
            return self._fit(X, y)
        n_threads = check_int(self.n_threads, "n_threads", 1)
        from threadpoolctl import threadpool_limits

        old = torch.get_num_threads()
        try:
            torch.set_num_threads(n_threads)
            with threadpool_limits(limits=n_threads):
                return self._fit(X, y)
        finally:
            torch.set_num_threads(old)

    def _fit(self, X: ArrayLike, y: ArrayLike) -> "DMMMEN":
        cfg = self._validated()
        Xa = check_X(X)
        ya = check_y(y, Xa.shape[0])
        n, p = Xa.shape
        J, K = cfg["J"], cfg["K"]
        if n < J:
            raise ValueError(
                f"X has {n} samples but n_components={J}; pass at least "
                f"n_components samples or lower n_components"
            )
        sd = Xa.std(axis=0)
        const = np.flatnonzero(sd <= 1e-12 * np.maximum(1.0, np.abs(Xa).max(axis=0)))
        if const.size:
            shown = ", ".join(str(int(c)) for c in const[:10])
            raise ValueError(
                f"X has {const.size} constant feature(s) (columns {shown}"
                f"{', ...' if const.size > 10 else ''}); their coefficients are not "
                "identified: drop them (e.g. X[:, X.std(0) > 0])"
            )
        rng = self._rng()
        t0 = time.perf_counter()
        if self.fit_intercept:
            scale = self.intercept_scale
            if scale is None:
                scale = 10.0 * float(np.sqrt(np.mean(ya * ya))) + 1e-8
            Xd = np.column_stack([np.ones(n), Xa])
            ivar = float(scale) ** 2
        else:
            Xd, ivar = Xa, None
        s1, s2 = (
            (cfg["R"], cfg["L"])
            if self.lambda_prior == "paper"
            else (cfg["L"], cfg["R"])
        )
        hyper = Hyper(
            J=J,
            K=K,
            a=cfg["a"],
            b=cfg["b"],
            e=cfg["e"],
            f=cfg["f"],
            s1=s1,
            s2=s2,
            V=cfg["V"],
            intercept_var=ivar,
        )
        n_iter, burn, thin = cfg["n_iter"], cfg["burn"], cfg["thin"]
        n_chains = cfg["n_chains"]
        # one SeedSequence per chain, all derived from random_state
        seeds = np.random.SeedSequence(
            [int(v) for v in rng.integers(0, 2**32, size=4)]
        ).spawn(n_chains)
        options = {
            "label_swaps": bool(self.label_swaps),
            "collapse_beta_z": bool(self.collapse_allocations),
            "split_merge": int(self.split_merge),
            "collapse_tau": bool(self.collapse_tau),
            "block_sigma": bool(self.block_sigma),
            "lambda_steps": int(self.lambda_steps),
        }
        if cfg["temperatures"] is not None:
            options["temperatures"] = list(cfg["temperatures"])
        n_jobs = self._n_jobs(n_chains)
        args = (Xd, ya, hyper)
        kw = dict(n_iter=n_iter, burn=burn, thin=thin, init=self.init, options=options)
        if n_jobs == 1:
            bar = None
            if self.progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=n_chains, desc="DMM-MEN chains", leave=False)
            chains = []
            for sd in seeds:
                chains.append(run_chain(*args, seed=sd, **kw))
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
        else:
            from joblib import Parallel, delayed

            threads = self.n_threads if self.n_threads is not None else 1
            chains = Parallel(n_jobs=n_jobs, verbose=5 if self.progress else 0)(
                delayed(run_chain)(*args, seed=sd, n_threads=threads, **kw)
                for sd in seeds
            )
        self._pool(chains, cfg, p, n)
        self.diagnostics_["fit_seconds"] = float(time.perf_counter() - t0)
        self.diagnostics_["n_jobs"] = int(n_jobs)
        if self.check_convergence:
            self._warn_convergence()
        return self

    def _n_jobs(self, n_chains: int) -> int:
        """Worker processes: ``n_jobs`` (``-1`` = all cores), or by default as
        many as there are chains and cores (1 when either is 1)."""
        cores = os.cpu_count() or 1
        if self.n_jobs is None:
            return max(1, min(n_chains, cores))
        if self.n_jobs < 0:
            return max(1, min(n_chains, cores + 1 + self.n_jobs))
        return max(1, min(n_chains, int(self.n_jobs)))

    def _pool(self, chains, cfg: Dict[str, Any], p: int, n: int) -> None:
        """Pool the chains' kept draws, relabel them together, summarise."""
        J = cfg["J"]
        C = len(chains)
        z_d = np.concatenate([c["z"] for c in chains])
        beta_d = np.concatenate([c["beta"] for c in chains])
        sig_d = np.concatenate([c["sig2"] for c in chains])
        logpi_d = np.concatenate([c["log_pi"] for c in chains])
        lam_d = np.concatenate([c["lam"] for c in chains])
        trace = np.stack([c["trace"] for c in chains])
        mtrace = np.stack([c["marginal_trace"] for c in chains])
        loglik = np.stack([c["loglik"] for c in chains])
        burn = cfg["burn"]
        keep_idx = np.arange(burn, cfg["n_iter"], cfg["thin"])
        T = keep_idx.size

        # ---- relabelling (Cron & West 2011) over the pooled draws
        kept_lp = trace[:, keep_idx].reshape(-1)
        ref0 = z_d[int(np.argmax(kept_lp))]
        perm, ref, n_rel = relabel(z_d, J, reference=ref0)
        beta_d = apply_permutation(beta_d, perm)
        sig_d = apply_permutation(sig_d, perm)
        pi_d = apply_permutation(np.exp(logpi_d), perm)
        lam_d = apply_permutation(lam_d, perm)
        inv = np.argsort(perm, axis=1)
        z_rel = np.take_along_axis(inv, z_d.astype(np.int64), axis=1)
        labels = modal_allocation(z_rel, J)
        counts = np.stack([np.bincount(zt, minlength=J) for zt in z_rel])

        off = 1 if self.fit_intercept else 0
        self.n_features_in_ = p
        self.n_chains_ = C
        self.beta_draws_ = beta_d
        self.weights_draws_ = pi_d
        self.sigma2_draws_ = sig_d
        self.counts_draws_ = counts
        # means over the draws in which a component holds samples: in the
        # others its parameters are prior draws (heavy-tailed noise)
        occ_w = (counts > 0).astype(float)
        never = occ_w.sum(axis=0) == 0
        occ_w[:, never] = 1.0
        occ_w /= occ_w.sum(axis=0, keepdims=True)
        beta_mean = np.einsum("tj,tjq->jq", occ_w, beta_d)
        self.coef_ = beta_mean[:, off:]
        self.intercept_ = beta_mean[:, 0] if off else np.zeros(J)
        self.weights_ = pi_d.mean(axis=0)
        self.sigma2_ = np.einsum("tj,tj->j", occ_w, sig_d)
        self.penalty_ = lam_d.mean(axis=0)
        self.population_coef_ = self.population_coef_draws().mean(axis=0)
        self.labels_ = labels
        self.component_sizes_ = np.bincount(labels, minlength=J)
        self.trace_ = trace
        self.marginal_trace_ = mtrace
        self.log_likelihood_trace_ = loglik
        self.burn_in_ = burn
        self.relabel_permutations_ = perm
        cnt = {k: sum(c["counters"][k] for c in chains) for k in chains[0]["counters"]}
        self.diagnostics_ = {
            "n_chains": int(C),
            "n_kept_draws": int(T * C),
            "n_kept_draws_per_chain": int(T),
            "sigma2_acceptance": cnt["sig_acc"] / max(cnt["sig_tries"], 1.0),
            "lambda_acceptance": cnt["lam_acc"] / max(cnt["lam_tries"], 1.0),
            "relabel_iterations": int(n_rel),
            "relabelled_draw_fraction": float(
                np.mean(np.any(perm != np.arange(J), axis=1))
            ),
            "label_swaps_accepted": int(cnt["n_swaps"]),
            "split_merge_acceptance": (
                cnt["sm_acc"] / cnt["sm_tries"] if cnt.get("sm_tries") else None
            ),
            "chain_seconds": [float(c["seconds"]) for c in chains],
            "chain_cpu_seconds": [float(c.get("cpu_seconds", np.nan)) for c in chains],
        }
        if "swap_acceptance" in chains[0]:
            # replica exchange: acceptance per adjacent pair, mean over chains
            self.diagnostics_["temperatures"] = list(chains[0]["temperatures"])
            self.diagnostics_["swap_acceptance"] = np.mean(
                [c["swap_acceptance"] for c in chains], axis=0
            ).tolist()
        self.diagnostics_.update(self._convergence_summaries(T, C))

    def population_coef_draws(self) -> np.ndarray:
        """Label-invariant coefficient map of every kept draw, ``(n_kept, n_features)``.

        Draw ``t``: ``(1/n) sum_i beta_{z_i}`` over the training samples, i.e.
        each sample's allocated component's coefficients averaged over samples
        (``sum_j (n_j / n) beta_j``).  Unlike a single component's
        coefficients it does not depend on the labelling, so its R-hat and
        ESS are meaningful without relabelling (Stephens 2000)."""
        self._check_fitted()
        off = 1 if self.fit_intercept else 0
        cnt = self.counts_draws_.astype(float)
        w = cnt / np.maximum(cnt.sum(axis=1, keepdims=True), 1.0)
        return np.einsum("tj,tjq->tq", w, self.beta_draws_[:, :, off:])

    def _convergence_summaries(self, T: int, C: int) -> Dict[str, Any]:
        """ArviZ diagnostics (rank-normalised split R-hat, bulk/tail ESS,
        MCSE) of the monitored quantities over the chains' kept draws."""
        keep = np.arange(self.burn_in_, self.trace_.shape[1], int(self.thin))
        out: Dict[str, Any] = {
            "log_posterior": scalar_summary(self.trace_[:, keep]),
            "log_posterior_marginal": scalar_summary(self.marginal_trace_[:, keep]),
            "log_likelihood": scalar_summary(self.log_likelihood_trace_[:, keep]),
        }
        occ = (self.counts_draws_ > 0).sum(axis=1).reshape(C, T)
        out["n_occupied"] = scalar_summary(occ)
        if T >= 4:
            k = min(self.n_top_monitored, self.coef_.shape[1])
            top = np.argsort(-np.abs(self.population_coef_), kind="stable")[:k]
            pop = self.population_coef_draws()[:, top].reshape(C, T, k)
            out["top_population_coef"] = vector_summary(pop)
            # label-dependent (after relabelling): reported, not monitored
            big = int(np.argmax(self.component_sizes_))
            off = 1 if self.fit_intercept else 0
            k = min(self.n_top_monitored, self.coef_.shape[1])
            top = np.argsort(-np.abs(self.coef_[big]), kind="stable")[:k]
            draws = self.beta_draws_[:, big, off:][:, top].reshape(C, T, k)
            out["top_coef_largest_component"] = vector_summary(draws)
            out["top_coef_largest_component"]["component"] = big
        out["rhat_threshold"] = RHAT_MAX
        out["ess_bulk_threshold"] = ESS_BULK_MIN
        return out

    #: the number of largest entries of the population coefficient map (and
    #: of the most populated component) whose R-hat and ESS are in ``diagnostics_``
    n_top_monitored = 20

    def _warn_convergence(self) -> None:
        d = self.diagnostics_
        mon = {
            k: d[k]
            for k in ("log_posterior_marginal", "top_population_coef")
            if k in d
        }
        problems = convergence_problems(mon)
        d["converged"] = not problems
        d["convergence_problems"] = problems
        if problems:
            # the text names the failing quantities and the thresholds but not
            # this fit's values (they are in diagnostics_), so that one warning
            # per call site is shown when many fits are made in a loop
            failing = ", ".join(p.split(":")[0] for p in problems)
            warn_at_call_site(
                f"DMM-MEN chains have not converged/mixed: R-hat > {RHAT_MAX} or bulk "
                f"ESS < {ESS_BULK_MIN:.0f} for {failing} ({d['n_chains']} chains x "
                f"{d['n_kept_draws_per_chain']} kept draws; this fit's values are in "
                "diagnostics_['convergence_problems']). Run more sweeps (n_iter), more "
                "chains, or thin less; see to_inference_data() for ArviZ plots.",
                ConvergenceDiagnosticWarning,
            )

    def to_inference_data(self) -> Any:
        """The kept (relabelled) draws as an ``arviz.InferenceData`` with
        ``chain`` and ``draw`` dimensions, for ArviZ's plots and summaries.

        Needs the optional ``arviz`` package (``pip install captum-prior[arviz]``).
        Posterior variables: ``beta`` (component x feature), ``intercept``,
        ``weights``, ``sigma2``, ``counts``; sample stats: ``lp``
        (``log_posterior_marginal``), ``lp_joint`` and ``loglik`` (the mixture log-likelihood).
        """
        self._check_fitted()
        try:
            import arviz
        except ImportError:
            raise ImportError(
                "to_inference_data needs the optional package arviz: pip install arviz"
            ) from None
        C = int(getattr(self, "n_chains_", 1))
        T = self.beta_draws_.shape[0] // C
        off = 1 if self.fit_intercept else 0
        keep = np.arange(self.burn_in_, self.trace_.shape[1], int(self.thin))[:T]

        def r(a):
            return np.asarray(a).reshape((C, T) + a.shape[1:])

        posterior = {
            "beta": r(self.beta_draws_[:, :, off:]),
            "weights": r(self.weights_draws_),
            "sigma2": r(self.sigma2_draws_),
            "counts": r(self.counts_draws_),
        }
        if off:
            posterior["intercept"] = r(self.beta_draws_[:, :, 0])
        stats = {
            "lp": self.marginal_trace_[:, keep],
            "lp_joint": self.trace_[:, keep],
            "loglik": self.log_likelihood_trace_[:, keep],
        }
        return arviz.from_dict(
            posterior=posterior,
            sample_stats=stats,
            coords={
                "component": np.arange(self.n_components),
                "feature": np.arange(self.n_features_in_),
            },
            dims={
                "beta": ["component", "feature"],
                "weights": ["component"],
                "sigma2": ["component"],
                "counts": ["component"],
                "intercept": ["component"],
            },
        )

    # ---------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call "
                "fit(X, y) (or DMMMEN.load(path)) first"
            )

    def _design(self, X: ArrayLike) -> np.ndarray:
        Xa = check_X(X, self.n_features_in_)
        if self.fit_intercept:
            return np.column_stack([np.ones(Xa.shape[0]), Xa])
        return Xa

    def predict(
        self,
        X: ArrayLike,
        return_interval: bool = False,
        level: float = 0.95,
        n_draws: int = 4000,
        random_state: Any = None,
        include_empty: bool = False,
    ) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Posterior predictive mean of ``y`` given ``X`` (and optionally an interval).

        The mean is exact over the kept draws:
        ``mean_t sum_j pi_tj (x beta_tj)``.  Intervals are Monte-Carlo
        quantiles of the posterior predictive (as ``Analysis.R``: a random
        draw, a component by its pi, then ``y ~ N(x beta, sigma^2)``).

        By default only the components that hold samples in a draw are used
        (their pi renormalised): an empty component's beta is a draw from the
        prior, whose mean does not exist under the default ``a = 1/2``, so the
        full truncated-DP predictive (``include_empty=True``, as
        ``Analysis.R``) has a Monte-Carlo mean dominated by prior noise.

        Args:
            X (array or Tensor): ``n x n_features``.
            return_interval (bool, optional): also return lower and upper
                        bounds. Default: False
            level (float, optional): central interval probability. Default: 0.95
            n_draws (int, optional): Monte-Carlo draws per row for intervals. Default: 4000
            random_state (int, optional): seed for the interval draws;
                        ``None`` uses the estimator's ``random_state``. Default: None
            include_empty (bool, optional): also mix over components with no
                        samples in a draw. Default: False

        Returns:
            ``mean`` or ``(mean, lower, upper)``, arrays of shape ``(n,)``.
        """
        self._check_fitted()
        Xd = self._design(X)
        mu = np.einsum("nq,tjq->tnj", Xd, self.beta_draws_)  # (T, n, J)
        w = self.weights_draws_
        if not include_empty:
            w = np.where(self.counts_draws_ > 0, w, 0.0)
        w = w / w.sum(axis=1, keepdims=True)
        mean = np.einsum("tnj,tj->n", mu, w) / mu.shape[0]
        if not return_interval:
            return mean
        level = check_float(level, "level", 0.0, 1.0, False, False)
        n_draws = check_int(n_draws, "n_draws", 10)
        seed = self.random_state if random_state is None else random_state
        rng = (
            seed
            if isinstance(seed, np.random.Generator)
            else np.random.default_rng(seed)
        )
        T, n, J = mu.shape
        t_idx = rng.integers(0, T, size=n_draws)
        cum = np.cumsum(w[t_idx], axis=1)
        j_idx = np.minimum((rng.random((n_draws, 1)) > cum).sum(axis=1), J - 1)
        m = mu[t_idx, :, j_idx]  # (n_draws, n)
        sd = np.sqrt(self.sigma2_draws_[t_idx, j_idx])[:, None]
        sims = m + sd * rng.standard_normal((n_draws, n))
        lo = np.quantile(sims, (1.0 - level) / 2.0, axis=0)
        hi = np.quantile(sims, 1.0 - (1.0 - level) / 2.0, axis=0)
        return mean, lo, hi

    def responsibilities(self, X: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Posterior component probabilities of ``(x_i, y_i)`` under the posterior
        means: ``pi_j N(y_i | x_i beta_j, sigma_j^2)`` normalised, ``(n, J)``.

        Components with no sample in ``labels_`` get probability 0 (their
        posterior means are averages of prior draws)."""
        self._check_fitted()
        Xd = self._design(X)
        ya = check_y(y, Xd.shape[0])
        B = self.coef_
        if self.fit_intercept:
            B = np.column_stack([self.intercept_, B])
        r = ya[:, None] - Xd @ B.T
        s2 = np.maximum(self.sigma2_, 1e-300)
        occupied = self.component_sizes_ > 0
        ll = (
            np.where(occupied, np.log(np.maximum(self.weights_, 1e-300)), -np.inf)[
                None, :
            ]
            - 0.5 * (LOG_2PI + np.log(s2))[None, :]
            - r * r / (2.0 * s2)[None, :]
        )
        ll -= np.logaddexp.reduce(ll, axis=1, keepdims=True)
        return np.exp(ll)

    def predict_component(self, X: ArrayLike, y: ArrayLike) -> np.ndarray:
        """The component each ``(x_i, y_i)`` belongs to (argmax responsibility)."""
        return np.argmax(self.responsibilities(X, y), axis=1)

    # ------------------------------------------------------- save / load
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the fitted model (parameters, posterior means and the kept
        draws used by :meth:`predict`) to a safetensors file; no pickle.  The
        write is atomic; the folder must exist (``FileNotFoundError`` naming
        it otherwise)."""
        tensors, meta = self._state()
        save_state(path, _KIND, _FORMAT_VERSION, tensors, meta)

    def _state(self) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
        """Tensors and JSON metadata of the fitted model (for :meth:`save`)."""
        self._check_fitted()
        arrays = {
            "coef_": self.coef_,
            "intercept_": self.intercept_,
            "weights_": self.weights_,
            "sigma2_": self.sigma2_,
            "penalty_": self.penalty_,
            "labels_": self.labels_.astype(np.int64),
            "component_sizes_": self.component_sizes_.astype(np.int64),
            "trace_": self.trace_,
            "marginal_trace_": self.marginal_trace_,
            "log_likelihood_trace_": self.log_likelihood_trace_,
            "beta_draws_": self.beta_draws_,
            "weights_draws_": self.weights_draws_,
            "sigma2_draws_": self.sigma2_draws_,
            "counts_draws_": self.counts_draws_.astype(np.int64),
            "relabel_permutations_": self.relabel_permutations_.astype(np.int64),
        }
        tensors = {
            k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()
        }
        params = {}
        for k in _PARAM_NAMES:
            v = getattr(self, k)
            if isinstance(v, np.random.Generator):
                v = None
            if k == "temperatures" and v is not None:
                v = [float(t) for t in v]
            params[k] = v.item() if isinstance(v, np.generic) else v
        meta = {
            "params": params,
            "n_features_in_": int(self.n_features_in_),
            "burn_in_": int(self.burn_in_),
            "n_chains_": int(self.n_chains_),
            "diagnostics_": self.diagnostics_,
        }
        return tensors, meta

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "DMMMEN":
        """Read a model written by :meth:`save`."""
        tensors, meta = load_state(path, _KIND, (1, 2, 3, _FORMAT_VERSION))
        with reading(path):
            return cls._from_state(tensors, meta)

    @classmethod
    def _from_state(
        cls, tensors: Dict[str, torch.Tensor], meta: Dict[str, Any]
    ) -> "DMMMEN":
        params = dict(meta["params"])
        if "n_chains" not in params:  # format 1: one chain, older sampler
            params.update(n_chains=1, block_sigma=False, lambda_steps=1)
        # formats 1-2: allocations were drawn given beta, no split-merge
        params.setdefault("collapse_allocations", False)
        params.setdefault("split_merge", 0)
        # formats 1-3: no tempering
        params.setdefault("temperatures", None)
        if params["temperatures"] is not None:
            params["temperatures"] = tuple(params["temperatures"])
        est = cls(**params)
        for k, v in tensors.items():
            setattr(est, k, v.numpy())
        for k in ("trace_", "log_likelihood_trace_"):
            if getattr(est, k).ndim == 1:  # format 1 stored one chain as 1-D
                setattr(est, k, getattr(est, k)[None, :])
        if not hasattr(est, "marginal_trace_"):
            est.marginal_trace_ = np.full_like(est.trace_, np.nan)
        est.n_chains_ = int(meta.get("n_chains_", 1))
        est.n_features_in_ = int(meta["n_features_in_"])
        est.burn_in_ = int(meta["burn_in_"])
        est.diagnostics_ = dict(meta["diagnostics_"])
        est.population_coef_ = est.population_coef_draws().mean(axis=0)
        return est
