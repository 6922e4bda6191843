"""DeepPrior-EG priors in the data's units, clamped, on the right layer (issue 15)."""

import pytest
import torch
from torch import nn

from captum_prior.attr import DeepPriorExpectedGradients
from captum_prior.errors import InputRangeWarning
from captum_prior.priors import BGMMPrior, MGMPrior
from captum_prior.priors._base import DEFAULT_SCALE


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 3),
    ).eval()


def images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 16, 16)
    x[:, :, 4:12, 5:11] = 0.3 + 0.7 * torch.rand(n, 1, 8, 6, generator=g)  # an "object" on black
    return x


class Recorder(nn.Module):
    """Wraps a model and keeps every input it is evaluated on."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.model(x)


@pytest.mark.parametrize("make", [lambda m: MGMPrior(m, scale=3.0), lambda m: BGMMPrior(m, scale=3.0, random_state=0)])
def test_prior_shifted_baselines_stay_inside_the_clamp_range(make):
    model = small_cnn()
    x, refs = images(3), images(10, seed=1)
    rec = Recorder(model)
    prior = make(model)  # a large shift: 3 standard deviations
    a, delta = DeepPriorExpectedGradients(rec, prior).attribute(
        x, baselines=refs, target=1, n_samples=16, generator=torch.Generator().manual_seed(0),
        return_convergence_delta=True)
    lo, hi = float(refs.min()), float(refs.max())
    pts = torch.cat(rec.seen)
    # every evaluated point (path points, baselines of the delta) is in the references' range
    assert pts.min() >= lo - 1e-6 and pts.max() <= hi + 1e-6
    assert torch.isfinite(a).all() and delta.shape == (3 * 16,)  # GradientShap's shape: one per draw
    # the shift itself does reach outside: without the clamp the baselines leave the range
    rec.seen.clear()
    prior.clamp = None
    with pytest.warns(InputRangeWarning, match="clamp=None"):
        DeepPriorExpectedGradients(rec, prior).attribute(
            x, baselines=refs, target=1, n_samples=16, generator=torch.Generator().manual_seed(0))
    assert torch.cat(rec.seen).min() < lo - 0.1


def test_explicit_clamp_range():
    model = small_cnn()
    x, refs = images(2), images(6, seed=1)
    rec = Recorder(model)
    prior = MGMPrior(model, scale=3.0, clamp=(0.1, 0.9))
    DeepPriorExpectedGradients(rec, prior).attribute(
        x, baselines=refs, target=0, n_samples=8, generator=torch.Generator().manual_seed(0),
        return_convergence_delta=True)
    starts = torch.cat(rec.seen)
    # path points lie between a clamped baseline and the input (which may be 0 or 1)
    assert starts.min() >= 0.0 and starts.max() <= 1.0
    assert prior.baseline_range(refs) == (0.1, 0.9)


class Times(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        return x * self.c


@pytest.mark.parametrize("cls", [MGMPrior, BGMMPrior])
def test_default_scale_is_in_data_units(cls):
    """The same data in other units (x 10) gets the same relative shift and the
    same attributions: the model reading x/10 sees exactly the same inputs."""
    model = small_cnn()
    model10 = nn.Sequential(Times(0.1), model).eval()
    x, refs = images(3), images(8, seed=1)
    kw = {"random_state": 0} if cls is BGMMPrior else {}
    p1 = cls(model, **kw)
    p10 = cls(model10, **kw)
    assert p1.scale == DEFAULT_SCALE
    s1 = p1(x, references=refs)
    s10 = p10(x * 10, references=refs * 10)
    assert s1.abs().max() > 0
    torch.testing.assert_close(s10, 10 * s1, rtol=1e-4, atol=1e-5)
    # the shift is at most scale standard deviations of the references
    assert s1.max() <= DEFAULT_SCALE * refs.std(unbiased=False) + 1e-6
    a1 = DeepPriorExpectedGradients(model, p1).attribute(
        x, baselines=refs, target=2, n_samples=8, generator=torch.Generator().manual_seed(0))
    a10 = DeepPriorExpectedGradients(model10, p10).attribute(
        x * 10, baselines=refs * 10, target=2, n_samples=8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a10, a1, rtol=1e-3, atol=1e-5)
    # an explicit data_std overrides the reference set's
    p = cls(model, data_std=2.0, **kw)
    torch.testing.assert_close(p(x, references=refs), p.prior_map(x) * DEFAULT_SCALE * 2.0)


class Block(nn.Module):
    """Residual block whose 1x1 shortcut convolution is registered last."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride)

    def forward(self, x):
        return self.relu(self.conv2(self.relu(self.conv1(x))) + self.shortcut(x))


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.blocks = nn.Sequential(Block(4, 8, 2), Block(8, 8, 1), Block(8, 16, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def test_layer_none_picks_the_final_block_output_on_a_resnet():
    torch.manual_seed(0)
    model = TinyResNet().eval()
    x = images(2)
    last_registered_conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    assert last_registered_conv is model.blocks[2].shortcut  # what the old rule picked
    prior = MGMPrior(model)
    assert "found on the first input" in repr(prior)
    feats, _ = prior.features(x)
    assert prior.layer_ is not last_registered_conv
    assert prior.layer_name_ == "blocks" and "layer='blocks'" in repr(prior)
    with torch.no_grad():
        final = model.blocks(model.stem(x))  # the final block's output
    torch.testing.assert_close(feats, final)
    assert feats.shape == (2, 16, 4, 4)
    # the pool's 1x1 output is not "spatial"; an explicit layer is kept
    assert MGMPrior(model, layer="blocks.1").layer_name_ == "blocks.1"
