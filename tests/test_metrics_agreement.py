"""Metric agreement: rankings, leaders, Kendall's tau with CIs, disagreements."""

import numpy as np
import pytest

from captum_prior.metrics.agreement import metric_agreement


def _values(n=60, seed=0):
    rng = np.random.default_rng(seed)
    eg = rng.normal(0.6, 0.05, n)
    vpg = eg - 0.1 + rng.normal(0, 0.02, n)  # clearly worse than EG on insertion
    ig = eg - 0.05 + rng.normal(0, 0.02, n)
    return {
        # insertion: higher is better -> EG > IG > VPG
        "insertion": {"EG": eg, "IG": ig, "VPG": vpg},
        # deletion: lower is better; the same order as insertion
        "deletion": {"EG": 1 - eg, "IG": 1 - ig, "VPG": 1 - vpg},
        # a metric that reverses EG and VPG
        "road-morf": {"EG": 1 - vpg, "IG": 1 - ig, "VPG": 1 - eg},
    }


DIRS = {"insertion": True, "deletion": False, "road-morf": False}


def test_rankings_directions_and_tau():
    r = metric_agreement(_values(), DIRS, n_resamples=400)
    assert r.rankings["insertion"] == ["EG", "IG", "VPG"]
    assert r.rankings["deletion"] == ["EG", "IG", "VPG"]  # lower is better was applied
    assert r.rankings["road-morf"] == ["VPG", "IG", "EG"]
    assert r.tau[("insertion", "deletion")]["tau"] == pytest.approx(1.0)
    assert r.tau[("insertion", "road-morf")]["tau"] == pytest.approx(-1.0)
    e = r.tau[("insertion", "road-morf")]
    assert e["low"] <= e["tau"] <= e["high"]
    assert r.leaders["insertion"]["leader"] == "EG"
    assert r.leaders["insertion"]["status"] == "significant"
    assert "higher is better" in r.leaders["insertion"]["text"]
    assert "lower is better" in r.leaders["deletion"]["text"]
    s = [t for t in r.disagreements if t.startswith("insertion and road-morf")]
    assert any("EG and VPG in opposite order" in t for t in s)
    assert not any(t.startswith("insertion and deletion") for t in r.disagreements)
    md = r.tau_table()
    assert md.count("\n") == 2 + 2 and "-1.00" in md
    assert "EG > IG > VPG" in r.ranking_table()
    assert r.to_dict()["n_examples"] == 60


def test_small_n_and_not_significant():
    v = _values(n=6)
    r = metric_agreement(v, DIRS, n_resamples=200)
    assert all(e["status"] == "n too small" for e in r.leaders.values())
    assert "too few" in r.leaders["insertion"]["text"]
    rng = np.random.default_rng(1)
    noise = {"m": {"A": rng.normal(0, 1, 40), "B": rng.normal(0, 1, 40)}}
    r = metric_agreement(noise, {"m": True}, n_resamples=200)
    assert r.leaders["m"]["status"] == "not significant"


def test_tau_interval_reflects_noise():
    rng = np.random.default_rng(2)
    a = rng.normal(0, 1, 30)
    vals = {"x": {"A": a, "B": a + 0.01 + rng.normal(0, 1, 30)},
            "y": {"A": a, "B": a + 0.5 + rng.normal(0, 0.1, 30)}}
    r = metric_agreement(vals, {"x": True, "y": True}, n_resamples=500)
    e = r.tau[("x", "y")]
    assert e["low"] == -1.0 and e["high"] == 1.0  # the x order flips between resamples


def test_nonfinite_dropped_and_bad_input():
    v = _values(n=20)
    v["insertion"]["EG"] = v["insertion"]["EG"].copy()
    v["insertion"]["EG"][0] = np.nan
    assert metric_agreement(v, DIRS, n_resamples=50).n_examples == 19
    with pytest.raises(ValueError, match="direction of metric 'road-morf'"):
        metric_agreement(v, {"insertion": True, "deletion": False})
    with pytest.raises(ValueError, match="values is empty"):
        metric_agreement({}, DIRS)
    bad = _values(n=20)
    bad["deletion"] = {"IG": bad["deletion"]["IG"], "EG": bad["deletion"]["EG"], "VPG": bad["deletion"]["VPG"]}
    with pytest.raises(ValueError, match="same order"):
        metric_agreement(bad, DIRS)
    bad = _values(n=20)
    bad["deletion"]["EG"] = bad["deletion"]["EG"][:5]
    with pytest.raises(ValueError, match="paired"):
        metric_agreement(bad, DIRS)
    one = metric_agreement({"m": {"A": [1.0, 2.0]}}, {"m": True})
    assert one.leaders["m"]["status"] == "one method"


def test_disagreements_are_summarised_per_pair_of_metrics():
    """Ten methods, one metric reversing another: one sentence per pair of
    metrics (not one per pair of methods), with the counts and the pairs
    where both differences are significant named; the full list stays."""
    rng = np.random.default_rng(3)
    n, k = 40, 10
    base = {f"M{i}": 0.1 * i + rng.normal(0, 0.01, n) for i in range(k)}
    z = rng.normal(0, 0.05, n)
    vals = {
        "a": base,
        "b": {m: v + rng.normal(0, 0.001, n) for m, v in base.items()},  # same order as a
        "c": {m: -v for m, v in base.items()},  # reversed: every pair opposite, all significant
        # reverses only M0 and M1, by a difference too small to be significant
        "d": {**base, "M0": base["M1"] + 1e-4 + z - z.mean()},
    }
    r = metric_agreement(vals, {m: True for m in vals}, n_resamples=100)
    summary = r.summary()
    pairs = {tuple(c["metrics"]): c for c in r.conflicts}
    assert ("a", "b") not in pairs and len(summary) == len(r.conflicts)
    ac = pairs[("a", "c")]
    assert ac["n_opposite"] == 45 == ac["n_pairs"] and ac["n_significant"] == 45
    assert ac["text"].startswith("a and c rank 45 of 45 method pair(s) in opposite order; 45 with both")
    assert "45 with both differences significant, where a prefers M" in ac["text"]
    assert ac["text"].count(" to M") == 5 and "(and 40 more pairs) and c the reverse" in ac["text"]
    ad = pairs[("a", "d")]
    assert ad["n_opposite"] == 1 and ad["n_significant"] == 0
    assert "none with both differences significant" in ad["text"]
    # the full list is still there, one sentence per opposite ordering
    assert len(r.disagreements) == sum(c["n_opposite"] for c in r.conflicts)
    assert r.to_dict()["conflicts"][0]["metrics"] == list(r.conflicts[0]["metrics"])
