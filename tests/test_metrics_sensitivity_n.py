"""Tests of captum_prior.metrics.sensitivity_n."""

import math

import pytest
import torch
from torch import nn

from captum_prior.metrics import sensitivity_n
from captum_prior.models import FashionCNN


class Linear(nn.Module):
    def __init__(self, n_features=32, n_classes=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(n_features, n_classes, generator=g))
        self.b = nn.Parameter(torch.randn(n_classes, generator=g))

    def forward(self, x):
        return x.flatten(1) @ self.w + self.b


class Counting(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, *args):
        self.calls += 1
        return self.model(*args)


@pytest.mark.parametrize("sampling", ["fixed", "bernoulli"])
def test_exact_attributions_of_linear_model_correlate_perfectly(sampling):
    model = Linear()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 32, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    exact = x * model.w.detach()[:, y].T  # gradient x input = exact for zero baseline
    res = sensitivity_n(model, x, exact, target=y, fractions=[0.1, 0.5, 0.9],
                        n_subsets=20, sampling=sampling, random_state=0)
    assert res.shape == (6, 3)
    torch.testing.assert_close(res, torch.ones_like(res), atol=1e-5, rtol=0)
    noisy = exact + 2 * torch.randn(exact.shape, generator=g)
    worse = sensitivity_n(model, x, noisy, target=y, fractions=[0.1, 0.5, 0.9],
                          n_subsets=20, sampling=sampling, random_state=0)
    assert (worse < 0.999).all()


def test_nonzero_baseline_and_images():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 5, 4))
    x = torch.rand(3, 2, 5, 5)
    base = torch.full((2, 5, 5), 0.3)
    w = lin[1].weight.detach()[1].view(2, 5, 5)
    exact = (x - base) * w
    res = sensitivity_n(lin, x, exact, target=1, baselines=base, fractions=[0.2, 0.6],
                        n_subsets=15, random_state=3)
    torch.testing.assert_close(res, torch.ones_like(res), atol=1e-5, rtol=0)
    # the pixel is the unit: a channel-summed N x 1 x H x W map gives the same
    shared = exact.sum(1, keepdim=True)
    res2 = sensitivity_n(lin, x, shared, target=1, baselines=base, fractions=[0.2, 0.6],
                         n_subsets=15, random_state=3)
    torch.testing.assert_close(res2, res)


def test_seeded_batch_independent_and_call_count():
    torch.manual_seed(0)
    cnn = FashionCNN(width=4).eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 1, 28, 28, generator=g)
    a = torch.randn(x.shape, generator=g)
    kw = dict(target=[1, 2, 3], fractions=[0.1, 0.5], n_subsets=10, random_state=7)
    counting = Counting(cnn)
    full = sensitivity_n(counting, x, a, max_examples_per_batch=16, **kw)
    rows = 3 * (1 + 2 * 10)
    assert counting.calls == math.ceil(rows / 16)
    again = sensitivity_n(cnn, x, a, max_examples_per_batch=5, show_progress=True, **kw)
    torch.testing.assert_close(again, full, atol=1e-5, rtol=1e-4)
    one = sensitivity_n(cnn, x[1:2], a[1:2], target=[2], fractions=[0.1, 0.5],
                        n_subsets=10, random_state=7)
    torch.testing.assert_close(one, full[1:2], atol=1e-5, rtol=1e-4)
    other_seed = sensitivity_n(cnn, x, a, **{**kw, "random_state": 8})
    assert not torch.allclose(other_seed, full)
    gen_a = sensitivity_n(cnn, x, a, **{**kw, "random_state": torch.Generator().manual_seed(5)})
    gen_b = sensitivity_n(cnn, x, a, **{**kw, "random_state": torch.Generator().manual_seed(5)})
    torch.testing.assert_close(gen_a, gen_b)


def test_constant_attributions_warn_instead_of_silent_nan():
    model = Linear()
    x = torch.randn(2, 32)
    with pytest.warns(UserWarning, match="undefined"):
        res = sensitivity_n(model, x, torch.zeros_like(x), target=0, fractions=[0.5],
                            n_subsets=5, random_state=0)
    assert torch.isnan(res).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fractions=[0.0, 0.5]), "fractions"),
        (dict(fractions=[0.5, 1.0]), "fractions"),
        (dict(fractions=[]), "fractions"),
        (dict(attributions=torch.zeros(2, 31)), "attributions"),
        (dict(attributions=torch.full((2, 32), float("inf"))), "attributions"),
        (dict(n_subsets=1), "n_subsets"),
        (dict(sampling="uniform"), "sampling"),
        (dict(score="softmax"), "score"),
        (dict(baselines=torch.zeros(3)), "baselines"),
    ],
)
def test_bad_input_raises_naming_the_argument(kwargs, match):
    args = dict(attributions=torch.ones(2, 32), target=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sensitivity_n(Linear(), torch.ones(2, 32), **args)
