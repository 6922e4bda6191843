"""Tests of captum_prior.metrics.insertion_deletion."""

import math

import pytest
import torch
from torch import nn

from captum_prior._image import gaussian_blur
from captum_prior.metrics import insertion_deletion
from captum_prior.models import FashionCNN


class Linear(nn.Module):
    """f(x) = x @ W + b: the contribution of feature j to class c is x_j W_jc."""

    def __init__(self, n_features=16, n_classes=3, seed=0):
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
        self.rows = []

    def forward(self, *args):
        self.calls += 1
        self.rows.append(args[0].shape[0])
        return self.model(*args)


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return FashionCNN(width=4).eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 1, 28, 28, generator=g)


def test_true_ranking_beats_random_on_linear_model():
    model = Linear()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8, 16, generator=g)
    y = model(x).argmax(1)
    true_attr = x * model.w.detach()[:, y].T
    # target logit with zero substrates: ranking by contribution gives the
    # pointwise highest insertion and lowest deletion curve of all orders
    best = insertion_deletion(model, x, true_attr, target=y, score="logit", n_steps=16)
    for seed in range(5):
        rnd = torch.randn(x.shape, generator=torch.Generator().manual_seed(10 + seed))
        other = insertion_deletion(model, x, rnd, target=y, score="logit", n_steps=16)
        assert (best.insertion >= other.insertion - 1e-5).all()
        assert (best.deletion <= other.deletion + 1e-5).all()
        assert best.insertion.mean() > other.insertion.mean()
        assert best.deletion.mean() < other.deletion.mean()
    # with the default softmax probability, on average too
    p_best = insertion_deletion(model, x, true_attr, target=y)
    p_rnd = insertion_deletion(model, x, torch.randn(x.shape, generator=g), target=y)
    assert p_best.difference.mean() > p_rnd.difference.mean()


def test_probability_aucs_in_unit_interval_and_difference(cnn, images):
    attr = torch.randn(images.shape, generator=torch.Generator().manual_seed(3))
    res = insertion_deletion(cnn, images, attr, target=[0, 1, 2, 3], return_curves=True)
    for auc in (res.insertion, res.deletion):
        assert auc.shape == (4,)
        assert ((auc >= 0) & (auc <= 1)).all()
    torch.testing.assert_close(res.difference, res.insertion - res.deletion)
    # RISE default: W = 28 pixels per step -> 28 steps, 29 points
    assert res.insertion_curve.shape == (4, 29)
    assert res.fractions[0] == 0 and res.fractions[-1] == 1


