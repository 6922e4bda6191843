"""MGMPrior, BGMMPrior and MaskPrior (issue 2)."""

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.covariance import ledoit_wolf
from torch import nn

from captum_prior.attr import DeepPriorExpectedGradients
from captum_prior.priors import BGMMPrior, MaskPrior, MGMPrior
from captum_prior.priors.mgm import shrunk_gaussian, shrunk_gaussian_logpdf


class TwoRegion(nn.Module):
    """Features on a 7x7 grid: channel 0 = patch brightness, channel 1 = darkness.

    ``sign=+1``: class 0 is evidenced by bright patches, class 1 by dark ones.
    """

    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(1, 2, kernel_size=4, stride=4)
        with torch.no_grad():
            self.feat.weight.zero_()
            self.feat.weight[0] = 1 / 16
            self.feat.weight[1] = -1 / 16
            self.feat.bias.copy_(torch.tensor([0.0, 1.0]))
        self.head = nn.Linear(2 * 49, 2)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[0, :49] = 1.0
            self.head.weight[1, 49:] = 1.0
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(torch.flatten(self.feat(x), 1))


def two_region_image(object_cells):
    """28x28 image: dark background, a bright object on the given 7x7 cells."""
    g = torch.Generator().manual_seed(0)
    cells = torch.zeros(7, 7)
    cells[object_cells] = 1.0
    img = 0.1 + 0.8 * cells.repeat_interleave(4, 0).repeat_interleave(4, 1)
    img = img + 0.03 * torch.randn(28, 28, generator=g)
    return img.view(1, 1, 28, 28), cells.repeat_interleave(4, 0).repeat_interleave(4, 1).bool()


SMALL = (slice(2, 5), slice(2, 5))  # 9 of 49 cells, centred
LARGE = (slice(0, 7), slice(1, 6))  # 35 of 49 cells, covering the centre


def region_means(prior_map, obj):
    m = prior_map[0, 0]
    return m[obj].mean().item(), m[~obj].mean().item()


@pytest.mark.parametrize("cells,majority_is_object", [(SMALL, False), (LARGE, True)])
def test_mgm_paper_orientation_favours_the_majority_region(cells, majority_is_object):
    x, obj = two_region_image(cells)
    p = MGMPrior(TwoRegion(), layer="feat", variant="paper").prior_map(x)
    o, b = region_means(p, obj)
    assert abs(o - b) > 0.3  # the map separates the two regions
    assert (o > b) == majority_is_object


