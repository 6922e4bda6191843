"""Tests of captum_prior.attr.BayLime and its BayesianLinearModel surrogate."""

import warnings

import numpy as np
import pytest
import torch
from captum._utils.models.linear_model import SkLearnLinearModel
from captum.attr import Lime
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import BayesianRidge
from torch import nn

from captum_prior.attr import BayesianLinearModel, BayLime


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).eval()


def data(n, p, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.bernoulli(torch.full((n, p), 0.5), generator=g)
    y = x @ torch.randn(p, generator=g) + 0.3 * torch.randn(n, generator=g)
    w = torch.rand(n, generator=g) + 0.1
    return x, y, w


@pytest.mark.parametrize("n, p", [(60, 6), (10, 25)])
def test_noninformative_prior_matches_sklearn_bayesian_ridge(n, p):
    x, y, w = data(n, p, seed=n)
    ours = BayesianLinearModel().fit_tensors(x, y, w)
    ref = BayesianRidge().fit(x.double().numpy(), y.double().numpy(), sample_weight=w.double().numpy())
    np.testing.assert_allclose(ours.coef_.numpy(), ref.coef_, atol=1e-8)
    np.testing.assert_allclose(ours.intercept_.item(), ref.intercept_, atol=1e-8)
    np.testing.assert_allclose(ours.sigma_.numpy(), ref.sigma_, atol=1e-8)
    np.testing.assert_allclose(ours.alpha_, ref.alpha_, rtol=1e-6)
    np.testing.assert_allclose(ours.lambda_[0].item(), ref.lambda_, rtol=1e-6)
    assert ours.n_iter_ == ref.n_iter_


def test_flat_prior_baylime_matches_lime_with_bayesian_ridge_on_same_samples(net):
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    for i in range(3):  # one example per call: captum's sklearn wrapper draws from
        # torch's generator when it builds its nn.Linear, shifting later samples
        torch.manual_seed(10 + i)
        ref = Lime(net, SkLearnLinearModel("linear_model.BayesianRidge")).attribute(
            x[i : i + 1], target=1, n_samples=60
        )
        torch.manual_seed(10 + i)
        ours = BayLime(net).attribute(x[i : i + 1], target=1, n_samples=60)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_full_informative_posterior_is_the_closed_form():
    x, y, w = data(30, 5, seed=3)
    mu0 = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.3], dtype=torch.float64)
    lam, alpha = 4.0, 2.5
    m = BayesianLinearModel(prior_mean=mu0, prior_precision=lam, noise_precision=alpha)
    m.fit_tensors(x, y, w)
    X, Y, W = x.double(), y.double(), w.double()
    xc = X - (W @ X) / W.sum()
    yc = Y - (W @ Y) / W.sum()
    prec = lam * torch.eye(5, dtype=torch.float64) + alpha * xc.T @ (W[:, None] * xc)
    mean = torch.linalg.solve(prec, lam * mu0 + alpha * xc.T @ (W * yc))
    torch.testing.assert_close(m.coef_, mean)
    torch.testing.assert_close(m.sigma_, torch.linalg.inv(prec))
    assert m.n_iter_ == 0


def test_vanishing_prior_precision_gives_weighted_least_squares():
    x, y, w = data(40, 4, seed=4)
    m = BayesianLinearModel(prior_precision=1e-10, noise_precision=1.0).fit_tensors(x, y, w)
    a = torch.cat([x.double(), torch.ones(40, 1, dtype=torch.float64)], 1) * w.double().sqrt()[:, None]
    sol = torch.linalg.lstsq(a, y.double() * w.double().sqrt()).solution
    torch.testing.assert_close(m.coef_, sol[:4], atol=1e-6, rtol=1e-6)


def test_strong_prior_pulls_attributions_to_the_prior_mean(net):
    x = torch.randn(2, 8, generator=torch.Generator().manual_seed(5))
    mu0 = torch.linspace(-1, 1, 8)
    dists = []
    for lam in (1e-3, 1.0, 1e2, 1e6):
        a = BayLime(net, prior_mean=mu0, prior_precision=lam, noise_precision=10.0,
                    random_state=0).attribute(x, target=2, n_samples=40)
        dists.append(float((a - mu0).abs().max()))
    assert all(d1 > d2 for d1, d2 in zip(dists, dists[1:], strict=False))
    assert dists[-1] < 1e-3
    # partial informative: the noise precision is estimated, the pull remains
    weak = BayLime(net, random_state=0).attribute(x, target=2, n_samples=40)
    strong = BayLime(net, prior_mean=mu0, prior_precision=1e4, random_state=0).attribute(
        x, target=2, n_samples=40
    )
    assert (strong - mu0).abs().mean() < (weak - mu0).abs().mean()


