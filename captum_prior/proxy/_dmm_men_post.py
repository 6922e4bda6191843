"""Post-MCMC analysis for DMM-MEN (private): relabelling and convergence diagnostics."""

from __future__ import annotations

from typing import Optional, Tuple

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

    Args:
        z_draws: ``(T, n)`` integer allocations of the kept draws.
        n_components: J.
        reference: ``(n,)`` initial reference allocation; default the last draw.
        max_iter: maximum number of reference updates.

    Returns:
        ``(perm, reference, n_iter)``: ``perm[t, k]`` is the raw component of
        draw ``t`` that becomes component ``k``; the final reference allocation;
        the number of iterations used.
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


def _autocov_fft(x: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    xc = x - x.mean(axis=-1, keepdims=True)
    m = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(xc, n=m, axis=-1)
    ac = np.fft.irfft(f * np.conj(f), n=m, axis=-1)[..., :n]
    return ac / n


def effective_sample_size(x: np.ndarray) -> np.ndarray:
    """Effective sample size of one chain along the last axis.

    Geyer's (1992) initial monotone sequence estimator: autocorrelations are
    summed in adjacent pairs while the pair sums stay positive, and the pair
    sums are made monotone.  A constant series has ESS equal to its length.
    """
    x = np.asarray(x, dtype=float)
    flat = x.reshape(-1, x.shape[-1])
    n = flat.shape[-1]
    out = np.empty(flat.shape[0])
    acov = _autocov_fft(flat)
    for r in range(flat.shape[0]):
        c0 = acov[r, 0]
        if not np.isfinite(c0) or c0 <= 1e-300 * max(1.0, np.abs(flat[r]).max() ** 2):
            out[r] = float(n)
            continue
        rho = acov[r] / c0
        n_pairs = n // 2
        pairs = rho[: 2 * n_pairs].reshape(n_pairs, 2).sum(axis=1)
        pos = np.flatnonzero(pairs <= 0)
        m = pos[0] if pos.size else n_pairs
        pairs = np.minimum.accumulate(pairs[:m]) if m > 0 else pairs[:0]
        tau = -1.0 + 2.0 * float(np.sum(pairs))
        out[r] = n / max(tau, 1.0 / np.log10(max(n, 10)))
    return out.reshape(x.shape[:-1])


def geweke_z(x: np.ndarray, first: float = 0.1, last: float = 0.5) -> float:
    """Geweke (1992) z-score: mean of the first ``first`` fraction of the chain
    against the last ``last`` fraction, standardised with variances of the
    means that account for autocorrelation (via the effective sample size)."""
    x = np.asarray(x, dtype=float)
    n = x.shape[0]
    a = x[: max(2, int(first * n))]
    b = x[n - max(2, int(last * n)) :]
    va = np.var(a, ddof=1) / effective_sample_size(a)
    vb = np.var(b, ddof=1) / effective_sample_size(b)
    den = np.sqrt(va + vb)
    if den == 0:
        return 0.0 if a.mean() == b.mean() else float(np.inf)
    return float((a.mean() - b.mean()) / den)
