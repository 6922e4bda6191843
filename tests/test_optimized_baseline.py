"""Tests of OptimizedBaseline (Akhtar & Jalwana, Algorithm 1) and of the
paper's Examples 1 and 2, with values computed analytically in the comments."""

import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from captum_prior._image import gaussian_blur
from captum_prior.attr import OptimizedBaseline
from captum_prior.attr.optimized_baseline import default_sigmas, enforce_delta
from captum_prior.models import FashionCNN


def example_f(x: torch.Tensor) -> torch.Tensor:
    """F of Example 1: x1 + 4 x2 + 1 on U1 = {x1, x2 <= 1},
    4 x1 + x2 + 2 on U2 = {x1, x2 > 1}, 0 otherwise (one output per row)."""
    x1, x2 = x[:, 0], x[:, 1]
    u1 = (x1 <= 1) & (x2 <= 1)
    u2 = (x1 > 1) & (x2 > 1)
    return torch.where(
        u1, x1 + 4 * x2 + 1, torch.where(u2, 4 * x1 + x2 + 2, torch.zeros_like(x1))
    )


XA = torch.tensor([[1.5, 1.5]])
XB = torch.tensor([[4.0, 4.0]])


def ig_exact(x: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    # riemann_middle with 300 steps puts no point on the region borders of the
    # straight paths used here (t = 2/3 for x^a, 1/4 for x^b), and F is linear
    # on each piece, so the sum is the exact integral.
    ig = IntegratedGradients(example_f)
    return ig.attribute(x, baseline, n_steps=300, method="riemann_middle")


# ---------------------------------------------------------------- Example 1
def test_example1_ig_from_zero_is_counter_intuitive():
    # x^a = [1.5, 1.5]: path t x^a is in U1 for t <= 2/3 (grad [1, 4]), in U2
    # after (grad [4, 1]): A = 1.5 (2/3 [1, 4] + 1/3 [4, 1]) = [3, 4.5].
    a = ig_exact(XA, torch.zeros_like(XA))
    assert torch.allclose(a, torch.tensor([[3.0, 4.5]]), atol=1e-4)
    assert a[0, 1] > a[0, 0]  # x2 gets more credit although its weight is 1 vs 4
    # x^b = [4, 4]: U1 for t <= 1/4: A = 4 (1/4 [1, 4] + 3/4 [4, 1]) = [13, 7].
    b = ig_exact(XB, torch.zeros_like(XB))
    assert torch.allclose(b, torch.tensor([[13.0, 7.0]]), atol=1e-4)
    ratio = (b[0, 0] / b[0, 1]).item()
    assert abs(ratio - 13 / 7) < 1e-4 and abs(ratio - 4) > 2
    # F jumps at the region border, so completeness fails from 0:
    # F(x^a) - F(0) = 9.5 - 1 = 8.5 but the attributions sum to 7.5.
    gap = example_f(XA) - example_f(torch.zeros_like(XA))
    assert abs(gap.item() - 8.5) < 1e-6 and abs(a.sum().item() - 7.5) < 1e-3


# ---------------------------------------------------------------- Example 2
def test_example2_baseline_in_same_region():
    base = torch.tensor([[3.0, 3.0]])
    a = ig_exact(XA, base)  # (1.5 - 3) [4, 1]
    b = ig_exact(XB, base)  # (4 - 3) [4, 1]
    assert torch.allclose(a, torch.tensor([[-6.0, -1.5]]), atol=1e-4)
    assert torch.allclose(b, torch.tensor([[4.0, 1.0]]), atol=1e-4)
    for v in (a, b):
        assert abs(abs(v[0, 0] / v[0, 1]).item() - 4) < 1e-4
        # completeness holds inside one linear region (Proposition 2)
    assert abs(a.sum() - (example_f(XA) - example_f(base))).item() < 1e-3
    assert abs(b.sum() - (example_f(XB) - example_f(base))).item() < 1e-3


@pytest.mark.parametrize("x", [XA, XB])
def test_optimized_baseline_ends_in_input_region(x):
    # start in U1 at [0.5, 0.5] (a "suitable" start: F has a non-zero gradient
    # there); sign steps on the logit distance move both coordinates up into U2.
    ob = OptimizedBaseline(
        example_f, sigmas=(1.0,), eta=0.05, eps=1.0, delta=0.1, max_iter=200, clip=None
    )
    base, diag = ob.compute(x, init=torch.tensor([[0.5, 0.5]]), return_diagnostics=True)
    base = base[0]
    assert bool(diag["converged"].all())
    assert bool((base > 1).all())  # U2, the input's region
    assert bool(((x - base).abs() >= 0.1 - 1e-6).all())
    assert abs(example_f(x) - example_f(base)).item() <= 1.0
    a = ig_exact(x, base)
    assert abs(abs(a[0, 0] / a[0, 1]).item() - 4) < 1e-3
    assert abs(a.sum() - (example_f(x) - example_f(base))).item() < 1e-3


def test_optimized_baseline_stuck_where_gradient_vanishes():
    # started in the flat "otherwise" region the gradient is 0: no step moves
    # it, eps is not reached and the diagnostics say so.
    ob = OptimizedBaseline(
        example_f, sigmas=(1.0,), eta=0.05, eps=1.0, delta=0.1, max_iter=5, clip=None
    )
    base, diag = ob.compute(
        XA, init=torch.tensor([[0.5, 2.0]]), return_diagnostics=True
    )
    assert not bool(diag["converged"].any())
    assert diag["distance"].item() > 1.0
    assert diag["iterations"].item() == 5
    assert torch.allclose(base[0], torch.tensor([[0.5, 2.0]]))


# ------------------------------------------------------------- image models
@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return FashionCNN(width=8).eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 1, 28, 28, generator=g)
    x[:, :, :6] = 0.0  # exact ties after the blur (tie-break) ...
    x[:, :, -6:] = 1.0  # ... and pixels at the clip bound (post-clip repair)
    x[:, :, 10, 10] = 0.98
    return x


