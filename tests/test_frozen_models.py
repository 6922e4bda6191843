"""Every attribution class, prior and metric on frozen models (issue 11).

A pretrained model being explained usually has ``requires_grad=False`` on its
parameters; methods take gradients with respect to the *inputs* and must
work all the same, with all parameters frozen or only half of the layers.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captum_prior.attr import (
    BayLime,
    DeepPriorExpectedGradients,
    DMMMENAttribution,
    ExpectedGradients,
    OptimizedBaseline,
    ValidPathGradients,
)
from captum_prior.metrics import diff_id, insertion_deletion, keep_remove, sensitivity_n
from captum_prior.models import FashionCNN
from captum_prior.priors import BGMMPrior, MaskPrior, MGMPrior
from captum_prior.proxy import DMMMEN

H = 28


def frozen_cnn(how: str) -> nn.Module:
    torch.manual_seed(0)
    model = FashionCNN(width=4).eval()
    layers = [model.conv1, model.conv2, model.conv3, model.fc]
    frozen = {"all": layers, "half": layers[::2], "none": []}[how]  # half: conv1, conv3
    for layer in frozen:
        for p in layer.parameters():
            p.requires_grad_(False)
    return model


def x_refs():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 1, H, H, generator=g), torch.rand(4, 1, H, H, generator=g)


def patches():
    return (torch.arange(H).view(-1, 1) // 14 * 2 + torch.arange(H).view(1, -1) // 14).view(1, 1, H, H)


def _attr_eg(m, x, r):
    return ExpectedGradients(m).attribute(x, r, target=1, n_samples=4,
                                          generator=torch.Generator().manual_seed(0))


METHODS = {
    "ExpectedGradients": _attr_eg,
    "DeepPriorExpectedGradients+MGM": lambda m, x, r: DeepPriorExpectedGradients(m, MGMPrior(m, layer="conv3")).attribute(
        x, r, target=1, n_samples=4, generator=torch.Generator().manual_seed(0)),
    "DeepPriorExpectedGradients+BGMM": lambda m, x, r: DeepPriorExpectedGradients(
        m, BGMMPrior(m, layer="conv3", n_components=2, random_state=0)).attribute(
        x, r, target=1, n_samples=4, generator=torch.Generator().manual_seed(0)),
    "DeepPriorExpectedGradients+Mask": lambda m, x, r: DeepPriorExpectedGradients(
        m, MaskPrior(torch.ones(H, H), scale=0.1)).attribute(x, r, target=1, n_samples=4),
    "ValidPathGradients": lambda m, x, r: ValidPathGradients(m).attribute(x, r[:1], target=1, n_steps=4),
    "OptimizedBaseline": lambda m, x, r: OptimizedBaseline(m, max_iter=2).compute(x),
    "BayLime": lambda m, x, r: BayLime(m, random_state=0).attribute(x, target=1, feature_mask=patches(), n_samples=8),
    "DMMMENAttribution": lambda m, x, r: DMMMENAttribution(m, DMMMEN(n_components=2, n_iter=20, random_state=0)).attribute(
        x, target=1, feature_mask=patches(), n_samples=16, random_state=0),
    "MGMPrior": lambda m, x, r: MGMPrior(m, layer="conv3")(x),
    "BGMMPrior(evidence)": lambda m, x, r: BGMMPrior(m, layer="conv3", reduction="evidence", n_components=2,
                                                    random_state=0)(x, target=1),
    "insertion_deletion": lambda m, x, r: insertion_deletion(m, x, _attr_eg(m, x, r), target=1, n_steps=4),
    "diff_id": lambda m, x, r: diff_id(m, x, _attr_eg(m, x, r), target=1, ratios=(0.5,)),
    "keep_remove": lambda m, x, r: keep_remove(m, x, _attr_eg(m, x, r), target=1, masker="mean", percent=0.25),
    "sensitivity_n": lambda m, x, r: sensitivity_n(m, x, _attr_eg(m, x, r), target=1, fractions=(0.5,),
                                                   n_subsets=3, random_state=0),
}


def _tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


@pytest.mark.parametrize("how", ["all", "half"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_runs_on_frozen_model_and_leaves_it_frozen(name, how):
    model = frozen_cnn(how)
    flags = [p.requires_grad for p in model.parameters()]
    x, r = x_refs()
    out = METHODS[name](model, x, r)
    ts = _tensors(out)
    assert ts and all(torch.isfinite(t).all() for t in ts)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("how", ["all", "half"])
def test_frozen_gives_the_same_attributions_as_trainable(how):
    x, r = x_refs()
    trainable = frozen_cnn("none")
    frozen = frozen_cnn(how)
    torch.testing.assert_close(_attr_eg(frozen, x, r), _attr_eg(trainable, x, r))
    p1 = BGMMPrior(frozen, layer="conv3", reduction="evidence", n_components=2, random_state=0)(x, target=1)
    p2 = BGMMPrior(trainable, layer="conv3", reduction="evidence", n_components=2, random_state=0)(x, target=1)
    torch.testing.assert_close(p1, p2)