def test_curve_endpoints_and_rise_auc_formula(cnn, images):
    attr = torch.randn(images.shape, generator=torch.Generator().manual_seed(4))
    y = cnn(images).argmax(1)
    res = insertion_deletion(cnn, images, attr, target=y, return_curves=True)
    with torch.no_grad():
        p = torch.softmax(cnn(images), 1).gather(1, y[:, None]).squeeze(1)
        p_blur = torch.softmax(cnn(gaussian_blur(images, 5.0, 11)), 1)
        p_zero = torch.softmax(cnn(torch.zeros_like(images)), 1)
    p_blur = p_blur.gather(1, y[:, None]).squeeze(1)
    p_zero = p_zero.gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(res.deletion_curve[:, 0], p, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(res.deletion_curve[:, -1], p_zero, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(res.insertion_curve[:, 0], p_blur, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(res.insertion_curve[:, -1], p, atol=1e-5, rtol=1e-4)
    # RISE's auc(): (sum(s) - s0/2 - s_end/2) / n_steps on its uniform grid
    c = res.deletion_curve
    n = c.shape[1] - 1
    rise = (c.sum(1) - c[:, 0] / 2 - c[:, -1] / 2) / n
    torch.testing.assert_close(res.deletion, rise, atol=1e-6, rtol=1e-5)


def reference_loop(model, x, attr, y, step, substrate, insertion):
    """One forward per step per image, as RISE's CausalMetric.single_run."""
    n, c, h, w = x.shape
    sal = attr.sum(1).reshape(n, -1)
    out = []
    for i in range(n):
        order = torch.argsort(sal[i], descending=True, stable=True)
        n_steps = math.ceil(h * w / step)
        start = substrate[i].clone() if insertion else x[i].clone()
        finish = x[i] if insertion else substrate[i]
        cur = start.reshape(c, -1)
        scores = []
        for k in range(n_steps + 1):
            with torch.no_grad():
                p = torch.softmax(model(cur.reshape(1, c, h, w)), 1)[0, y[i]]
            scores.append(float(p))
            if k < n_steps:
                idx = order[k * step : (k + 1) * step]
                cur[:, idx] = finish.reshape(c, -1)[:, idx]
        s = torch.tensor(scores, dtype=torch.float64)
        out.append(float((s.sum() - s[0] / 2 - s[-1] / 2) / n_steps))
    return torch.tensor(out)


def test_matches_per_step_reference_loop(cnn, images):
    attr = torch.randn(images.shape, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([3, 1, 4, 1])
    res = insertion_deletion(cnn, images, attr, target=y, pixels_per_step=56)
    blur = gaussian_blur(images, 5.0, 11)
    ins = reference_loop(cnn, images, attr, y, 56, blur, insertion=True)
    dele = reference_loop(cnn, images, attr, y, 56, torch.zeros_like(images), insertion=False)
    torch.testing.assert_close(res.insertion.double(), ins.double(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(res.deletion.double(), dele.double(), atol=1e-5, rtol=1e-4)


def test_independent_of_batch_composition_and_chunking(cnn, images):
    attr = torch.randn(images.shape, generator=torch.Generator().manual_seed(6))
    y = torch.tensor([0, 5, 7, 9])
    kw = dict(n_steps=7)
    full = insertion_deletion(cnn, images, attr, target=y, **kw)
    for chunk in (1, 13, 64):
        part = insertion_deletion(cnn, images, attr, target=y, max_examples_per_batch=chunk, **kw)
        torch.testing.assert_close(part.insertion, full.insertion, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(part.deletion, full.deletion, atol=1e-5, rtol=1e-4)
    sub = insertion_deletion(cnn, images[2:3], attr[2:3], target=y[2:3], **kw)
    torch.testing.assert_close(sub.difference, full.difference[2:3], atol=1e-5, rtol=1e-4)
    rev = insertion_deletion(cnn, images.flip(0), attr.flip(0), target=y.flip(0), **kw)
    torch.testing.assert_close(rev.difference.flip(0), full.difference, atol=1e-5, rtol=1e-4)


def test_forward_calls_are_as_few_as_the_batch_size_allows(cnn, images):
    attr = torch.randn(images.shape, generator=torch.Generator().manual_seed(7))
    for mode, rows_per_example in (("both", 2 * 14 + 1), ("insertion", 15), ("deletion", 15)):
        for chunk in (10, 29, 1000):
            model = Counting(cnn)
            insertion_deletion(
                model, images, attr, target=0, n_steps=14, mode=mode, max_examples_per_batch=chunk
            )
            rows = 4 * rows_per_example
            assert model.calls == math.ceil(rows / chunk)
            assert sum(model.rows) == rows
            assert max(model.rows) == min(chunk, rows)


def test_tuple_inputs_and_additional_forward_args():
    model = Linear(n_features=10)
    g = torch.Generator().manual_seed(8)
    x = torch.randn(5, 10, generator=g)
    a = torch.randn(5, 10, generator=g)
    scale = torch.rand(5, generator=g) + 0.5

    def two_inputs(x1, x2, s):
        return model(torch.cat([x1, x2], 1)) * s[:, None]

    single = insertion_deletion(
        lambda z, s: model(z) * s[:, None], x, a, target=1,
        additional_forward_args=(scale,), n_steps=10, max_examples_per_batch=7,
    )
    pair = insertion_deletion(
        two_inputs, (x[:, :4], x[:, 4:]), (a[:, :4], a[:, 4:]), target=1,
        additional_forward_args=(scale,), n_steps=10, max_examples_per_batch=7,
    )
    torch.testing.assert_close(single.insertion, pair.insertion)
    torch.testing.assert_close(single.deletion, pair.deletion)


def test_options_scores_substrates_and_shared_channel_map(cnn, images):
    attr = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(9))
    a = insertion_deletion(cnn, images, attr, score="max_logit", n_steps=7,
                           insertion_substrate="mean", deletion_substrate=0.5)
    b = insertion_deletion(cnn, images, attr, score="max_logit", n_steps=7,
                           insertion_substrate=lambda x: x.mean((2, 3), keepdim=True).expand_as(x),
                           deletion_substrate=torch.full((1, 28, 28), 0.5))
    torch.testing.assert_close(a.insertion, b.insertion)
    torch.testing.assert_close(a.deletion, b.deletion)
    logit = insertion_deletion(cnn, images, attr, target=2, score="logit", mode="deletion", n_steps=7)
    assert logit.insertion is None and logit.difference is None
    assert logit.deletion.shape == (4,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(attributions=torch.zeros(4, 1, 27, 28)), "attributions"),
        (dict(attributions=torch.full((4, 1, 28, 28), float("nan"))), "attributions"),
        (dict(n_steps=0), "n_steps"),
        (dict(pixels_per_step=0), "pixels_per_step"),
        (dict(insertion_substrate="noise"), "insertion_substrate"),
        (dict(deletion_substrate="black"), "deletion_substrate"),
        (dict(score="prob"), "score"),
        (dict(mode="all"), "mode"),
        (dict(max_examples_per_batch=0), "max_examples_per_batch"),
        (dict(target=12), "target"),
        (dict(target=None), "target"),
        (dict(n_steps=5, pixels_per_step=3), "n_steps"),
    ],
)
def test_bad_input_raises_naming_the_argument(cnn, images, kwargs, match):
    args = dict(attributions=torch.ones(4, 1, 28, 28), target=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        insertion_deletion(cnn, images, **args)


def test_blur_substrate_needs_images():
    model = Linear()
    with pytest.raises(ValueError, match="insertion_substrate"):
        insertion_deletion(model, torch.rand(2, 16), torch.rand(2, 16), target=0,
                           insertion_substrate="blur")


def test_diff_id_matches_hand_computation_and_counts_calls(cnn, images):
    from captum_prior.metrics import diff_id

    attr = torch.randn(images.shape, generator=torch.Generator().manual_seed(11))
    y = torch.tensor([1, 2, 3, 4])
    counting = Counting(cnn)
    res = diff_id(counting, images, attr, target=y, ratios=(0.25, 0.5), return_curves=True,
                  max_examples_per_batch=7)
    rows = 4 * (1 + 2 * 2)
    assert counting.calls == math.ceil(rows / 7)
    # by hand for image 0, ratio 0.5
    i, r = 0, 0.5
    x = images[i]
    order = torch.argsort(attr[i].abs().sum(0).reshape(-1), descending=True, stable=True)
    top = torch.zeros(784, dtype=torch.bool)
    top[order[: int(r * 784)]] = True
    top = top.view(1, 28, 28)

    def filled(keep):
        fill = x[keep].mean()
        return torch.where(keep, x, fill)

    with torch.no_grad():
        base = cnn(x[None])[0, 1]
        ins = cnn(filled(top)[None])[0, 1] / base
        dele = cnn(filled(~top)[None])[0, 1] / base
    assert res.insertion_curve[0, 1].item() == pytest.approx(ins.item(), rel=1e-4, abs=1e-5)
    assert res.deletion_curve[0, 1].item() == pytest.approx(dele.item(), rel=1e-4, abs=1e-5)
    torch.testing.assert_close(res.difference, (res.insertion_curve - res.deletion_curve).mean(1))
    with pytest.raises(ValueError, match="ratios"):
        diff_id(cnn, images, attr, target=y, ratios=(0.5, 1.0))