@pytest.mark.parametrize("cells", [SMALL, LARGE])
def test_mgm_object_orientation_marks_the_object(cells):
    x, obj = two_region_image(cells)
    prior = MGMPrior(TwoRegion(), layer="feat")
    o, b = region_means(prior.prior_map(x), obj)
    assert o - b > 0.3
    # the shift is the map times scale times the data's std
    p = prior(x)
    np.testing.assert_allclose(p.numpy(), (prior.prior_map(x) * prior.scale * x.std(unbiased=False)).numpy(),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cells", [SMALL, LARGE])
def test_bgmm_center_marks_the_central_object(cells):
    x, obj = two_region_image(cells)
    p = BGMMPrior(TwoRegion(), layer="feat", reduction="center", random_state=0).prior_map(x)
    o, b = region_means(p, obj)
    assert o - b > 0.6  # edges are blurred by the bilinear upsampling


@pytest.mark.parametrize("target,object_high", [(0, True), (1, False)])
def test_bgmm_evidence_follows_the_target_class(target, object_high):
    x, obj = two_region_image(SMALL)
    p = BGMMPrior(TwoRegion(), layer="feat", reduction="evidence", random_state=0).prior_map(x, target=target)
    o, b = region_means(p, obj)
    assert (o > b + 0.5) == object_high and (b > o + 0.5) == (not object_high)


@pytest.mark.parametrize("reduction", ["evidence", "center"])
def test_bgmm_map_of_an_image_does_not_depend_on_its_batch(reduction):
    """Each image's mixture is fitted from its own features and random_state
    only: explained alone, or in any batch, it gets the same map."""
    model = cnn()
    x = torch.rand(6, 1, 28, 28)
    prior = BGMMPrior(model, reduction=reduction, random_state=3)
    batch = prior.prior_map(x, target=2)
    alone = torch.cat([prior.prior_map(x[i : i + 1], target=2) for i in range(len(x))])
    torch.testing.assert_close(batch, alone, rtol=0, atol=1e-6)
    torch.testing.assert_close(prior.prior_map(x.flip(0), target=2), batch.flip(0), rtol=0, atol=1e-6)
    other = BGMMPrior(model, reduction=reduction, random_state=4).prior_map(x, target=2)
    assert not torch.allclose(other, batch)  # the seed matters


def test_shrunk_gaussian_matches_ledoit_wolf_and_scipy():
    torch.manual_seed(0)
    for n, c in [(49, 120), (150, 10)]:
        x = torch.randn(1, n, c, dtype=torch.float64) * torch.linspace(0.5, 2, c, dtype=torch.float64)
        lp = shrunk_gaussian_logpdf(shrunk_gaussian(x), x)[0].numpy()
        xc = (x[0] - x[0].mean(0)).numpy()
        _, s = ledoit_wolf(xc, assume_centered=True)
        cov = np.cov(xc.T)
        sigma = (1 - s) * cov + s * np.trace(cov) / c * np.eye(c)
        ref = multivariate_normal(x[0].mean(0).numpy(), sigma).logpdf(x[0].numpy())
        np.testing.assert_allclose(lp, ref, rtol=1e-8, atol=1e-8)


def cnn():
    from captum_prior.models import FashionCNN

    torch.manual_seed(0)
    return FashionCNN().eval()


PRIORS = {
    "mgm": lambda m: MGMPrior(m),
    "mgm_pca": lambda m: MGMPrior(m, n_components=6, scale=0.5),
    "bgmm": lambda m: BGMMPrior(m, random_state=1),
    "bgmm_evidence": lambda m: BGMMPrior(m, reduction="evidence", random_state=1),
}


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_shape_range_determinism_and_model_untouched(name):
    model = cnn()
    model.train()  # the prior must leave train mode as it found it
    state = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    x = torch.rand(10, 1, 28, 28)
    prior = PRIORS[name](model)
    prior.batch_size = 4
    p1 = prior(x, target=3)
    assert len(calls) == 4  # one forward to find layer=None's layer, then one per batch of 4
    assert prior.layer_name_ == "conv3" and "layer='conv3'" in repr(prior)
    calls.clear()
    torch.testing.assert_close(prior(x, target=3), p1)
    assert len(calls) == 3  # the layer is found once
    p2 = PRIORS[name](model)(x, target=3)
    assert p1.shape == (10, 1, 28, 28)
    hi = prior.scale * x.std(unbiased=False)  # in units of the data's std (here: the inputs')
    assert p1.min() >= 0 and p1.max() <= hi + 1e-6
    assert torch.equal(p1, p2)
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not any(len(m._forward_hooks) for m in model.modules())


def test_fit_on_reference_set_and_reference_code_modes():
    model = cnn()
    x, refs = torch.rand(3, 1, 28, 28), torch.rand(12, 1, 28, 28)
    for prior in (MGMPrior(model).fit(refs), BGMMPrior(model, random_state=0).fit(refs)):
        p = prior.prior_map(x)
        assert p.shape == (3, 1, 28, 28) and 0 <= p.min() and p.max() <= 1
        torch.testing.assert_close(prior.data_std_.flatten(), refs.std(unbiased=False).view(1))
    # released code: raw density x 10 over the (C*h) x w reshape, not in [0, 1]
    p = MGMPrior(model, variant="reference_code").prior_map(x)
    assert p.shape == (3, 1, 28, 28) and torch.isfinite(p).all() and p.max() > 1
    prior = BGMMPrior(model, variant="reference_code", random_state=0)
    p = prior.prior_map(x[:1])
    assert p.shape == (1, 1, 28, 28) and 0 <= p.min() and p.max() <= 1
    # its (C*h) x K posterior: K = n_components, the user's value when given
    rows = prior._rows(prior.features(x[:1])[0])
    assert prior._posterior(prior._fit_rows(rows), rows).shape[-1] == 5
    three = BGMMPrior(model, variant="reference_code", n_components=3, random_state=0)
    assert three._posterior(three._fit_rows(rows), rows).shape[-1] == 3
    assert three._mixture(torch.float64).max_iter == 100 and prior._mixture(torch.float64).reg_covar == 1e-6
    assert BGMMPrior(model, max_iter=7, variant="reference_code")._mixture(torch.float64).max_iter == 7
    assert BGMMPrior(model)._mixture(torch.float64).max_iter == 200


def test_deep_prior_eg_with_priors_end_to_end():
    model = cnn()
    x, refs = torch.rand(2, 1, 28, 28), torch.rand(8, 1, 28, 28)
    for prior in (MGMPrior(model), BGMMPrior(model, random_state=0), MaskPrior(torch.ones(28, 28))):
        a, d = DeepPriorExpectedGradients(model, prior).attribute(
            x, refs, target=1, n_samples=8, generator=torch.Generator().manual_seed(0),
            return_convergence_delta=True)
        assert a.shape == x.shape and torch.isfinite(a).all() and d.shape == (2 * 8,)


def test_mask_prior():
    masks = torch.zeros(2, 14, 14)
    masks[0, 3:8, 3:8] = 255
    prior = MaskPrior(masks, scale=0.5)
    p = prior(torch.rand(2, 3, 28, 28))
    assert p.shape == (2, 1, 28, 28)
    assert set(p.unique().tolist()) == {0.0, 0.5}
    assert p[1].sum() == 0
    with pytest.raises(ValueError, match="holds 2 masks for 3 images"):
        prior(torch.rand(3, 3, 28, 28))
    with pytest.raises(ValueError, match="masks must hold values in"):
        MaskPrior(torch.full((4, 4), -1.0))


def test_prior_bad_input():
    model = cnn()
    with pytest.raises(ValueError, match="not part of the model"):
        MGMPrior(model, layer=nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="not a submodule"):
        BGMMPrior(model, layer="conv9")
    with pytest.raises(ValueError, match="4-D"):
        MGMPrior(model, layer="fc")(torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match="unknown reduction"):
        BGMMPrior(model, reduction="median")
    with pytest.raises(ValueError, match="unknown variant"):
        MGMPrior(model, variant="code")
    with pytest.raises(ValueError, match="BGMMPrior has no variant 'corrected'"):
        BGMMPrior(model, variant="corrected")
    with pytest.raises(ValueError, match="unknown reduction"):
        BGMMPrior(model, reduction="max")

    class Tiny(nn.Module):  # a 2x2 feature map: 4 rows
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 14, stride=14)
            self.fc = nn.Linear(12, 2)

        def forward(self, x):
            return self.fc(self.conv(x).flatten(1))

    with pytest.raises(ValueError, match="only 4 feature rows for a BGMM with n_components=5"):
        BGMMPrior(Tiny())(torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match="n_components=4 must be below"):
        MGMPrior(Tiny(), n_components=4)(torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match="out of range"):
        BGMMPrior(model, reduction="evidence")(torch.rand(1, 1, 28, 28), target=10)
    with pytest.raises(ValueError, match="NaN"):
        MGMPrior(model)(torch.full((1, 1, 28, 28), float("nan")))

    class Flat(nn.Module):  # output is not 2-D
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 4, stride=4)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(ValueError, match="needs N x C logits"):
        BGMMPrior(Flat(), reduction="evidence")(torch.rand(1, 1, 28, 28), target=0)
    with pytest.raises(ValueError, match="no submodule of the model returns one"):
        MGMPrior(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))(torch.rand(1, 1, 2, 2))
    with pytest.raises(ValueError, match="clamp must be"):
        MGMPrior(model, clamp=0.5)
    with pytest.raises(ValueError, match="data_std must be positive"):
        MGMPrior(model, data_std=0.0)


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_mixed_train_eval_modes_are_restored_exactly(name):
    """A training model whose batch norms are frozen in eval mode (a common
    fine-tuning set-up) is left with every submodule's flag as found; an
    eval-mode model is not switched at all (no ``train()`` call)."""
    model = cnn().train()
    frozen = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert frozen
    for m in frozen:
        m.eval()
    flags = [m.training for m in model.modules()]
    x = torch.rand(2, 1, 28, 28)
    PRIORS[name](model)(x, target=1)
    assert [m.training for m in model.modules()] == flags
    model.eval()
    calls = []
    orig = type(model).train
    type(model).train = lambda self, mode=True: calls.append(mode) or orig(self, mode)
    try:
        PRIORS[name](model)(x, target=1)
    finally:
        type(model).train = orig
    assert calls == [] and not any(m.training for m in model.modules())
