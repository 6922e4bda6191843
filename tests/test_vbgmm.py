"""The batched Bayesian GMM engine against scikit-learn's BayesianGaussianMixture (the oracle)."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import BayesianGaussianMixture

from captum_prior._kmeans import kmeans
from captum_prior.priors import BGMMPrior
from captum_prior.priors._vbgmm import BatchedBayesianGMM


def blobs(seed, n=(30, 19), d=4):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0, 1, (n[0], d)), rng.normal(3, 0.5, (n[1], d))])


def sklearn_from(resp0, **kw):
    """scikit-learn's mixture, started from the responsibilities ``resp0``."""

    class Given(BayesianGaussianMixture):
        def _initialize_parameters(self, X, random_state, xp=None):
            self._initialize(X, resp0)

    return Given(**kw)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("cov", ["full", "diag"])
@pytest.mark.parametrize("weights", ["dirichlet_process", "dirichlet_distribution"])
@pytest.mark.parametrize("max_iter", [1, 3, 200])
@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_lower_bound_and_responsibilities_match_sklearn(cov, weights, max_iter, engine):
    x = blobs(0)
    resp0 = np.eye(5)[np.random.default_rng(1).integers(0, 5, len(x))]
    kw = dict(n_components=5, covariance_type=cov, weight_concentration_prior_type=weights,
              max_iter=max_iter, tol=1e-3, reg_covar=1e-4)
    ref = sklearn_from(resp0, **kw).fit(x)
    ours = BatchedBayesianGMM(engine=engine, **kw).fit(torch.tensor(x), torch.tensor(resp0))
    assert ours.n_iter_.item() == ref.n_iter_
    assert bool(ours.converged_.item()) == ref.converged_
    np.testing.assert_allclose(ours.lower_bound_.item(), ref.lower_bound_, rtol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(torch.tensor(x))[0].numpy(), ref.predict_proba(x), atol=1e-8)
    np.testing.assert_allclose(ours.means_[0].numpy(), ref.means_, atol=1e-8)
    np.testing.assert_allclose(ours.weights_[0].numpy(), ref.weights_, atol=1e-8)


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_batch_fits_each_element_as_if_alone(engine):
    xs = [blobs(s) for s in range(3)]
    r = [np.eye(4)[np.random.default_rng(s).integers(0, 4, 49)] for s in range(3)]
    batch = BatchedBayesianGMM(4, max_iter=300, engine=engine).fit(torch.tensor(np.stack(xs)), torch.tensor(np.stack(r)))
    post = batch.predict_proba(torch.tensor(np.stack(xs)))
    for i in range(3):
        one = BatchedBayesianGMM(4, max_iter=300, engine=engine).fit(torch.tensor(xs[i]), torch.tensor(r[i]))
        assert one.n_iter_.item() == batch.n_iter_[i].item()
        torch.testing.assert_close(one.lower_bound_[0], batch.lower_bound_[i], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(one.predict_proba(torch.tensor(xs[i]))[0], post[i], rtol=0, atol=1e-10)
    assert len(set(batch.n_iter_.tolist())) > 1  # the elements really stopped at different iterations


def test_kmeans_init_finds_sklearns_partition_and_is_seeded():
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 10, (4, 3))
    x = np.concatenate([c + rng.normal(0, 0.3, (15, 3)) for c in centres])
    ref = KMeans(4, n_init=1, random_state=0).fit(x).labels_
    lab = kmeans(torch.tensor(x)[None], 4, torch.Generator().manual_seed(0))[0]
    assert adjusted_rand_score(ref, lab.numpy()) == 1.0
    xt = torch.tensor(np.stack([blobs(0), blobs(1)]))
    a = BatchedBayesianGMM(5, random_state=7).fit(xt)
    b = BatchedBayesianGMM(5, random_state=7).fit(xt)
    torch.testing.assert_close(a.predict_proba(xt), b.predict_proba(xt), rtol=0, atol=0)
    g = BatchedBayesianGMM(5, random_state=torch.Generator().manual_seed(7)).fit(xt)
    torch.testing.assert_close(a.predict_proba(xt), g.predict_proba(xt), rtol=0, atol=0)


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_numpy_and_torch_engines_agree(cov):
    """The CPU default (NumPy) and the torch engine run the same updates:
    same iterations, lower bounds and posteriors to rounding, torch tensors
    out either way."""
    xt = torch.tensor(np.stack([blobs(s) for s in range(4)]))
    fits = {e: BatchedBayesianGMM(5, covariance_type=cov, random_state=3, engine=e).fit(xt)
            for e in ("numpy", "torch")}
    a, b = fits["numpy"], fits["torch"]
    assert torch.equal(a.n_iter_, b.n_iter_) and a.n_iter_.dtype == torch.long
    torch.testing.assert_close(a.lower_bound_, b.lower_bound_, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(a.predict_proba(xt), b.predict_proba(xt), rtol=0, atol=1e-10)
    for key in BatchedBayesianGMM._KEYS:
        va, vb = getattr(a, key), getattr(b, key)
        for u, v in zip(va if isinstance(va, tuple) else (va,), vb if isinstance(vb, tuple) else (vb,)):
            assert isinstance(u, torch.Tensor) and u.dtype == v.dtype == torch.float64
            torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-12)
    assert BatchedBayesianGMM(5, engine="auto").fit(xt).converged_.dtype == torch.bool


def test_bad_input():
    gm = BatchedBayesianGMM(3)
    with pytest.raises(NotFittedError):
        gm.predict_proba(torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match="NaN"):
        gm.fit(torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="n_components"):
        gm.fit(torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="B x N x D"):
        gm.fit(torch.zeros(5))
    with pytest.raises(TypeError):
        gm.fit(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="covariance_type"):
        BatchedBayesianGMM(3, covariance_type="tied")
    with pytest.raises(ValueError, match="engine"):
        BatchedBayesianGMM(3, engine="jax")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_prior_posterior_is_sklearns_fit_from_the_same_start():
    """End to end on the bundled CNN: the prior's posterior for every image
    equals scikit-learn's mixture fitted on the same (PCA-reduced, scaled)
    rows from the same k-means partition."""
    from captum_prior.data import load_fashion_mnist_sample
    from captum_prior.models import load_fashion_cnn

    model = load_fashion_cnn()
    x, _ = load_fashion_mnist_sample(4)
    prior = BGMMPrior(model, random_state=0)
    rows = prior._rows(prior.features(x)[0])
    gm, pca, scale = prior._fit_rows(rows)
    z = ((rows.double() - pca[0]) @ pca[1]) / scale
    post = gm.predict_proba(z)
    labels = kmeans(z, 5, torch.Generator().manual_seed(0))
    for i in range(len(x)):
        resp0 = np.eye(5)[labels[i].numpy()]
        ref = sklearn_from(resp0, n_components=5, max_iter=200, reg_covar=1e-4).fit(z[i].numpy())
        np.testing.assert_allclose(post[i].numpy(), ref.predict_proba(z[i].numpy()), atol=1e-6)
        np.testing.assert_allclose(gm.lower_bound_[i].item(), ref.lower_bound_, rtol=1e-8)
    maps = prior(x)
    assert maps.shape == x.shape and maps.device == x.device