def test_delta_constraint_and_diagnostics(cnn, images):
    delta = 0.1
    ob = OptimizedBaseline(
        cnn, sigmas=(1.0, 3.0), eta=0.02, eps=1e-3, delta=delta, max_iter=6
    )
    with torch.no_grad():  # enables grad itself (NoiseTunnel / metrics call it so)
        base, diag = ob.compute(images, return_diagnostics=True)
    assert base.shape == (2,) + images.shape
    assert bool(((base - images.unsqueeze(0)).abs() >= delta - 1e-6).all())
    assert base.min() >= 0 and base.max() <= 1
    for key in ("iterations", "distance", "initial_distance", "converged"):
        assert diag[key].shape == (2, 5)
    # eps reached exactly where the diagnostics say so
    assert torch.equal(diag["converged"], diag["distance"] <= 1e-3)
    assert bool((diag["iterations"][~diag["converged"]] == 6).all())
    with torch.no_grad():
        logits_x = cnn(images)
        for b in range(2):
            d = (cnn(base[b]) - logits_x).norm(dim=1)
            assert torch.allclose(d, diag["distance"][b], atol=1e-4)
    # the start (Algorithm 1 line 1, projected onto the delta / clip
    # constraints) is the blur of each width, and its logit distance is the
    # initial distance
    for b, s in enumerate((1.0, 3.0)):
        expected = enforce_delta(gaussian_blur(images, s), images, delta, (0.0, 1.0))
        assert torch.equal(diag["start"][b], expected)
        with torch.no_grad():
            d0 = (cnn(diag["start"][b]) - logits_x).norm(dim=1)
        assert torch.allclose(d0, diag["initial_distance"][b], atol=1e-4)
    # the optimisation lowers the logit distance
    assert bool((diag["distance"] <= diag["initial_distance"] + 1e-6).all())
    assert diag["distance"].mean() < diag["initial_distance"].mean()


