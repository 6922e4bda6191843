"""DMMMENAttribution: local explanations with DMM-MEN (paper §4.2)."""

import math

import numpy as np
import pytest
import torch
from captum.attr import Lime, PerturbationAttribution
from torch import nn

from captum_prior.attr import DMMMENAttribution
from captum_prior.attr.dmm_men_attribution import patch_feature_mask
from captum_prior.data import load_fashion_mnist_sample
from captum_prior.models import load_fashion_cnn
from captum_prior.proxy import DMMMEN

FAST = DMMMEN(
    n_chains=1, n_jobs=1, n_components=3, n_penalties=2, n_iter=300, burn_in=150
)


class PatchModel(nn.Module):
    """Output column 0 = max(m @ a, m @ b) where m are the 2x2-patch means
    of an 8x8 image (16 patches): piecewise linear in the kept patches.
    Column 1 is m @ b.  Counts calls and rows per call."""

    def __init__(self, a, b):
        super().__init__()
        self.a = torch.as_tensor(a, dtype=torch.float32)
        self.b = torch.as_tensor(b, dtype=torch.float32)
        self.calls = []

    def forward(self, x, scale=None):
        self.calls.append(x.shape[0])
        m = nn.functional.avg_pool2d(x, 2).flatten(1)
        s1, s2 = m @ self.a, m @ self.b
        out = torch.stack([torch.maximum(s1, s2), s2], dim=1)
        if scale is not None:
            out = out * scale[:, None]
        return out


def _two_regime_model():
    a = torch.zeros(16)
    a[:4] = 3.0
    b = torch.full((16,), 0.6)
    return PatchModel(a, b), a, b


MASK = patch_feature_mask((1, 8, 8), 2)


def test_patch_feature_mask():
    m = patch_feature_mask((3, 28, 28), 4)
    assert m.shape == (1, 3, 28, 28) and m.dtype == torch.long
    assert int(m.max()) == 48 and torch.equal(m[0, 0], m[0, 2])
    assert int(m[0, 0, 5, 9]) == 1 * 7 + 2
    with pytest.raises(ValueError):
        patch_feature_mask((28,), 4)


def test_recovers_coefficients_of_the_inputs_regime():
    """The input (all patches kept) lies in regime a (12 > 9.6); the samples
    mix both regimes. DMM-MEN returns regime a's coefficients; one linear
    fit (Captum Lime) blends the regimes."""
    model, a, _ = _two_regime_model()
    x = torch.ones(1, 1, 8, 8)
    dm = DMMMENAttribution(model, estimator=FAST)
    attr = dm.attribute(x, target=0, feature_mask=MASK, n_samples=400, random_state=0)
    assert isinstance(dm, PerturbationAttribution)
    assert attr.shape == x.shape
    coef = attr[0, 0, ::2, ::2].reshape(-1)  # one value per patch
    # constant within each patch
    assert torch.equal(
        attr[0, 0], coef.reshape(4, 4).repeat_interleave(2, 0).repeat_interleave(2, 1)
    )
    truth = a  # patch means are 1
    assert (coef - truth).abs().max() < 0.3
    assert set(torch.topk(coef, 4).indices.tolist()) == {0, 1, 2, 3}
    torch.manual_seed(0)
    lime = Lime(model).attribute(
        x, target=0, feature_mask=MASK, n_samples=400, perturbations_per_eval=100
    )
    lime_coef = lime[0, 0, ::2, ::2].reshape(-1)
    assert (coef - truth).abs().mean() < 0.5 * (lime_coef - truth).abs().mean()
    est = dm.estimators_[0]
    assert est.labels_[0] == np.argmax(
        est.responsibilities(np.ones((1, 16)), [12.0])[0]
    )


def test_batch_uses_chunked_forward_and_per_example_args():
    model, a, b = _two_regime_model()
    x = torch.rand(2, 1, 8, 8) + 0.5
    scale = torch.tensor([1.0, 2.0])
    dm = DMMMENAttribution(
        model, estimator=DMMMEN(n_chains=1, n_jobs=1, n_components=2, n_iter=160)
    )
    n, ppe = 150, 64
    attr = dm.attribute(
        x,
        target=1,
        additional_forward_args=(scale,),
        feature_mask=MASK,
        n_samples=n,
        perturbations_per_eval=ppe,
        random_state=1,
    )
    # every model call goes through forward_rows in chunks of <= ppe rows
    assert len(model.calls) == math.ceil(2 * n / ppe) and max(model.calls) <= ppe
    # target 1 is linear: coefficient of patch l = scale * b_l * mean(x over patch l)
    pm = nn.functional.avg_pool2d(x, 2).flatten(1)
    for i in range(2):
        coef = attr[i, 0, ::2, ::2].reshape(-1)
        np.testing.assert_allclose(coef, scale[i] * b * pm[i], atol=0.05)
    flat = dm.attribute(
        x,
        target=1,
        additional_forward_args=(scale,),
        feature_mask=MASK,
        n_samples=n,
        return_input_shape=False,
        random_state=1,
    )
    assert flat.shape == (2, 16)
    np.testing.assert_allclose(flat[1], attr[1, 0, ::2, ::2].reshape(-1), rtol=1e-6)


