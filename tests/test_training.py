"""Training with attribution priors."""

import pytest
import torch
from torch import nn

from captum_prior.attr import DeepPriorExpectedGradients, ExpectedGradients
from captum_prior.training import (
    AttributionPriorTrainer,
    gini_penalty,
    total_variation_penalty,
    training_attributions,
)


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Softplus(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))


def test_training_attributions_equal_expected_gradients_and_carry_a_graph():
    model = small_cnn()
    x, refs = torch.randn(4, 1, 8, 8), torch.randn(6, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0])
    a = training_attributions(model, x, y, refs, n_samples=3, generator=torch.Generator().manual_seed(0))
    b = ExpectedGradients(model).attribute(x, refs, target=y, n_samples=3,
                                           generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.detach(), b)
    (g,) = torch.autograd.grad(a.pow(2).sum(), model[0].weight)
    assert g.abs().sum() > 0
    p = torch.full((1, 1, 8, 8), 0.3)
    a = training_attributions(model, x, y, refs, prior=p, n_samples=3,
                              generator=torch.Generator().manual_seed(0))
    b = DeepPriorExpectedGradients(model, p).attribute(x, refs, target=y, n_samples=3,
                                                       generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.detach(), b)


def test_penalties():
    flat = torch.ones(2, 1, 6, 6)
    assert total_variation_penalty(flat).item() == 0.0
    checker = (torch.arange(36).view(6, 6) % 2).float().expand(2, 1, 6, 6)
    assert total_variation_penalty(checker).item() > 10
    n = 10
    assert gini_penalty(torch.ones(3, n)).abs().item() < 1e-7
    one_hot = torch.zeros(3, n)
    one_hot[:, 0] = 1
    assert gini_penalty(one_hot).item() == pytest.approx(-(n - 1) / n)
    with pytest.raises(ValueError, match="N x C x H x W"):
        total_variation_penalty(torch.ones(3))


@pytest.mark.parametrize("alternating", [True, False])
def test_trainer_reduces_the_penalised_objective(alternating):
    model = small_cnn()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 1, 8, 8, generator=g)
    y = torch.randint(0, 3, (32,), generator=g)
    trainer = AttributionPriorTrainer(model, torch.optim.Adam(model.parameters(), lr=1e-2),
                                      lam=0.05, alternating=alternating,
                                      generator=torch.Generator().manual_seed(1))
    hist = trainer.fit([(x, y)], epochs=30)
    assert hist[-1]["cross_entropy"] < hist[0]["cross_entropy"]
    first = sum(h["penalty"] for h in hist[:5]) / 5
    last = sum(h["penalty"] for h in hist[-5:]) / 5
    assert last < first
    with pytest.raises(ValueError, match="unknown penalty"):
        AttributionPriorTrainer(model, trainer.optimizer, penalty="l3")
    with pytest.raises(ValueError, match="lam must be >= 0"):
        AttributionPriorTrainer(model, trainer.optimizer, lam=-1.0)


def pooled_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


@pytest.mark.parametrize("kind", ["mgm", "bgmm"])
def test_shared_forward_prior_gives_the_same_steps_as_a_separate_forward(kind):
    """share_forward takes the prior's features (and BGMM's Grad-CAM evidence)
    from the cross-entropy forward: with one summed step (alternating=False)
    and no batch norm or dropout it must reproduce the separate forward."""
    from captum_prior.priors import BGMMPrior, MGMPrior

    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 8, 8, generator=g)
    y = torch.randint(0, 3, (12,), generator=g)
    params, calls = {}, {}
    for share in (True, False):
        model = pooled_cnn()
        prior = MGMPrior(model) if kind == "mgm" else BGMMPrior(model, n_components=2, random_state=0)
        if kind == "bgmm":
            prior.fit(x)
        n = [0]
        model.register_forward_pre_hook(lambda *_, n=n: n.__setitem__(0, n[0] + 1))
        trainer = AttributionPriorTrainer(model, torch.optim.SGD(model.parameters(), lr=0.5), lam=1.0,
                                          prior=prior, alternating=False, share_forward=share,
                                          generator=torch.Generator().manual_seed(1))
        trainer.fit([(x, y)], epochs=3)
        params[share] = [p.detach().clone() for p in model.parameters()]
        calls[share] = n[0]
    for a, b in zip(params[True], params[False]):
        torch.testing.assert_close(a, b)
    assert params[True][0].ne(pooled_cnn()[0].weight).any()  # the steps did move the model
    assert calls[True] < calls[False]  # and the shared route ran fewer forwards
    with pytest.raises(TypeError, match="share_forward"):
        AttributionPriorTrainer(pooled_cnn(), torch.optim.SGD(pooled_cnn().parameters(), lr=0.1),
                                share_forward="yes")