def test_eps_reached_stops_early(cnn, images):
    with torch.no_grad():
        d0 = (cnn(images[:2]) - cnn(torch.full_like(images[:2], 0.5))).norm(dim=1)
    ob = OptimizedBaseline(cnn, sigmas=(2.0,), eps=float(d0.max()) * 100, max_iter=10)
    base, diag = ob.compute(images[:2], return_diagnostics=True)
    assert bool(diag["converged"].all()) and int(diag["iterations"].max()) == 0
    assert diag["n_calls"] == 2  # logits of x, then one pass that finds eps reached


def test_enforce_delta_tie_break_and_repair():
    x = torch.tensor([0.0, 1.0, 0.5, 0.3, 0.97, 0.4])
    xp = torch.tensor([0.0, 1.0, 0.5, 0.32, 0.99, 0.1])
    out = enforce_delta(xp, x, 0.1, (0.0, 1.0))
    # ties move to the side with more room; 0.5 (middle) goes up
    assert torch.allclose(out[:3], torch.tensor([0.1, 0.9, 0.6]))
    # paper line 6: a further delta away from the input
    assert torch.allclose(out[3], torch.tensor(0.42))
    # 0.99 + 0.1 clips to 1.0 (only 0.03 away): repaired to x - delta
    assert torch.allclose(out[4], torch.tensor(0.87))
    assert out[5] == 0.1  # already far enough: unchanged
    # clip range narrower than 2 delta around x: the farther bound
    out = enforce_delta(torch.tensor([0.5]), torch.tensor([0.5]), 0.6, (0.0, 1.0))
    assert torch.allclose(out, torch.tensor([1.0]))
    # unbounded: ties go up
    assert (
        enforce_delta(torch.tensor([2.0]), torch.tensor([2.0]), 0.5, None).item() == 2.5
    )


def test_batched_sigmas_and_chunks_match_separate_runs(cnn, images):
    kw = dict(eta=0.02, eps=1e-3, delta=0.05, max_iter=3)
    joint = OptimizedBaseline(cnn, sigmas=(1.0, 2.0), **kw).compute(images)
    chunked = OptimizedBaseline(
        cnn, sigmas=(1.0, 2.0), internal_batch_size=3, **kw
    ).compute(images)
    assert torch.allclose(joint, chunked, atol=1e-6)
    for b, s in enumerate((1.0, 2.0)):
        single = OptimizedBaseline(cnn, sigmas=(s,), **kw).compute(images)
        assert torch.allclose(joint[b], single[0], atol=1e-6)


def test_usable_as_captum_ig_baseline(cnn, images):
    ob = OptimizedBaseline(cnn, sigmas=(2.0,), eta=0.02, eps=1e-3, max_iter=3)
    base = ob.compute(images[:2])[0]
    attr, delta = IntegratedGradients(cnn).attribute(
        images[:2], base, target=3, n_steps=32, return_convergence_delta=True
    )
    assert attr.shape == images[:2].shape and bool(torch.isfinite(attr).all())
    with torch.no_grad():
        gap = cnn(images[:2])[:, 3] - cnn(base)[:, 3]
    assert torch.allclose(
        attr.flatten(1).sum(1), gap, atol=5e-2 * gap.abs().max() + 1e-3
    )
    assert delta.abs().max() < 5e-2 * gap.abs().max() + 1e-3


def test_cross_entropy_objective_raises_predicted_class_probability(cnn, images):
    ob = OptimizedBaseline(
        cnn, sigmas=(2.0,), eta=0.02, eps=1e-6, max_iter=5, variant="paper"
    )
    base = ob.compute(images)[0]
    with torch.no_grad():
        pred = cnn(images).argmax(1)
        start = enforce_delta(gaussian_blur(images, 2.0), images, ob.delta, ob.clip)
        p0 = cnn(start).log_softmax(1).gather(1, pred[:, None])
        p1 = cnn(base).log_softmax(1).gather(1, pred[:, None])
    assert bool((p1 >= p0 - 1e-6).all()) and bool((p1 > p0).any())