def test_reproducible_under_seed():
    model, _, _ = _two_regime_model()
    x = torch.ones(1, 1, 8, 8)
    kw = dict(target=0, feature_mask=MASK, n_samples=120, random_state=7)
    dm = DMMMENAttribution(
        model, estimator=DMMMEN(n_chains=1, n_jobs=1, n_components=2, n_iter=60)
    )
    a1 = dm.attribute(x, **kw)
    a2 = dm.attribute(x, **kw)
    a3 = dm.attribute(x, **{**kw, "random_state": 8})
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)


def test_tuple_inputs_share_feature_ids_and_baselines():
    def f(x1, x2):
        return (x1.flatten(1).sum(1) * 2.0 + x2.flatten(1).sum(1)).unsqueeze(1)

    x1, x2 = torch.ones(1, 4), torch.ones(1, 2)
    m1 = torch.tensor([[0, 0, 1, 1]])
    m2 = torch.tensor([[1, 2]])
    dm = DMMMENAttribution(
        f, estimator=DMMMEN(n_chains=1, n_jobs=1, n_components=2, n_iter=200)
    )
    a1, a2 = dm.attribute(
        (x1, x2),
        baselines=(0.0, torch.zeros(2)),
        target=0,
        feature_mask=(m1, m2),
        n_samples=200,
        random_state=0,
    )
    # feature 0: two x1 entries (4), feature 1: two x1 entries + one x2 (5), feature 2: one x2 (1)
    np.testing.assert_allclose(a1[0], [4, 4, 5, 5], atol=0.1)
    np.testing.assert_allclose(a2[0], [5, 1], atol=0.1)


def test_default_cnn_on_fashion_mnist_sample():
    """The shipped CNN and test sample: keeping the 20 patches DMM-MEN ranks
    highest preserves the true class better than keeping the 20 lowest."""
    model = load_fashion_cnn()
    prob = nn.Sequential(model, nn.Softmax(dim=1)).eval()
    x_all, y_all = load_fashion_mnist_sample(12)
    mask = patch_feature_mask((1, 28, 28), 4)
    dm = DMMMENAttribution(
        prob, estimator=DMMMEN(n_chains=1, n_jobs=1, n_components=3, n_iter=200)
    )
    x, y = x_all[[1, 2, 8]], y_all[[1, 2, 8]]
    attr = dm.attribute(
        x,
        target=y,
        feature_mask=mask,
        n_samples=300,
        perturbations_per_eval=300,
        response="logit",
        random_state=0,
    )
    assert attr.shape == x.shape and torch.isfinite(attr).all()
    assert dm.estimators_[0].coef_.shape[1] == 49
    seg = attr[:, 0, ::4, ::4].reshape(3, 49)
    keep_top, keep_low = torch.zeros(3, 49), torch.zeros(3, 49)
    keep_top.scatter_(1, seg.topk(20, dim=1).indices, 1.0)
    keep_low.scatter_(1, (-seg).topk(20, dim=1).indices, 1.0)
    with torch.no_grad():
        p_top = prob(x * keep_top[:, mask[0, 0]].unsqueeze(1))[torch.arange(3), y]
        p_low = prob(x * keep_low[:, mask[0, 0]].unsqueeze(1))[torch.arange(3), y]
    assert bool((p_top >= p_low).all()) and p_top.mean() > p_low.mean() + 0.1


def test_logit_response_and_errors():
    model, _, _ = _two_regime_model()
    x = torch.ones(1, 1, 8, 8)
    dm = DMMMENAttribution(
        model, estimator=DMMMEN(n_chains=1, n_jobs=1, n_components=2, n_iter=40)
    )
    with pytest.raises(ValueError, match="logit"):
        dm.attribute(x, target=0, feature_mask=MASK, n_samples=50, response="logit")
    with pytest.raises(ValueError, match="response"):
        dm.attribute(x, target=0, feature_mask=MASK, n_samples=50, response="prob")
    with pytest.raises(ValueError, match="broadcast"):
        dm.attribute(
            x, target=0, feature_mask=torch.zeros(1, 1, 3, 3, dtype=torch.long)
        )
    with pytest.raises(ValueError, match="at least 2"):
        dm.attribute(
            x, target=0, feature_mask=torch.zeros(1, 1, 8, 8, dtype=torch.long)
        )
    with pytest.raises(ValueError, match="out of range"):
        dm.attribute(x, target=5, feature_mask=MASK, n_samples=50)
    with pytest.raises(ValueError, match="NaN"):
        dm.attribute(x * float("nan"), target=0, feature_mask=MASK)
    with pytest.raises(TypeError, match="DMMMEN"):
        DMMMENAttribution(model, estimator=object())

    prob_model = nn.Sequential(model, nn.Softmax(dim=1))
    dm2 = DMMMENAttribution(
        prob_model, estimator=DMMMEN(n_chains=1, n_jobs=1, n_components=2, n_iter=40)
    )
    attr = dm2.attribute(
        x, target=0, feature_mask=MASK, n_samples=80, response="logit", random_state=0
    )
    assert torch.isfinite(attr).all()
