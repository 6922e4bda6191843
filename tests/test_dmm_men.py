"""DMMMEN estimator: the Must-show items of issue 6 and the sklearn-style API."""

import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import ElasticNetCV
from sklearn.metrics import adjusted_rand_score

from captum_prior.proxy import DMMMEN, DMMMENPriors

TRUE_B = np.array(
    [
        [2.0, -1.5, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, -2.0, 1.5, 2.5, 0.0, 0.0, 0.0],
        [-1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, -2.5, 0.0],
    ]
)


def three_regimes(seed=0, n=450, noise=0.1):
    """Piecewise-linear data: the last feature g in [0, 1) picks the regime
    (floor(3 g)); within a regime y is linear in X with sparse coefficients
    TRUE_B[k] (g itself has coefficient 0)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, TRUE_B.shape[1]))
    X[:, -1] = rng.random(n)
    regime = np.floor(3 * X[:, -1]).astype(int)
    y = np.einsum("np,np->n", X, TRUE_B[regime]) + noise * rng.standard_normal(n)
    return X, y, regime


@pytest.fixture(scope="module")
def data():
    return three_regimes()


@pytest.fixture(scope="module")
def fitted(data):
    X, y, _ = data
    return DMMMEN(n_iter=300, n_chains=2, n_jobs=1, random_state=0).fit(X, y)


def _match(coef):
    """Fitted component matched to each true regime (min squared distance)."""
    cost = ((coef[None, :, :] - TRUE_B[:, None, :]) ** 2).sum(-1)
    _, cols = linear_sum_assignment(cost)
    return cols


def test_recovers_sparse_coefficients_better_than_elastic_net(data, fitted):
    X, y, regime = data
    comp = _match(fitted.coef_)
    est = fitted.coef_[comp]
    err = np.abs(est - TRUE_B).max(axis=1)
    assert np.all(err < 0.2), err
    assert np.abs(est - TRUE_B).mean() < 0.03
    # support recovery: |coef| > 0.25 exactly on the true non-zeros
    assert np.array_equal(np.abs(est) > 0.25, TRUE_B != 0)
    # three occupied components with the right members
    assert adjusted_rand_score(regime, fitted.labels_) > 0.9
    assert np.sum(fitted.component_sizes_ > 10) == 3
    # one (cross-validated) scikit-learn ElasticNet on all the data
    en = ElasticNetCV(cv=5).fit(X, y)
    en_err = np.abs(en.coef_[None, :] - TRUE_B).max(axis=1)
    assert np.all(en_err > 5 * err.max())
    assert np.abs(est - TRUE_B).mean() < 0.2 * np.abs(en.coef_[None, :] - TRUE_B).mean()


def test_fitted_attributes_shapes(data, fitted):
    X, _, _ = data
    J, p = fitted.n_components, X.shape[1]
    assert fitted.coef_.shape == (J, p)
    assert (
        fitted.intercept_.shape == fitted.weights_.shape == fitted.sigma2_.shape == (J,)
    )
    assert fitted.weights_.sum() == pytest.approx(1.0)
    assert fitted.labels_.shape == (X.shape[0],)
    assert fitted.trace_.shape == fitted.log_likelihood_trace_.shape == (2, 300)
    assert fitted.marginal_trace_.shape == (2, 300)
    assert np.all(np.isfinite(fitted.trace_))
    assert np.all(np.isfinite(fitted.marginal_trace_))
    assert fitted.beta_draws_.shape == (2 * 150, J, p + 1)
    assert fitted.penalty_.shape == (J, 2) and np.all(fitted.penalty_ > 0)
    d = fitted.diagnostics_
    assert d["sigma2_acceptance"] > 0.5 and 0.1 < d["lambda_acceptance"] < 0.9
    assert d["n_chains"] == 2 and d["n_kept_draws"] == 300
    for key in ("log_posterior", "log_posterior_marginal", "log_likelihood"):
        assert set(d[key]) == {"rhat", "ess_bulk", "ess_tail", "mcse_mean", "sd"}
    assert d["log_likelihood"]["ess_bulk"] > 20
    assert d["top_coef_largest_component"]["n"] == p


def test_chains_agree_after_burn_in(fitted):
    """Rank-normalised split R-hat over the two chains: the log-likelihood
    and the largest coefficients have converged on easy data, while the
    same statistic flags the initial transient."""
    d = fitted.diagnostics_
    assert d["log_likelihood"]["rhat"] < 1.05
    assert d["top_coef_largest_component"]["rhat_max"] < 1.05
    from captum_prior.proxy._dmm_men_post import chain_diagnostics

    ll = fitted.log_likelihood_trace_
    with_start = chain_diagnostics(ll[:, :60])["rhat"]
    assert with_start > 1.05 or chain_diagnostics(ll[:, :60])["ess_bulk"] < 20
    post = ll[:, fitted.burn_in_ :]
    assert ll[:, :3].mean() < post.mean() - 3 * post.std()


def test_reproducible_under_seed(data):
    X, y, _ = data
    kw = dict(n_iter=40, n_chains=2, n_jobs=1, check_convergence=False)
    a = DMMMEN(random_state=3, **kw).fit(X, y)
    b = DMMMEN(random_state=3, **kw).fit(torch.as_tensor(X), torch.as_tensor(y))
    c = DMMMEN(random_state=4, **kw).fit(X, y)
    np.testing.assert_array_equal(a.trace_, b.trace_)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert not np.array_equal(a.trace_, c.trace_)


def test_relabelling_removes_label_switching():
    """Two equal regimes, J = 2, two chains that settle with opposite labels
    (seed 0): the pooled raw draws switch labels; relabelled draws are
    consistent and their means are the truth."""
    rng = np.random.default_rng(1)
    n, p = 300, 4
    B = np.array([[1.5, -1.0, 0.0, 0.0], [-1.5, 0.0, 1.0, 0.0]])
    X = rng.standard_normal((n, p))
    reg = np.repeat([0, 1], n // 2)
    y = np.einsum("np,np->n", X, B[reg]) + 0.1 * rng.standard_normal(n)
    m = DMMMEN(
        n_components=2, n_iter=100, n_chains=2, n_jobs=1, check_convergence=False,
        random_state=0,
    ).fit(X, y)
    assert m.diagnostics_["relabelled_draw_fraction"] > 0.2
    # undo the relabelling: raw[t, perm[t, k]] = relabelled[t, k]
    raw = np.empty_like(m.beta_draws_)
    np.put_along_axis(raw, m.relabel_permutations_[:, :, None], m.beta_draws_, axis=1)
    feat = 1  # column of x_0 (column 0 is the intercept)
    raw_sd = raw[:, 0, feat].std()
    rel_sd = m.beta_draws_[:, :, feat].std(axis=0).max()
    assert raw_sd > 1.0 and rel_sd < 0.05
    comp = [int(np.argmin(((m.coef_ - b) ** 2).sum(1))) for b in B]
    assert sorted(comp) == [0, 1]
    assert np.abs(m.coef_[comp] - B).max() < 0.05
    # without relabelling the posterior mean would average the two regimes
    assert np.abs(raw[:, :, 1:].mean(0)[comp] - B).max() > 0.5


@pytest.mark.parametrize(
    "X,y,match",
    [
        (np.array([[np.nan, 1.0], [0.0, 2.0], [1.0, 0.0]]), np.ones(3), "NaN or Inf"),
        (np.array([[np.inf, 1.0], [0.0, 2.0], [1.0, 0.0]]), np.ones(3), "NaN or Inf"),
        (np.eye(3)[:, :2], np.array([0.0, np.nan, 1.0]), "NaN or Inf"),
        (np.eye(3)[:, :2], np.array([0.0, np.inf, 1.0]), "NaN or Inf"),
        (
            np.column_stack([np.arange(4.0), np.ones(4)]),
            np.arange(4.0),
            "constant feature",
        ),
        (np.arange(6.0).reshape(3, 2) ** [1, 2], np.arange(3.0), "n_components"),
        (np.arange(12.0).reshape(6, 2) ** [1, 2], np.ones((6, 2)), "1-D"),
        (np.arange(6.0), np.arange(6.0), "2-D"),
        (np.arange(12.0).reshape(6, 2) ** [1, 2], np.arange(5.0), "5 entries"),
    ],
)
def test_bad_input_raises_value_error(X, y, match):
    with pytest.raises(ValueError, match=match):
        DMMMEN(n_components=4, n_iter=10).fit(X, y)


def test_bad_hyperparameters():
    X, y, _ = three_regimes(n=30)
    with pytest.raises(ValueError, match="burn_in"):
        DMMMEN(n_iter=10, burn_in=10).fit(X, y)
    with pytest.raises(ValueError, match="variant"):
        DMMMEN(variant="swapped").fit(X, y)
    with pytest.raises(ValueError, match="'paper', 'reference_code'"):
        DMMMEN(variant="corrected").fit(X, y)
    with pytest.raises(ValueError, match="DMMMENPriors.a must be"):
        DMMMENPriors(a=0.0)
    with pytest.raises(TypeError, match="DMMMENPriors"):
        DMMMEN(priors={"a": 1.0}).fit(X, y)
    with pytest.raises(TypeError, match="n_components"):
        DMMMEN(n_components=2.5).fit(X, y)


def test_not_fitted_and_feature_mismatch(fitted, data):
    X, y, _ = data
    with pytest.raises(NotFittedError):
        DMMMEN().predict(X)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[:, :3])


def test_predict_mean_and_intervals(fitted, data):
    X, y, _ = data
    mean = fitted.predict(X[:50])
    m2, lo, hi = fitted.predict(X[:50], return_interval=True, level=0.9, random_state=1)
    _, lo2, hi2 = fitted.predict(
        X[:50], return_interval=True, level=0.9, random_state=1
    )
    np.testing.assert_allclose(mean, m2)
    np.testing.assert_array_equal(lo, lo2)
    assert np.all(lo < mean) and np.all(mean < hi)
    # the model's predictive (x-independent weights) covers the observed y
    cover = np.mean((y[:50] >= lo) & (y[:50] <= hi))
    assert cover > 0.8
    # the predictive mean is the pi-weighted mixture mean over the components
    # occupied in each draw, averaged over draws
    Xd = np.column_stack([np.ones(50), X[:50]])
    expect = np.zeros(50)
    for b, pi, cnt in zip(
        fitted.beta_draws_, fitted.weights_draws_, fitted.counts_draws_
    ):
        w = np.where(cnt > 0, pi, 0.0)
        expect += (Xd @ b.T) @ (w / w.sum())
    np.testing.assert_allclose(mean, expect / len(fitted.beta_draws_), rtol=1e-10)
    # including empty components (prior draws, as Analysis.R) changes it
    assert not np.allclose(fitted.predict(X[:50], include_empty=True), mean, atol=0.05)


def test_responsibilities_assign_training_samples(fitted, data):
    X, y, _ = data
    r = fitted.responsibilities(X, y)
    assert r.shape == (X.shape[0], fitted.n_components)
    np.testing.assert_allclose(r.sum(1), 1.0)
    assert np.mean(fitted.predict_component(X, y) == fitted.labels_) > 0.95


def test_save_load_roundtrip(fitted, data, tmp_path):
    X, _, _ = data
    path = tmp_path / "dmm.safetensors"
    fitted.save(path)
    back = DMMMEN.load(path)
    assert back.get_params() == fitted.get_params()
    np.testing.assert_array_equal(back.coef_, fitted.coef_)
    np.testing.assert_array_equal(back.labels_, fitted.labels_)
    np.testing.assert_array_equal(back.trace_, fitted.trace_)
    np.testing.assert_array_equal(back.predict(X[:20]), fitted.predict(X[:20]))
    assert back.diagnostics_ == fitted.diagnostics_
    from captum_prior._serialization import save_state

    other = tmp_path / "other.safetensors"
    save_state(other, "JointGaussianMixture", 1, {"a": torch.zeros(1)}, {})
    with pytest.raises(ValueError, match="DMMMEN"):
        DMMMEN.load(other)
    save_state(other, "DMMMEN", 99, {"a": torch.zeros(1)}, {})
    with pytest.raises(ValueError, match="version"):
        DMMMEN.load(other)
    from captum_prior.errors import FileFormatError

    with pytest.raises(FileFormatError, match="version"):
        DMMMEN.load(other)
    # population map: label-invariant, also derived after loading
    np.testing.assert_allclose(back.population_coef_, fitted.population_coef_)


def test_population_map_is_label_invariant(fitted):
    """Permuting the component labels of every draw leaves the population
    coefficient map (1/n) sum_i beta_{z_i} unchanged."""
    est = clone(fitted)
    for k in ("beta_draws_", "counts_draws_", "fit_intercept"):
        setattr(est, k, getattr(fitted, k))
    est.coef_ = fitted.coef_
    rng = np.random.default_rng(0)
    perm = np.stack([rng.permutation(est.n_components) for _ in est.beta_draws_])
    ref = fitted.population_coef_draws()
    est.beta_draws_ = np.take_along_axis(fitted.beta_draws_, perm[:, :, None], axis=1)
    est.counts_draws_ = np.take_along_axis(fitted.counts_draws_, perm, axis=1)
    np.testing.assert_allclose(est.population_coef_draws(), ref, atol=1e-12)
    d = fitted.diagnostics_
    assert {"top_population_coef", "n_occupied", "top_coef_largest_component"} <= set(d)


def test_sklearn_params_and_clone():
    est = DMMMEN(n_components=3, priors=DMMMENPriors(R=2.0), random_state=5)
    params = est.get_params()
    assert params["n_components"] == 3 and params["priors"].R == 2.0
    c = clone(est).set_params(n_iter=7)
    assert c.n_iter == 7 and c.random_state == 5 and est.n_iter == 2000


def test_reference_code_prior_also_recovers(data):
    """The authors' code's lambda prior shapes give the same answer on easy data."""
    X, y, _ = data
    m = DMMMEN(n_iter=300, n_chains=1, variant="reference_code", random_state=1).fit(X, y)
    est = m.coef_[_match(m.coef_)]
    assert np.abs(est - TRUE_B).max() < 0.2
    assert np.array_equal(np.abs(est) > 0.25, TRUE_B != 0)


def test_parallel_chains_match_sequential_and_seed(data):
    """Chains are seeded from random_state alone: joblib workers (n_jobs=2)
    give exactly the draws of the sequential run."""
    X, y, _ = data
    kw = dict(n_iter=30, n_chains=2, random_state=11, check_convergence=False)
    seq = DMMMEN(n_jobs=1, **kw).fit(X[:200], y[:200])
    par = DMMMEN(n_jobs=2, **kw).fit(X[:200], y[:200])
    np.testing.assert_array_equal(seq.trace_, par.trace_)
    np.testing.assert_array_equal(seq.beta_draws_, par.beta_draws_)
    assert par.diagnostics_["n_jobs"] == 2
    # the chains differ from each other
    assert not np.array_equal(seq.trace_[0], seq.trace_[1])


def test_short_chains_warn_and_report(data):
    """Far too few sweeps: R-hat / bulk ESS fail the thresholds, the fit
    warns with ConvergenceDiagnosticWarning and says so in diagnostics_."""
    from captum_prior.errors import ConvergenceDiagnosticWarning

    X, y, _ = data
    with pytest.warns(ConvergenceDiagnosticWarning, match="R-hat|ESS"):
        m = DMMMEN(n_iter=12, n_chains=2, n_jobs=1, random_state=0).fit(X, y)
    assert m.diagnostics_["converged"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceDiagnosticWarning)
        DMMMEN(
            n_iter=12, n_chains=2, n_jobs=1, check_convergence=False, random_state=0
        ).fit(X, y)


def test_to_inference_data(fitted):
    az = pytest.importorskip("arviz")
    idata = fitted.to_inference_data()
    post = idata.posterior
    assert post["beta"].shape == (2, 150, fitted.n_components, fitted.n_features_in_)
    assert post["sigma2"].shape == (2, 150, fitted.n_components)
    np.testing.assert_allclose(
        post["beta"].values.reshape(300, fitted.n_components, -1),
        fitted.beta_draws_[:, :, 1:],
    )
    lp = idata.sample_stats["lp"].values
    np.testing.assert_allclose(lp, fitted.marginal_trace_[:, fitted.burn_in_ :])
    # ArviZ's own diagnostics on the exported draws are ours
    r = float(az.rhat(idata.sample_stats, var_names=["lp"])["lp"])
    assert r == pytest.approx(fitted.diagnostics_["log_posterior_marginal"]["rhat"])


def test_default_draws_match_reference():
    """A fit at the defaults gives exactly the draws of the same fit before the
    public API was reduced (commit 110ed58): ``tests/data/dmm_men_reference.npz``,
    written by ``tests/data/make_dmm_men_reference.py`` on that commit."""
    import pathlib

    here = pathlib.Path(__file__).parent / "data"
    ref = np.load(here / "dmm_men_reference.npz")
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_ref", here / "make_dmm_men_reference.py")
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    for prefix, extra in (("default", {}), ("code", {"variant": "reference_code"})):
        est = mk.fit(**extra)
        for k in mk.FIELDS:
            np.testing.assert_array_equal(getattr(est, k), ref[f"{prefix}_{k}"], err_msg=f"{prefix} {k}")


def test_priors_and_variant_roundtrip_through_save_load(tmp_path):
    """Custom priors and the reference-code variant are stored and reloaded."""
    X, y, _ = three_regimes(n=60)
    est = DMMMEN(n_components=2, n_iter=10, n_chains=1, n_jobs=1, check_convergence=False,
                 priors=DMMMENPriors(e=2.0, intercept_scale=3.0), variant="reference_code",
                 random_state=0).fit(X, y)
    path = tmp_path / "dmm.safetensors"
    est.save(path)
    back = DMMMEN.load(path)
    assert back.priors == DMMMENPriors(e=2.0, intercept_scale=3.0)
    assert back.variant == "reference_code"
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    # the priors change the fit: the default priors give other draws
    other = clone(est).set_params(priors=None).fit(X, y)
    assert not np.array_equal(other.beta_draws_, est.beta_draws_)