def test_intervals_shrink_as_samples_grow(net):
    x = torch.randn(2, 8, generator=torch.Generator().manual_seed(6))
    for kw in (dict(prior_precision=1.0, noise_precision=50.0), dict()):
        widths = []
        for n in (20, 80, 320):
            attr, (lo, hi) = BayLime(net, random_state=1, **kw).attribute(
                x, target=0, n_samples=n, return_intervals=True
            )
            assert (lo <= attr + 1e-6).all() and (hi >= attr - 1e-6).all()
            widths.append(float((hi - lo).mean()))
        assert widths[0] > widths[1] > widths[2], (kw, widths)


def test_intervals_shapes_feature_mask_and_levels():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    img = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    fm = (torch.arange(64).view(8, 8) // 16).view(1, 1, 8, 8).expand(1, 3, 8, 8)
    bl = BayLime(cnn, random_state=0)
    attr, (lo, hi) = bl.attribute(img, target=1, feature_mask=fm, n_samples=30, return_intervals=True)
    assert attr.shape == lo.shape == hi.shape == img.shape
    # constant within each feature-mask group
    assert torch.equal(lo[0, 0, :2], lo[0, 0, :1].expand(2, 8))
    attr2, (lo2, hi2) = bl.attribute(img, target=1, feature_mask=fm, n_samples=30,
                                     return_intervals=True, credible_level=0.5)
    torch.testing.assert_close(attr2, attr)  # same seed, same samples
    assert ((hi2 - lo2) <= (hi - lo) + 1e-7).all()
    flat, (flo, fhi) = bl.attribute(img, target=1, feature_mask=fm, n_samples=30,
                                    return_intervals=True, return_input_shape=False)
    assert flat.shape == flo.shape == (2, 4)
    torch.testing.assert_close(flo[:, 0], lo[:, 0, 0, 0])
    # tuple inputs
    two = lambda a, b: cnn(torch.cat([a, b], 1))  # noqa: E731
    t_attr, (t_lo, t_hi) = BayLime(two, random_state=0).attribute(
        (img[:, :1], img[:, 1:]), target=1, n_samples=30, return_intervals=True
    )
    assert isinstance(t_lo, tuple) and t_lo[1].shape == img[:, 1:].shape


def test_prior_mean_per_call_from_an_input_shaped_map():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    img = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    fm = (torch.arange(64).view(8, 8) // 16).view(1, 1, 8, 8).expand(1, 3, 8, 8)
    prior_map = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    bl = BayLime(cnn, prior_precision=1e8, noise_precision=1.0, random_state=0)
    flat = bl.attribute(img, target=0, feature_mask=fm, n_samples=20,
                        return_input_shape=False, prior_mean=prior_map)
    expect = prior_map.view(2, 3, 4, 16).mean((1, 3))  # group means of the map
    torch.testing.assert_close(flat, expect.float(), atol=1e-4, rtol=1e-4)
    per_example = bl.attribute(img, target=0, feature_mask=fm, n_samples=20,
                               return_input_shape=False, prior_mean=expect)
    torch.testing.assert_close(per_example, flat, atol=1e-5, rtol=1e-5)


def test_surrogate_api_and_errors(net):
    m = BayesianLinearModel()
    with pytest.raises(NotFittedError):
        m.representation()
    x, y, w = data(20, 3, seed=10)
    m.fit_tensors(x, y, w)
    assert m.representation().shape == (1, 3)
    assert m(x).shape == (20, 1)
    lo, hi = m.credible_intervals(0.9)
    assert (lo < m.coef_).all() and (hi > m.coef_).all()
    with pytest.raises(ValueError, match="prior_precision"):
        BayesianLinearModel(prior_precision=-1.0).fit_tensors(x, y)
    with pytest.raises(ValueError, match="noise_precision"):
        BayesianLinearModel(noise_precision=0.0).fit_tensors(x, y)
    with pytest.raises(ValueError, match="prior_mean"):
        BayesianLinearModel(prior_mean=torch.zeros(5)).fit_tensors(x, y)
    with pytest.raises(ValueError, match="sample_weight"):
        BayesianLinearModel().fit_tensors(x, y, -w)
    xin = torch.randn(1, 8)
    with pytest.raises(ValueError, match="credible_level"):
        BayLime(net).attribute(xin, target=0, return_intervals=True, credible_level=1.5)
    with pytest.raises(ValueError, match="prior_mean"):
        BayLime(net).attribute(xin, target=0, prior_mean=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="n_samples"):
        BayLime(net).attribute(xin, target=0, n_samples=1)
