"""Confidence intervals and paired comparisons for per-example metric values.

Every table of this project (the benchmarks, ``captum-prior evaluate``, the
tutorials) reports a metric as the mean over examples with a 95 % confidence
interval, and compares two methods by the mean of their *paired* per-example
differences with its own interval.  Both come from
:func:`scipy.stats.bootstrap` with the bias-corrected and accelerated (BCa)
interval, seeded, rather than from a hand-written bootstrap.

Degenerate samples (fewer than two values, or all values equal, where BCa is
undefined) get the documented interval ``(mean, mean)``; an empty sample is an
error.
"""

from __future__ import annotations

import math
import warnings
from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np

ArrayLike = Union[Sequence[float], np.ndarray]

__all__ = ["mean_ci", "paired_difference", "summarize", "format_ci", "markdown_table"]


def _as_1d(values: ArrayLike, name: str) -> np.ndarray:
    try:
        v = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a sequence of numbers: {exc}") from None
    if v.size == 0:
        raise ValueError(f"{name} is empty; a confidence interval needs at least one value")
    if not np.all(np.isfinite(v)):
        raise ValueError(
            f"{name} contains NaN or Inf ({int((~np.isfinite(v)).sum())} of {v.size} values); "
            "drop or fix those examples first"
        )
    return v


