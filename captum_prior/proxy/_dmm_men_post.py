"""Post-MCMC analysis for DMM-MEN (private): relabelling and convergence diagnostics.

The diagnostics are ArviZ's (``arviz-stats``, numpy + scipy only): rank-normalised
split R-hat, bulk and tail effective sample size and Monte-Carlo standard error
(Vehtari et al. 2021), over several chains.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment


def _contingency(ref: np.ndarray, z: np.ndarray, J: int) -> np.ndarray:
    """``N[t, k, j]`` = number of samples with reference label k and label j in draw t."""
    T = z.shape[0]
    code = ref[None, :].astype(np.int64) * J + z.astype(np.int64)
    code = code + (np.arange(T, dtype=np.int64) * J * J)[:, None]
    return np.bincount(code.ravel(), minlength=T * J * J).reshape(T, J, J)


def relabel(
    z_draws: np.ndarray,
    n_components: int,
    reference: Optional[np.ndarray] = None,
    max_iter: int = 20,
) -> Tuple[np.ndarray, np.ndarray, int]:
    """Classification-based relabelling of Cron & West (2011).

    For every draw ``t`` the cost of mapping the draw's component ``j`` to the
    reference's component ``k`` is the number of samples the reference puts in
    ``k`` that draw ``t`` does not put in ``j`` (``Z_ref' |1 - Z_t|``); the
    permutation minimising the total cost is found by linear assignment
    (``scipy.optimize.linear_sum_assignment``).  As in Cron & West the
    reference is then replaced by the per-sample modal relabelled allocation
    and the procedure repeated until the reference no longer changes.

    Parameters
    ----------
    z_draws
        ``(T, n)`` integer allocations of the kept draws.
    n_components
        J.
    reference
        ``(n,)`` initial reference allocation; default the last draw.
    max_iter
        maximum number of reference updates.

    Returns
    -------
    perm : ndarray of shape (T, J)
        ``perm[t, k]`` is the raw component of draw ``t`` that becomes
        component ``k``.
    reference : ndarray of shape (n,)
        The final reference allocation.
    n_iter : int
        The number of reference updates used.
    """
    J = int(n_components)
    T = z_draws.shape[0]
    ref = (z_draws[-1] if reference is None else np.asarray(reference)).astype(np.int64)
    perm = np.tile(np.arange(J), (T, 1))
    n_done = 0
    for n_done in range(1, max_iter + 1):  # noqa: B007
        N = _contingency(ref, z_draws, J)
        n_ref = np.bincount(ref, minlength=J)
        for t in range(T):
            cost = n_ref[:, None] - N[t]
            _, cols = linear_sum_assignment(cost)
            perm[t] = cols
        # relabelled allocation of each draw: raw j -> k where perm[t, k] = j
        inv = np.argsort(perm, axis=1)
        zr = np.take_along_axis(inv, z_draws.astype(np.int64), axis=1)
        new_ref = modal_allocation(zr, J)
        if np.array_equal(new_ref, ref):
            break
        ref = new_ref
    return perm, ref, n_done


def modal_allocation(z_draws: np.ndarray, n_components: int) -> np.ndarray:
    """Per-sample most frequent component over draws ``(T, n)``."""
    n = z_draws.shape[1]
    code = np.arange(n, dtype=np.int64)[None, :] * n_components + z_draws.astype(
        np.int64
    )
    counts = np.bincount(code.ravel(), minlength=n * n_components)
    return np.argmax(counts.reshape(n, n_components), axis=1)


def apply_permutation(draws: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Reorder axis 1 (components) of ``draws`` (T, J, ...) by ``perm`` (T, J)."""
    idx = perm.reshape(perm.shape + (1,) * (draws.ndim - 2))
    return np.take_along_axis(
        draws, np.broadcast_to(idx, perm.shape + draws.shape[2:]), axis=1
    )


RHAT_MAX = 1.01
ESS_BULK_MIN = 400.0


def _as_chains(x: np.ndarray) -> np.ndarray:
    """``(n_chains, n_draws, ...)`` -> ``(..., n_chains, n_draws)`` float array."""
    x = np.asarray(x, dtype=float)
    if x.ndim < 2:
        raise ValueError(
            f"draws must be (n_chains, n_draws, ...), got shape {x.shape}; pass "
            "x[None, :] for a single chain"
        )
    return np.moveaxis(np.moveaxis(x, 0, -1), 0, -1)


def chain_diagnostics(x: np.ndarray) -> Dict[str, np.ndarray]:
    """Rank-normalised split R-hat, bulk and tail ESS and the MCSE of the mean
    (Vehtari, Gelman, Simpson, Carpenter & Buerkner 2021), computed by ArviZ's
    statistics package (``arviz_stats.base.array_stats``).

    Parameters
    ----------
    x
        ``(n_chains, n_draws, ...)`` draws of one or more scalar quantities.

    Returns
    -------
    dict
        ``rhat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean`` and ``sd``, each
        of shape ``x.shape[2:]``.  A quantity that is constant over every
        draw gets R-hat 1 and ESS equal to the number of draws (arviz-stats
        returns NaN there).  With one chain, R-hat compares its two halves
        (again split, as ArviZ does).
    """
    from arviz_stats.base import array_stats

    a = _as_chains(x)
    # one chain: R-hat of its two halves (arviz-stats returns NaN for one chain)
    a_r = a
    if a.shape[-2] == 1 and a.shape[-1] >= 8:
        h = a.shape[-1] // 2
        a_r = np.stack([a[..., 0, :h], a[..., 0, h : 2 * h]], axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "rhat": np.asarray(array_stats.rhat(a_r, method="rank")),
            "ess_bulk": np.asarray(array_stats.ess(a, method="bulk")),
            "ess_tail": np.asarray(array_stats.ess(a, method="tail", prob=0.05)),
            "mcse_mean": np.asarray(array_stats.mcse(a, method="mean")),
            "sd": np.asarray(a.reshape(a.shape[:-2] + (-1,)).std(axis=-1, ddof=1)),
        }
    const = np.ptp(a.reshape(a.shape[:-2] + (-1,)), axis=-1) == 0
    if np.any(const):
        n = a.shape[-1] * a.shape[-2]
        for k, fill in (
            ("rhat", 1.0),
            ("ess_bulk", n),
            ("ess_tail", n),
            ("mcse_mean", 0.0),
        ):
            out[k] = np.where(const, fill, out[k])
    return out


def scalar_summary(x: np.ndarray) -> Dict[str, float]:
    """:func:`chain_diagnostics` of one scalar ``(n_chains, n_draws)`` as floats."""
    d = chain_diagnostics(np.asarray(x, dtype=float))
    return {k: float(v) for k, v in d.items()}


def vector_summary(x: np.ndarray) -> Dict[str, float]:
    """Worst case over several scalars ``(n_chains, n_draws, m)``: max R-hat,
    min bulk/tail ESS, max MCSE / sd."""
    d = chain_diagnostics(np.asarray(x, dtype=float))
    sd = np.maximum(d["sd"], 1e-300)
    return {
        "rhat_max": float(np.max(d["rhat"])),
        "rhat_median": float(np.median(d["rhat"])),
        "ess_bulk_min": float(np.min(d["ess_bulk"])),
        "ess_bulk_median": float(np.median(d["ess_bulk"])),
        "ess_tail_min": float(np.min(d["ess_tail"])),
        "mcse_over_sd_max": float(np.max(d["mcse_mean"] / sd)),
        "n": int(np.size(d["rhat"])),
    }


def convergence_problems(
    summaries: Dict[str, Dict[str, float]],
    rhat_max: float = RHAT_MAX,
    ess_min: float = ESS_BULK_MIN,
) -> List[str]:
    """Human-readable list of the monitored quantities whose R-hat exceeds
    ``rhat_max`` or whose bulk ESS is below ``ess_min`` (empty = none)."""
    out = []
    for name, s in summaries.items():
        rh = s.get("rhat", s.get("rhat_max"))
        ess = s.get("ess_bulk", s.get("ess_bulk_min"))
        bad = []
        if rh is not None and not rh <= rhat_max:
            bad.append(f"R-hat {rh:.3f} > {rhat_max}")
        if ess is not None and not ess >= ess_min:
            bad.append(f"bulk ESS {ess:.0f} < {ess_min:.0f}")
        if bad:
            out.append(f"{name}: " + ", ".join(bad))
    return out
