"""DMM-MEN global insights and the Fig. 2 fidelity tests (paper §4.1)."""

import numpy as np
import pytest
import torch
from torch import nn

from captum_prior.proxy import DMMMEN, DMMMENGlobalInsights
from captum_prior.proxy.dmm_men_insights import (
    class_logit,
    fidelity_tests,
    top_variance_pixels,
)

KEY = torch.tensor([9, 10, 17, 18, 27, 36, 45, 54])  # pixels the class depends on


class KeyPixelModel(nn.Module):
    """3 classes on 1x8x8 images: logit_0 = 4 * sum(x[KEY]) - 12,
    logits 1 and 2 are 0.  Class 0 wins when the key pixels are bright."""

    def forward(self, x):
        f = x.flatten(1)
        z0 = 4.0 * f[:, KEY].sum(1) - 12.0
        zeros = torch.zeros_like(z0)
        return torch.stack([z0, zeros, zeros], dim=1)


def _images(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 0.05 * torch.rand(n, 1, 8, 8, generator=g)
    flat = x.view(n, -1)
    # key pixels and a few distractors vary strongly
    flat[:, KEY] = torch.rand(n, KEY.numel(), generator=g)
    distract = torch.tensor([0, 7, 56, 63, 30, 33])
    flat[:, distract] = torch.rand(n, distract.numel(), generator=g)
    return x


@pytest.fixture(scope="module")
def fitted():
    x = _images()
    gi = DMMMENGlobalInsights(
        KeyPixelModel(),
        0,
        n_features=20,
        estimator=DMMMEN(
            n_chains=1, n_jobs=1, n_components=3, n_iter=300, random_state=0
        ),
    )
    return gi.fit(x), x


def test_class_logit_is_exact_and_finite():
    z = torch.tensor([[2.0, 0.5, -1.0], [60.0, 0.0, 0.0], [-3.0, 1.0, 2.0]])
    y = class_logit(lambda t: t, z, 0)
    p = torch.softmax(z.double(), 1)[:, 0]
    assert torch.allclose(y[[0, 2]], torch.logit(p)[[0, 2]])
    assert torch.isfinite(y).all() and y[1] == pytest.approx(60.0 - np.log(2.0))


def test_top_variance_pixels():
    x = torch.zeros(50, 1, 4, 4)
    x.view(50, -1)[:, 5] = torch.linspace(0, 1, 50)
    x.view(50, -1)[:, 11] = torch.linspace(0, 3, 50)
    assert top_variance_pixels(x, 2).tolist() == [11, 5]
    with pytest.raises(ValueError):
        top_variance_pixels(x, 17)


def test_insights_recover_key_pixels(fitted):
    gi, x = fitted
    assert gi.pixel_index_.shape == (20,)
    assert set(KEY.tolist()) <= set(gi.pixel_index_.tolist())
    ins = gi.insights(k=8)
    assert ins[0]["size"] == max(d["size"] for d in ins)
    assert set(ins[0]["pixels"].tolist()) == set(KEY.tolist())
    heat = ins[0]["heatmap"]
    assert heat.shape == (1, 8, 8)
    # rank r -> (k - r) / k: the most important pixel is brightest, 0 elsewhere
    assert heat.view(-1)[ins[0]["pixels"][0]] == 1.0
    assert (
        sorted(heat.view(-1)[ins[0]["pixels"]].tolist())
        == [(8 - r) / 8 for r in range(8)][::-1]
    )
    assert int((heat > 0).sum()) == 8
    # top_pixels defaults to the most populated component
    assert torch.equal(gi.top_pixels(8), ins[0]["pixels"])
    # coefficients of the key pixels are ~4 (the logit is linear in them
    # where class 0 wins; logsumexp(0, 0) = log 2 is the only other term)
    comp = ins[0]["component"]
    key_cols = [int(np.flatnonzero(gi.pixel_index_.numpy() == k)[0]) for k in KEY]
    np.testing.assert_allclose(gi.estimator_.coef_[comp][key_cols], 4.0, atol=0.15)
    with pytest.raises(ValueError, match="rank_by"):
        gi.insights(5, rank_by="value")
    # the label-invariant population map finds the same key pixels
    pop = gi.population_top_pixels(8)
    assert set(pop.tolist()) == set(KEY.tolist())
    with pytest.raises(ValueError, match="k"):
        gi.population_top_pixels(0)


def test_fidelity_tests_separate_top_from_random(fitted):
    gi, x = fitted
    res = fidelity_tests(
        KeyPixelModel(),
        x,
        0,
        gi.top_pixels(8),
        n_features=(4, 8),
        n_repeats=50,
        n_synthetic=50,
        random_state=0,
    )
    assert res["n_features"] == [4, 8]
    for t in ("nullify", "fill", "synthetic"):
        assert res[t]["top"].shape == res[t]["random"].shape == (50, 2)
        s = res[t]["summary"]
        for k in ("top", "random"):
            assert np.all(np.array(s[k]["low"]) <= np.array(s[k]["high"]))
            assert np.all((np.array(s[k]["mean"]) >= 0) & (np.array(s[k]["mean"]) <= 1))
    nb, nr = res["nullify"]["summary"]["top"], res["nullify"]["summary"]["random"]
    # nullifying all 8 key pixels kills the class; 8 random candidate pixels do not
    assert nb["high"][1] < nr["low"][1] and nb["mean"][1] == 0.0
    fb, fr = res["fill"]["summary"]["top"], res["fill"]["summary"]["random"]
    assert fb["low"][1] > fr["high"][1]
    sb, sr = res["synthetic"]["summary"]["top"], res["synthetic"]["summary"]["random"]
    assert sb["low"][1] > sr["high"][1]
    assert res["synthetic_baseline"].max() == 0.0
    again = fidelity_tests(
        KeyPixelModel(),
        x,
        0,
        gi.top_pixels(8),
        n_features=(4, 8),
        n_repeats=50,
        n_synthetic=50,
        random_state=0,
    )
    np.testing.assert_array_equal(again["fill"]["random"], res["fill"]["random"])


def test_errors():
    x = _images(20)
    gi = DMMMENGlobalInsights(KeyPixelModel(), 0, n_features=70)
    with pytest.raises(ValueError, match="n_features"):
        gi.fit(x)
    with pytest.raises(Exception, match="fit"):
        gi.insights(3)
    with pytest.raises(ValueError, match="top_pixels"):
        fidelity_tests(KeyPixelModel(), x, 0, [1, 2], n_features=(5,))
    with pytest.raises(TypeError):
        DMMMENGlobalInsights(KeyPixelModel(), 0, estimator="dmm")
    with pytest.raises(ValueError, match="NaN"):
        DMMMENGlobalInsights(KeyPixelModel(), 0, n_features=5).fit(x * float("nan"))


def test_save_load_roundtrip(fitted, tmp_path):
    gi, x = fitted
    path = tmp_path / "insights.safetensors"
    gi.save(path)
    back = DMMMENGlobalInsights.load(path, KeyPixelModel())
    assert torch.equal(back.pixel_index_, gi.pixel_index_)
    assert back.image_shape_ == gi.image_shape_ and back.target == gi.target
    np.testing.assert_array_equal(back.estimator_.coef_, gi.estimator_.coef_)
    assert torch.equal(back.top_pixels(8), gi.top_pixels(8))
    np.testing.assert_array_equal(back.design(x[:5]), gi.design(x[:5]))
    with pytest.raises(ValueError, match="DMMMENGlobalInsights"):
        DMMMEN.load(path)


def test_default_cnn_on_fashion_mnist_sample():
    """Global insights for the shipped CNN on the shipped sample's trousers."""
    from captum_prior.data import load_fashion_mnist_sample
    from captum_prior.models import load_fashion_cnn

    x, y = load_fashion_mnist_sample()
    trousers = x[y == 1]
    gi = DMMMENGlobalInsights(
        load_fashion_cnn(),
        1,
        n_features=40,
        estimator=DMMMEN(
            n_chains=1, n_jobs=1, n_components=3, n_iter=120, random_state=0
        ),
    ).fit(trousers)
    assert gi.y_.shape == (trousers.shape[0],) and gi.y_.mean() > 3  # confident
    ins = gi.insights(k=20)
    assert ins[0]["heatmap"].shape == (1, 28, 28)
    assert set(ins[0]["pixels"].tolist()) <= set(gi.pixel_index_.tolist())
    assert np.isfinite(gi.estimator_.trace_).all()
