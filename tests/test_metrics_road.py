"""Tests of captum_prior.metrics.road (ROAD, Rong et al. 2022) and its imputer."""

import numpy as np
import pytest
import torch
from torch import nn

from captum_prior.metrics import _masking as masking
from captum_prior.metrics import road
from captum_prior.metrics._masking import noisy_linear_imputation
from captum_prior.metrics.road import PAPER_FRACTIONS
from captum_prior.models import FashionCNN

# ------------------------------------------------------------------ imputer


def dense_reference(x: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The paper's linear imputation written out pixel by pixel (dense solve)."""
    c, h, w = x.shape
    idx = {p: k for k, p in enumerate(zip(*np.nonzero(removed), strict=True))}
    a = np.zeros((len(idx), len(idx)))
    b = np.zeros((len(idx), c))
    for (i, j), k in idx.items():
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if (di, dj) == (0, 0) or not (0 <= i + di < h and 0 <= j + dj < w):
                    continue
                wt = 1 / 12 if di and dj else 1 / 6
                a[k, k] += wt
                q = (i + di, j + dj)
                if q in idx:
                    a[k, idx[q]] -= wt
                else:
                    b[k] += wt * x[:, q[0], q[1]]
    sol = np.linalg.solve(a, b)
    out = x.copy()
    for (i, j), k in idx.items():
        out[:, i, j] = sol[k]
    return out


@pytest.mark.parametrize("shape", [(2, 9, 7), (3, 5, 80)], ids=["banded", "sparse-lu"])
def test_imputation_solves_the_papers_equations(shape):
    c, h, w = shape
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, c, h, w, generator=g, dtype=torch.float64)
    removed = torch.rand(4, h, w, generator=g) < torch.tensor([0.05, 0.3, 0.7, 0.95]).view(4, 1, 1)
    removed[:, 0, 0] = False  # at least one kept pixel per image
    out = noisy_linear_imputation(x, removed, noise=0.0)
    for r in range(4):
        ref = dense_reference(x[r].numpy(), removed[r].numpy())
        np.testing.assert_allclose(out[r].numpy(), ref, rtol=0, atol=1e-10)
    keep = ~removed.unsqueeze(1).expand_as(x)
    assert torch.equal(out[keep], x[keep])
    # every imputed pixel is the weighted mean of its (imputed or kept) neighbours
    pad = torch.nn.functional.pad(out, (1, 1, 1, 1))
    ones = torch.nn.functional.pad(torch.ones_like(out), (1, 1, 1, 1))
    k = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]], dtype=torch.float64)
    kk = k.view(1, 1, 3, 3).repeat(c, 1, 1, 1)
    num = torch.nn.functional.conv2d(pad, kk, groups=c)
    den = torch.nn.functional.conv2d(ones, kk, groups=c)
    mean = num / den
    m = removed.unsqueeze(1).expand_as(x)
    torch.testing.assert_close(out[m], mean[m], rtol=0, atol=1e-10)


def test_imputation_noise_has_the_requested_std_and_only_touches_removed_pixels():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 2, 20, 20, generator=g)
    removed = torch.rand(6, 20, 20, generator=g) < 0.5
    clean = noisy_linear_imputation(x, removed, noise=0.0)
    noisy = noisy_linear_imputation(x, removed, noise=0.05, generators=[torch.Generator().manual_seed(i) for i in range(6)])
    d = (noisy - clean)[removed.unsqueeze(1).expand_as(x)]
    assert abs(float(d.std()) - 0.05) < 0.005 and abs(float(d.mean())) < 0.005
    keep = ~removed.unsqueeze(1).expand_as(x)
    assert torch.equal(noisy[keep], x[keep])
    assert noisy.dtype == x.dtype


def test_batches_of_systems_give_the_one_image_solution(monkeypatch):
    """Rows solved together (block-diagonal batches of any size) give the
    same result as each row alone."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(7, 1, 12, 12, generator=g, dtype=torch.float64)
    removed = torch.rand(7, 12, 12, generator=g) < 0.6
    together = noisy_linear_imputation(x, removed, noise=0.0)
    monkeypatch.setattr(masking, "MAX_UNKNOWNS_PER_SOLVE", 1)
    alone = noisy_linear_imputation(x, removed, noise=0.0)
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)


def test_imputation_rejects_an_image_with_nothing_left():
    with pytest.raises(ValueError, match="kept pixel"):
        noisy_linear_imputation(torch.rand(1, 1, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool))


# ------------------------------------------------------------------ the metric


class SquareModel(nn.Module):
    """Two classes; class 1's evidence is the mean brightness of one square."""

    def __init__(self, square: slice, gain: float = 12.0) -> None:
        super().__init__()
        self.square = square
        self.gain = gain

    def forward(self, x):
        s = x[:, 0, self.square, self.square].mean((1, 2))
        logit = self.gain * (s - 0.5)
        return torch.stack([torch.zeros_like(logit), logit], dim=1)