class TwoInput(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(2 * 16 + 4, 3)

    def forward(self, a, b, scale):
        return self.lin(torch.cat([a.flatten(1), b.flatten(1), scale], 1))


def test_tuple_inputs_and_per_example_args():
    model = TwoInput()
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 1, 4, 4, generator=g)
    b = torch.rand(3, 1, 4, 4, generator=g)
    scale = torch.rand(3, 4, generator=g)
    ob = OptimizedBaseline(
        model, sigmas=(1.0, 2.0), eta=0.05, eps=1e-4, max_iter=4, delta=0.05
    )
    (ba, bb), diag = ob.compute(
        (a, b), additional_forward_args=(scale,), return_diagnostics=True
    )
    assert ba.shape == (2, 3, 1, 4, 4) and bb.shape == (2, 3, 1, 4, 4)
    with torch.no_grad():
        d = (model(ba[1], bb[1], scale) - model(a, b, scale)).norm(dim=1)
    assert torch.allclose(d, diag["distance"][1], atol=1e-5)
    # each example got its own slice of the per-example argument
    one = OptimizedBaseline(
        model, sigmas=(1.0, 2.0), eta=0.05, eps=1e-4, max_iter=4, delta=0.05
    )
    (ba1, _) = one.compute((a[1:2], b[1:2]), additional_forward_args=(scale[1:2],))
    assert torch.allclose(ba1[:, 0], ba[:, 1], atol=1e-6)


def test_default_sigmas():
    assert len(default_sigmas(1)) == 1 and len(default_sigmas(5)) == 5
    assert default_sigmas(3) == OptimizedBaseline(lambda x: x).sigmas


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        (dict(sigmas=()), ValueError, "sigmas"),
        (dict(sigmas=(1.0, 0.0)), ValueError, "sigmas[1]"),
        (dict(sigmas=-2.0), ValueError, "sigmas[0]"),
        (dict(sigmas="big"), TypeError, "sigmas"),
        (dict(delta=1.5), ValueError, "delta"),
        (dict(delta=-0.1), ValueError, "delta"),
        (dict(eps=0.0), ValueError, "eps"),
        (dict(eps=-1.0), ValueError, "eps"),
        (dict(eta=0.0), ValueError, "eta"),
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(max_iter=2.5), TypeError, "max_iter"),
        (dict(clip=(1.0, 0.0)), ValueError, "clip"),
        (dict(variant="hinge"), ValueError, "variant"),
        (dict(internal_batch_size=0), ValueError, "internal_batch_size"),
    ],
)
def test_bad_constructor_arguments(cnn, kwargs, exc, word):
    with pytest.raises(exc, match=word.replace("[", r"\[").replace("]", r"\]")):
        OptimizedBaseline(cnn, **kwargs)


def test_bad_compute_arguments(cnn, images):
    ob = OptimizedBaseline(cnn, max_iter=1)
    bad = images[:2].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="inputs"):
        ob.compute(bad)
    with pytest.raises(TypeError, match="inputs"):
        ob.compute(images[:2].numpy())
    with pytest.raises(ValueError, match="init"):
        OptimizedBaseline(example_f, clip=None).compute(XA)  # no blur for 2-D inputs
    with pytest.raises(ValueError, match="init"):
        OptimizedBaseline(example_f, clip=None).compute(XA, init=torch.zeros(1, 3))
    with pytest.raises(ValueError, match="variant=.paper"):
        OptimizedBaseline(example_f, clip=None, variant="paper").compute(
            XA, init=torch.zeros(1, 2)
        )
    with pytest.raises(TypeError, match="forward_func"):
        OptimizedBaseline("model")
