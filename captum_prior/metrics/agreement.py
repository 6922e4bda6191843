"""Do the metrics agree?  Rankings of methods per metric, Kendall's tau
between metrics with bootstrap intervals, the leader under each metric, and
plain sentences where two metrics disagree.

Different faithfulness metrics often rank the same attribution methods
differently (Tomsett et al., AAAI 2020, "Sanity checks for saliency
metrics").  :func:`metric_agreement` takes per-example values of several
metrics for several methods, computed on the same examples, and says

- how each metric ranks the methods (best first, with each metric's
  direction: whether higher or lower is better);
- which method leads under each metric, and whether its lead over the
  runner-up is significant (the paired difference's bootstrap interval
  excludes 0), or whether there are too few examples to decide;
- Kendall's tau-b between every two metrics' rankings, with a percentile
  bootstrap interval over examples (examples are resampled jointly for all
  metrics and methods, so the pairing is kept);
- one sentence for every pair of methods that two metrics order oppositely.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["AgreementResult", "metric_agreement", "MIN_EXAMPLES"]

#: Below this many examples the verdict says that n is too small to decide,
#: whatever the intervals say (a bootstrap interval of a handful of values
#: is too narrow to trust).
MIN_EXAMPLES = 10

#: Opposite orderings named in one pair of metrics' summary sentence.
MAX_NAMED = 5


@dataclass
class AgreementResult:
    r"""What :func:`metric_agreement` returns.

    Attributes
    ----------
    metrics : list of str
        the metrics, as given.
    methods : list of str
        the methods, as given.
    higher_is_better : dict
        metric -> bool (the metric's direction).
    n_examples : int
        examples used (finite under every metric and method).
    means : dict
        metric -> method -> mean value.
    rankings : dict
        metric -> methods, best first.
    leaders : dict
        metric -> ``{"leader", "runner_up", "difference" (paired leader -
        runner-up, with ``mean``, ``low``, ``high``, ``significant``),
        "status", "text"}``; status is ``"significant"``, ``"not
        significant"``, ``"n too small"`` or ``"one method"``.
    tau : dict
        ``(metric_a, metric_b)`` -> ``{"tau", "low", "high"}`` (Kendall's
        tau-b of the two rankings and its bootstrap interval; None entries
        when undefined, e.g. one method).
    disagreements : list of str
        one sentence per opposite ordering of two methods by two metrics.
    confidence : float
        level of the intervals.
    conflicts : list of dict
        per pair of metrics that order some methods oppositely:
        ``{"metrics", "n_opposite", "n_pairs", "n_significant",
        "opposite", "text"}``, ``text`` one sentence naming how many method
        pairs are in opposite order and those where both differences are
        significant (:meth:`summary` lists the sentences).
    """

    metrics: List[str]
    methods: List[str]
    higher_is_better: Dict[str, bool]
    n_examples: int
    means: Dict[str, Dict[str, float]]
    rankings: Dict[str, List[str]]
    leaders: Dict[str, Dict[str, Any]]
    tau: Dict[Tuple[str, str], Dict[str, Optional[float]]]
    disagreements: List[str]
    confidence: float = 0.95
    conflicts: List[Dict[str, Any]] = field(default_factory=list)

    def summary(self) -> List[str]:
        """One sentence per pair of metrics that order some methods oppositely."""
        return [c["text"] for c in self.conflicts]

    def tau_table(self, digits: int = 2) -> str:
        """Markdown matrix of Kendall's tau [CI] between the metrics' rankings."""
        head = ["τ [CI]"] + self.metrics
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for a in self.metrics:
            cells = [a]
            for b in self.metrics:
                if a == b:
                    cells.append("1")
                    continue
                e = self.tau.get((a, b)) or self.tau.get((b, a)) or {}
                cells.append(_fmt_tau(e, digits))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def ranking_table(self) -> str:
        """Markdown: per metric, its direction and the methods best first."""
        lines = ["| metric | better | ranking (best first) | leader |", "|---|---|---|---|"]
        for m in self.metrics:
            d = "higher" if self.higher_is_better[m] else "lower"
            lines.append(f"| {m} | {d} | {' > '.join(self.rankings[m])} | {self.leaders[m]['status']} |")
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "metrics": self.metrics, "methods": self.methods, "higher_is_better": self.higher_is_better,
            "n_examples": self.n_examples, "means": self.means, "rankings": self.rankings,
            "leaders": self.leaders,
            "tau": [{"a": a, "b": b, **e} for (a, b), e in self.tau.items()],
            "disagreements": self.disagreements, "confidence": self.confidence,
            "conflicts": self.conflicts,
        }


def _fmt_tau(e: Mapping[str, Optional[float]], digits: int) -> str:
    if not e or e.get("tau") is None:
        return "—"
    s = f"{e['tau']:.{digits}f}"
    if e.get("low") is not None:
        s += f" [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"
    return s


def _tau_b(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between rankings by ``a`` and by ``b``, ``K x B``
    (``K`` methods, ``B`` replicates); NaN where one side is all ties."""
    i, j = np.triu_indices(a.shape[0], 1)
    sa = np.sign(a[i] - a[j])
    sb = np.sign(b[i] - b[j])
    den = np.sqrt((sa != 0).sum(0) * (sb != 0).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (sa * sb).sum(0) / np.where(den > 0, den, 1), np.nan)


def metric_agreement(
    values: Mapping[str, Mapping[str, Sequence[float]]],
    higher_is_better: Mapping[str, bool],
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
    min_examples: int = MIN_EXAMPLES,
) -> AgreementResult:
    r"""Rankings, leaders, Kendall's tau and disagreements of several metrics.

    Parameters
    ----------
    values : dict
        metric -> method -> per-example values; every array holds the same
        examples in the same order.  Examples that are not finite under
        some metric and method are dropped from all (their count is in
        ``n_examples``).
    higher_is_better : dict
        metric -> whether a larger value is better; every metric of
        ``values`` must be named.
    confidence : float, optional
        Of the intervals. Default 0.95.
    n_resamples : int, optional
        Bootstrap resamples of the examples for tau. Default 1000.
    seed : int, optional
        Seed of the resampling. Default 0.
    min_examples : int, optional
        Below this many examples every leader is reported as "n too small".
        Default :data:`MIN_EXAMPLES`.

    Returns
    -------
    AgreementResult

    Raises
    ------
    ValueError
        No metric, a metric without direction, methods or example counts
        that differ between metrics, or no example finite everywhere.

    Notes
    -----
    The leader's lead is the paired difference (leader minus runner-up,
    per example, sign-adjusted so that positive favours the leader) with a
    BCa interval (:func:`captum_prior.metrics.stats.paired_difference`).
    Tau compares the orders of the methods' *means*; its interval is the
    percentile interval over ``n_resamples`` joint resamples of the
    examples.  With two methods tau is +1 or -1 in every replicate, and its
    interval shows how often the two metrics' orders flip.

    References
    ----------
    R. Tomsett, D. Harborne, S. Chakraborty, P. Gurram, A. Preece, "Sanity
    Checks for Saliency Metrics", AAAI 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from captum_prior.metrics import metric_agreement
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(0.6, 0.05, 30), rng.normal(0.5, 0.05, 30)
    >>> values = {"insertion": {"A": a, "B": b}, "deletion": {"A": 1 - a, "B": 1 - b}}
    >>> r = metric_agreement(values, {"insertion": True, "deletion": False}, n_resamples=200)
    >>> r.rankings["deletion"], r.leaders["insertion"]["status"]
    (['A', 'B'], 'significant')
    >>> r.disagreements
    []
    """
    from captum_prior._validation import check_float, check_int
    from captum_prior.metrics.stats import paired_difference

    if not values:
        raise ValueError("values is empty; pass metric -> method -> per-example values")
    check_float(confidence, "confidence", 0.0, 1.0, False, False)
    n_resamples = check_int(n_resamples, "n_resamples", 1)
    metrics = [str(m) for m in values]
    for m in metrics:
        if m not in higher_is_better:
            raise ValueError(
                f"higher_is_better does not give the direction of metric {m!r}; pass "
                f"higher_is_better={{{m!r}: True}} (or False when lower is better)"
            )
    methods = [str(k) for k in next(iter(values.values()))]
    if not methods:
        raise ValueError("values holds no method")
    arrays = []
    n0: Optional[int] = None
    for m in metrics:
        if [str(k) for k in values[m]] != methods:
            raise ValueError(f"metric {m!r} has methods {list(values[m])}, expected {methods} (same order)")
        rows = [np.asarray(values[m][k], dtype=np.float64).reshape(-1) for k in values[m]]
        for k, r in zip(methods, rows):
            n0 = r.size if n0 is None else n0
            if r.size != n0:
                raise ValueError(
                    f"values[{m!r}][{k!r}] holds {r.size} examples, others {n0}; every metric and "
                    "method must hold the same examples (paired)"
                )
        arrays.append(np.stack(rows))
    v = np.stack(arrays)  # metrics x methods x N
    ok = np.isfinite(v).all(axis=(0, 1))
    v = v[:, :, ok]
    n = int(v.shape[2])
    if n == 0:
        raise ValueError("no example has finite values under every metric and method")
    sign = np.array([1.0 if higher_is_better[m] else -1.0 for m in metrics])[:, None, None]
    score = v * sign  # larger is better everywhere
    mean_score = score.mean(2)  # metrics x methods
    means = {m: {k: float(v[a, b].mean()) for b, k in enumerate(methods)} for a, m in enumerate(metrics)}
    rankings = {m: [methods[b] for b in np.argsort(-mean_score[a], kind="stable")] for a, m in enumerate(metrics)}

    leaders: Dict[str, Dict[str, Any]] = {}
    for a, m in enumerate(metrics):
        d = "higher" if higher_is_better[m] else "lower"
        order = rankings[m]
        if len(order) < 2:
            leaders[m] = {"leader": order[0], "runner_up": None, "difference": None, "status": "one method",
                          "text": f"{m} ({d} is better): only {order[0]} was scored."}
            continue
        lead, second = order[0], order[1]
        diff = paired_difference(score[a, methods.index(lead)], score[a, methods.index(second)],
                                 confidence=confidence, random_state=seed)
        raw = {k: float(x) for k, x in diff.items() if k != "significant"}
        raw["significant"] = bool(diff["significant"])
        ci = f"{raw['mean']:.3g} [{raw['low']:.3g}, {raw['high']:.3g}]"
        if n < min_examples:
            status = "n too small"
            text = (f"{m} ({d} is better): {lead} leads {second}, but {n} examples are too few to decide "
                    f"(at least {min_examples} needed; lead {ci}).")
        elif raw["significant"]:
            status = "significant"
            text = (f"{m} ({d} is better): {lead} leads, significantly ahead of {second} "
                    f"(paired lead {ci}, {confidence:.0%} CI, n = {n}).")
        else:
            status = "not significant"
            text = (f"{m} ({d} is better): {lead} is ahead of {second} but not significantly "
                    f"(paired lead {ci}, {confidence:.0%} CI includes 0, n = {n}).")
        leaders[m] = {"leader": lead, "runner_up": second, "difference": raw, "status": status, "text": text}

    rng = np.random.default_rng(seed)
    reps: List[np.ndarray] = []
    for s in range(0, n_resamples, 200):
        idx = rng.integers(0, n, size=(min(200, n_resamples - s), n))
        reps.append(score[:, :, idx].mean(-1))  # metrics x methods x b
    boot = np.concatenate(reps, axis=2)
    alpha = (1.0 - confidence) / 2
    tau: Dict[Tuple[str, str], Dict[str, Optional[float]]] = {}
    for a, b in itertools.combinations(range(len(metrics)), 2):
        t = _tau_b(mean_score[a][:, None], mean_score[b][:, None])[0]
        tb = _tau_b(boot[a], boot[b])
        tb = tb[np.isfinite(tb)]
        entry: Dict[str, Optional[float]] = {"tau": None if not np.isfinite(t) else float(t),
                                             "low": None, "high": None}
        if entry["tau"] is not None and tb.size:
            entry["low"] = float(np.quantile(tb, alpha))
            entry["high"] = float(np.quantile(tb, 1 - alpha))
        tau[(metrics[a], metrics[b])] = entry

    sig_cache: Dict[Tuple[int, int, int], bool] = {}

    def significant(m_i: int, i: int, j: int) -> bool:
        if (m_i, i, j) not in sig_cache:
            p = paired_difference(score[m_i, i], score[m_i, j], confidence=confidence, random_state=seed)
            sig_cache[(m_i, i, j)] = bool(p["significant"])
        return sig_cache[(m_i, i, j)]

    sentences: List[str] = []
    conflicts: List[Dict[str, Any]] = []
    n_pairs = len(methods) * (len(methods) - 1) // 2
    for a, b in itertools.combinations(range(len(metrics)), 2):
        ma, mb = metrics[a], metrics[b]
        opposite: List[Dict[str, Any]] = []
        for i, j in itertools.combinations(range(len(methods)), 2):
            da = mean_score[a, i] - mean_score[a, j]
            db = mean_score[b, i] - mean_score[b, j]
            if da * db >= 0:
                continue
            wa = methods[i] if da > 0 else methods[j]
            wb = methods[i] if db > 0 else methods[j]
            sig = (significant(a, i, j), significant(b, i, j))
            how = ("both orders significant" if all(sig) else
                   f"significant under {ma} only" if sig[0] else
                   f"significant under {mb} only" if sig[1] else "neither order significant")
            sentences.append(
                f"{ma} and {mb} rank {methods[i]} and {methods[j]} in opposite order: {wa} is better under "
                f"{ma}, {wb} under {mb} ({how}, n = {n})."
            )
            opposite.append({"methods": [methods[i], methods[j]], "better": {ma: wa, mb: wb},
                             "significant": {ma: sig[0], mb: sig[1]}})
        if opposite:
            conflicts.append(_conflict(ma, mb, opposite, n_pairs, n))
    return AgreementResult(
        metrics=metrics, methods=methods, higher_is_better={m: bool(higher_is_better[m]) for m in metrics},
        n_examples=n, means=means, rankings=rankings, leaders=leaders, tau=tau, disagreements=sentences,
        confidence=float(confidence), conflicts=conflicts,
    )


def _conflict(ma: str, mb: str, opposite: List[Dict[str, Any]], n_pairs: int, n: int,
              n_named: int = MAX_NAMED) -> Dict[str, Any]:
    """One pair of metrics' opposite orderings, counted, with one sentence
    naming those where both differences are significant (the ones that matter)."""
    strong = [o for o in opposite if all(o["significant"].values())]
    head = (f"{ma} and {mb} rank {len(opposite)} of {n_pairs} method pair(s) in opposite order")
    if strong:
        named = ", ".join(f"{o['better'][ma]} to {o['better'][mb]}" for o in strong[:n_named])
        more = f" (and {len(strong) - n_named} more pairs)" if len(strong) > n_named else ""
        text = (f"{head}; {len(strong)} with both differences significant, where {ma} prefers {named}"
                f"{more} and {mb} the reverse (n = {n}).")
    else:
        text = f"{head}; none with both differences significant (n = {n})."
    return {"metrics": [ma, mb], "n_opposite": len(opposite), "n_pairs": n_pairs,
            "n_significant": len(strong), "opposite": opposite, "text": text}