def square_images(n=8, size=16, sq=slice(4, 10)):
    g = torch.Generator().manual_seed(3)
    x = 0.2 * torch.rand(n, 1, size, size, generator=g)  # dim textured background
    x[:, :, sq, sq] = 0.9 + 0.1 * torch.rand(n, 1, 6, 6, generator=g)
    marks = torch.zeros_like(x)
    marks[:, :, sq, sq] = 1.0
    marks = marks + 1e-3 * torch.rand(x.shape, generator=g)
    return x, marks


def test_analytic_square_morf_fastest_lerf_slowest_random_between():
    sq = slice(4, 10)
    x, marks = square_images(sq=sq)
    model = SquareModel(sq).eval()
    y = torch.ones(len(x), dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    good = road(model, x, marks, target=y, generator=gen)
    rnd = torch.rand(x.shape, generator=torch.Generator().manual_seed(4))
    rand = road(model, x, rnd, target=y, generator=torch.Generator().manual_seed(0))
    assert good.fractions.tolist() == pytest.approx(list(PAPER_FRACTIONS))
    # probabilities averaged over examples at each fraction
    m_good, l_good = good.morf_probability.mean(0), good.lerf_probability.mean(0)
    m_rand, l_rand = rand.morf_probability.mean(0), rand.lerf_probability.mean(0)
    # the square is 36 of 256 pixels (14 %): MoRF of its map removes it by 0.2
    assert float(m_good[1]) < 0.05 and float(good.morf_accuracy[:, 1:].max()) == 0.0
    # LeRF of its map keeps it until the square itself is reached (> 86 %)
    assert float(l_good[:-1].min()) > 0.95 and float(good.lerf_accuracy[:, :-1].min()) == 1.0
    # per-example means over the fractions: MoRF(map) < random < LeRF(map)
    assert bool((good.morf < rand.morf).all()) and bool((good.morf < rand.lerf).all())
    assert bool((rand.morf < good.lerf).all()) and bool((rand.lerf < good.lerf).all())
    # and the curve ordering holds at every fraction up to the last
    assert bool((m_good <= m_rand + 1e-6).all()) and bool((l_good[:-1] >= l_rand[:-1]).all())


def test_seeded_noise_is_reproducible_and_chunking_invariant():
    torch.manual_seed(0)
    model = FashionCNN(width=4).eval()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    a = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    kw = dict(target=[1, 2, 3], fractions=(0.2, 0.6))
    r1 = road(model, x, a, generator=torch.Generator().manual_seed(7), **kw)
    r2 = road(model, x, a, generator=torch.Generator().manual_seed(7), max_examples_per_batch=1, **kw)
    r3 = road(model, x, a, generator=torch.Generator().manual_seed(8), **kw)
    for f in ("morf_probability", "lerf_probability", "morf_accuracy", "lerf_accuracy"):
        # equal noise; only the model's batch-size-dependent rounding differs
        torch.testing.assert_close(getattr(r1, f), getattr(r2, f), rtol=1e-5, atol=1e-6)
    assert not torch.equal(r1.morf_probability, r3.morf_probability)
    # one generator per example: example j's result is that of a one-example call
    gens = [torch.Generator().manual_seed(10 + j) for j in range(3)]
    batch = road(model, x, a, generator=gens, **kw)
    one = road(model, x[1:2], a[1:2], target=[2], fractions=(0.2, 0.6),
               generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(batch.morf_probability[1:2], one.morf_probability)
    torch.testing.assert_close(batch.lerf_probability[1:2], one.lerf_probability)


def test_without_noise_rows_are_the_linear_imputation_and_counts_match():
    """The images the model sees are exactly the imputed ones, with the
    paper's pixel counts floor(p * H * W), MoRF from the top, LeRF from the
    bottom of the ranking."""
    seen = []

    class Recorder(nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return torch.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], 1)

    x = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    a = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    fr = (0.29, 0.5)
    res = road(Recorder(), x, a, target=0, fractions=fr, noise=0.0)
    rows = torch.cat(seen).view(2, 4, 3, 10, 10)
    score = a.sum(1).flatten(1)
    order = torch.argsort(score, dim=1, descending=True, stable=True)
    for e in range(2):
        for oi, lerf in enumerate((False, True)):
            for k, count in enumerate((29, 50)):
                rem = torch.zeros(100, dtype=torch.bool)
                rem[order[e, -count:] if lerf else order[e, :count]] = True
                expect = noisy_linear_imputation(x[e : e + 1], rem.view(1, 10, 10), noise=0.0)[0]
                torch.testing.assert_close(rows[e, oi * 2 + k], expect, rtol=0, atol=1e-12)
    assert res.morf_accuracy.shape == (2, 2) and res.target.tolist() == [0, 0]


def test_target_none_tracks_the_prediction_and_outputs_are_consistent():
    torch.manual_seed(0)
    model = FashionCNN(width=4).eval()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    a = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    pred = model(x).argmax(1)
    r_none = road(model, x, a, noise=0.0, fractions=(0.3,))
    r_pred = road(model, x, a, target=pred, noise=0.0, fractions=(0.3,))
    assert torch.equal(r_none.target, pred)
    assert torch.equal(r_none.morf_probability, r_pred.morf_probability)
    only = road(model, x, a, target=pred, noise=0.0, fractions=(0.3,), order="lerf")
    assert only.morf is None and only.morf_accuracy is None
    torch.testing.assert_close(only.lerf_probability, r_pred.lerf_probability)
    assert ((r_pred.morf_accuracy == 0) | (r_pred.morf_accuracy == 1)).all()
    torch.testing.assert_close(r_pred.morf, r_pred.morf_probability.mean(1))


def test_rows_per_example_and_forward_calls():
    calls = []

    class Counting(nn.Module):
        def forward(self, x):
            calls.append(x.shape[0])
            return torch.stack([x.mean((1, 2, 3)), x.std((1, 2, 3))], 1)

    x = torch.rand(5, 1, 8, 8)
    road(Counting(), x, torch.rand(5, 1, 8, 8), target=1, max_examples_per_batch=16)
    assert sum(calls) == 5 * 2 * len(PAPER_FRACTIONS) and max(calls) <= 16
    calls.clear()
    road(Counting(), x, torch.rand(5, 1, 8, 8), max_examples_per_batch=16)
    assert sum(calls) == 5 * (1 + 2 * len(PAPER_FRACTIONS))


def test_tuple_inputs_rank_pixels_jointly():
    model_calls = []

    def f(a, b):
        model_calls.append((a.clone(), b.clone()))
        s = a.mean((1, 2, 3)) + b.mean((1, 2, 3))
        return torch.stack([s, -s], 1)

    a = torch.rand(2, 1, 6, 6)
    b = torch.rand(2, 2, 4, 4)
    # every pixel of b outranks every pixel of a: MoRF at 0.5 removes all of b
    attr = (torch.zeros(2, 1, 6, 6), torch.ones(2, 2, 4, 4))
    res = road(f, (a, b), attr, target=0, fractions=(0.4, 0.5), noise=0.0, order="morf")
    assert res.morf_probability.shape == (2, 2)
    ra, rb = (torch.cat(t) for t in zip(*model_calls, strict=True))
    # 0.5 * 52 = 26 >= 16 pixels of b: b has nothing left and becomes zero
    assert torch.equal(rb.view(2, 2, 2, 4, 4)[:, 1], torch.zeros(2, 2, 4, 4))
    assert not torch.equal(ra.view(2, 2, 1, 6, 6)[:, 1], a)


@pytest.mark.parametrize(
    "kw, error, match",
    [
        (dict(order="both"), ValueError, "order"),
        (dict(order=()), ValueError, "order"),
        (dict(fractions=(0.0, 0.5)), ValueError, "fractions"),
        (dict(fractions=(1.0,)), ValueError, "fractions"),
        (dict(fractions=()), ValueError, "fractions"),
        (dict(noise=-0.1), ValueError, "noise"),
        (dict(noise="0.01"), TypeError, "noise"),
        (dict(target=(1, 0)), ValueError, "target"),
        (dict(target=1.5), TypeError, "target"),
        (dict(generator=3), TypeError, "generator"),
        (dict(max_examples_per_batch=0), ValueError, "max_examples_per_batch"),
    ],
)
def test_options_are_validated(kw, error, match):
    torch.manual_seed(0)
    model = FashionCNN(width=4).eval()
    x = torch.rand(2, 1, 28, 28)
    kw.setdefault("target", 1)
    with pytest.raises(error, match=match):
        road(model, x, torch.rand(2, 1, 28, 28), **kw)


def test_inputs_must_be_images_and_model_must_return_classes():
    with pytest.raises(ValueError, match="N x C x H x W image inputs.*shape"):
        road(lambda t: t, torch.rand(3, 10), torch.rand(3, 10), target=0)
    with pytest.raises(ValueError, match="attributions"):
        road(lambda t: t, torch.rand(3, 1, 5, 5), torch.rand(3, 1, 4, 4), target=0)
    with pytest.raises(ValueError, match="N x C class scores"):
        road(lambda t: t.mean((1, 2, 3)), torch.rand(3, 1, 5, 5), torch.rand(3, 1, 5, 5), target=0)