def mean_ci(
    values: ArrayLike,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    random_state: Optional[int] = 0,
    method: str = "BCa",
) -> Dict[str, float]:
    """Mean of ``values`` with a bootstrap confidence interval.

    Parameters
    ----------
    values : array-like
        per-example values (1-D after flattening).
    confidence : float, optional
        confidence level. Default: 0.95
    n_resamples : int, optional
        bootstrap resamples. Default: 2000
    random_state : int, optional
        seed of the resampling. Default: 0
    method : str, optional
        ``"BCa"``, ``"percentile"`` or ``"basic"``, as in
        :func:`scipy.stats.bootstrap`. Default: ``"BCa"``

    Returns
    -------
    dict
        ``{"mean", "low", "high", "n"}``. For ``n < 2`` or constant values
        the interval is ``(mean, mean)``.

    Examples
    --------
    >>> from captum_prior.metrics.stats import mean_ci
    >>> e = mean_ci([0.2, 0.4, 0.3, 0.5, 0.6, 0.1], n_resamples=500)
    >>> round(e["mean"], 2), e["low"] < e["mean"] < e["high"], e["n"]
    (0.35, True, 6)
    """
    from scipy import stats

    v = _as_1d(values, "values")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if method not in ("BCa", "percentile", "basic"):
        raise ValueError(f"method must be 'BCa', 'percentile' or 'basic', got {method!r}")
    mean = float(v.mean())
    if v.size < 2 or float(np.ptp(v)) == 0.0:
        return {"mean": mean, "low": mean, "high": mean, "n": int(v.size)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns when BCa is degenerate; handled below
        res = stats.bootstrap(
            (v,), np.mean, confidence_level=confidence, n_resamples=int(n_resamples),
            method=method, random_state=np.random.default_rng(random_state), vectorized=True,
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap(
                (v,), np.mean, confidence_level=confidence, n_resamples=int(n_resamples),
                method="percentile", random_state=np.random.default_rng(random_state),
                vectorized=True,
            )
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"mean": mean, "low": low, "high": high, "n": int(v.size)}


def paired_difference(
    a: ArrayLike,
    b: ArrayLike,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    random_state: Optional[int] = 0,
) -> Dict[str, float]:
    """Mean of the paired differences ``a - b`` with a BCa interval.

    ``a`` and ``b`` hold the same examples in the same order (e.g. one metric
    for two methods).  ``significant`` is true when the interval excludes 0.

    Parameters
    ----------
    a, b : array-like
        Per-example values of the same length.
    confidence : float, optional
        Confidence level. Default: 0.95
    n_resamples : int, optional
        Bootstrap resamples. Default: 2000
    random_state : int, optional
        Seed of the resampling. Default: 0

    Returns
    -------
    dict
        ``{"mean", "low", "high", "n", "significant"}``.

    Examples
    --------
    >>> from captum_prior.metrics.stats import paired_difference
    >>> d = paired_difference([0.5, 0.6, 0.7, 0.8], [0.1, 0.3, 0.2, 0.4], n_resamples=500)
    >>> round(d["mean"], 2), d["significant"]
    (0.4, True)
    """
    va, vb = _as_1d(a, "a"), _as_1d(b, "b")
    if va.shape != vb.shape:
        raise ValueError(
            f"a and b must hold the same examples (paired); got {va.size} and {vb.size} values"
        )
    out = mean_ci(va - vb, confidence, n_resamples, random_state)
    out["significant"] = bool(out["low"] > 0.0 or out["high"] < 0.0)
    return out


def summarize(
    per_method: Mapping[str, ArrayLike],
    reference: Optional[Union[str, Sequence[str]]] = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    random_state: Optional[int] = 0,
) -> Dict[str, Dict[str, object]]:
    """Mean and CI per method, plus paired differences against ``reference``.

    Parameters
    ----------
    per_method : dict
        method name -> per-example values (same examples, same order, for
        every method).
    reference : str or list of str, optional
        method(s) to compare every other method with. Default: None

    Returns
    -------
    dict
        ``{method: {"mean", "low", "high", "n", "vs": {ref: paired}}}``.

    Examples
    --------
    >>> from captum_prior.metrics.stats import summarize
    >>> s = summarize({"A": [0.5, 0.6, 0.7, 0.8], "B": [0.1, 0.3, 0.2, 0.4]}, reference="A")
    >>> sorted(s["B"]["vs"]), round(s["B"]["vs"]["A"]["mean"], 2)
    (['A'], -0.4)
    """
    refs = [reference] if isinstance(reference, str) else list(reference or [])
    for r in refs:
        if r not in per_method:
            raise ValueError(f"reference {r!r} is not one of the methods {sorted(per_method)}")
    out: Dict[str, Dict[str, object]] = {}
    for name, vals in per_method.items():
        entry: Dict[str, object] = dict(mean_ci(vals, confidence, n_resamples, random_state))
        entry["vs"] = {
            r: paired_difference(vals, per_method[r], confidence, n_resamples, random_state)
            for r in refs
            if r != name
        }
        out[name] = entry
    return out


def format_ci(entry: Mapping[str, float], digits: int = 3) -> str:
    """``"0.412 [0.398, 0.427]"`` (a ``*`` marks a significant paired difference).

    Examples
    --------
    >>> from captum_prior.metrics.stats import format_ci
    >>> format_ci({"mean": 0.5, "low": 0.4, "high": 0.6})
    '0.500 [0.400, 0.600]'
    """
    s = f"{entry['mean']:.{digits}f} [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"
    if entry.get("significant"):
        s += " *"
    return s


def markdown_table(
    summary: Mapping[str, Mapping[str, object]], title: str = "method", digits: int = 3
) -> str:
    """A Markdown table of :func:`summarize`'s output (one row per method).

    Parameters
    ----------
    summary : dict
        The output of :func:`summarize`.
    title : str, optional
        Header of the first column. Default: ``"method"``
    digits : int, optional
        Decimals. Default: 3

    Returns
    -------
    str
        The table, with one paired-difference column per reference.

    Examples
    --------
    >>> from captum_prior.metrics.stats import markdown_table, summarize
    >>> s = summarize({"A": [0.5, 0.6, 0.7, 0.8], "B": [0.1, 0.3, 0.2, 0.4]}, reference="A")
    >>> print(markdown_table(s).splitlines()[0])
    | method | mean [95 % CI] | Δ vs A [95 % CI] |
    """
    refs = sorted({r for e in summary.values() for r in e.get("vs", {})})  # type: ignore[union-attr]
    head = [title, "mean [95 % CI]"] + [f"Δ vs {r} [95 % CI]" for r in refs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in summary.items():
        vs = e.get("vs", {})
        cells = [name, format_ci(e, digits)]  # type: ignore[arg-type]
        cells += [format_ci(vs[r], digits) if r in vs else "—" for r in refs]  # type: ignore[index,operator]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
