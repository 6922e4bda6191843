import numpy as np
import pytest

from captum_prior.metrics.stats import (
    markdown_table,
    mean_ci,
    paired_difference,
    summarize,
)


def test_mean_ci_covers_mean_and_is_seeded():
    v = np.random.default_rng(0).normal(1.0, 1.0, size=200)
    a = mean_ci(v, random_state=3)
    assert a["low"] < v.mean() < a["high"]
    assert a == mean_ci(v, random_state=3)
    # width close to the normal-theory interval
    se = v.std(ddof=1) / np.sqrt(v.size)
    assert abs((a["high"] - a["low"]) - 2 * 1.96 * se) < 0.3 * (2 * 1.96 * se)


def test_degenerate_and_bad_samples():
    assert mean_ci([2.0, 2.0, 2.0]) == {"mean": 2.0, "low": 2.0, "high": 2.0, "n": 3}
    assert mean_ci([5.0])["low"] == 5.0
    with pytest.raises(ValueError, match="values is empty"):
        mean_ci([])
    with pytest.raises(ValueError, match="NaN"):
        mean_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="paired"):
        paired_difference([1.0, 2.0], [1.0])


def test_paired_difference_detects_shift_and_summary_table():
    rng = np.random.default_rng(1)
    base = rng.normal(size=100)
    better = base + 0.5 + 0.05 * rng.normal(size=100)
    d = paired_difference(better, base)
    assert d["significant"] and d["low"] > 0.4
    s = summarize({"A": base, "B": better}, reference="A")
    assert s["B"]["vs"]["A"]["significant"] and "A" not in s["A"]["vs"]
    table = markdown_table(s)
    assert "Δ vs A" in table and table.count("\n") == 3
    with pytest.raises(ValueError, match="reference"):
        summarize({"A": base}, reference="Z")
