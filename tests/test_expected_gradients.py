"""ExpectedGradients and DeepPriorExpectedGradients (issue 2)."""

import numpy as np
import pytest
import torch
from captum.attr import GradientShap, NoiseTunnel
from captum.metrics import infidelity, sensitivity_max
from captum.testing.helpers.basic_models import (
    BasicModel_MultiLayer,
    BasicModel_MultiLayer_MultiInput,
)

from captum_prior.attr import DeepPriorExpectedGradients, ExpectedGradients


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def conv_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)
    ).eval()


class Elementwise(torch.nn.Module):
    """A model whose per-row arithmetic does not depend on the batch size."""

    def forward(self, x):
        h = torch.tanh(x * 1.5 - 0.2) * x
        return torch.stack([h.flatten(1).sum(1), (h**2).flatten(1).sum(1)], dim=1)


def reference_loop(model, x, refs, target, n, seed, prior=None, variant="paper"):
    """Plain per-draw loop of the EG estimator with the same draws."""
    g = gen(seed)
    bsz = x.shape[0]
    idx = torch.randint(refs.shape[0], (bsz * n,), generator=g)
    alpha = torch.rand(bsz * n, generator=g)
    out = torch.zeros_like(x)
    for r in range(bsz * n):
        e = r // n
        xp = refs[idx[r]]
        p = torch.zeros_like(x[e]) if prior is None else prior[e]
        if variant == "paper":
            start = xp - p
            point = start + alpha[r] * (x[e] - start)
            mult = x[e] - start
        else:
            point = xp + alpha[r] * (x[e] - xp) - p
            mult = x[e] - xp
        point = point.unsqueeze(0).requires_grad_()
        (grad,) = torch.autograd.grad(model(point)[0, target], point)
        out[e] += grad[0] * mult
    return out / n


def test_equals_plain_reference_loop():
    model = conv_net()
    x, refs = torch.randn(3, 1, 8, 8), torch.randn(10, 1, 8, 8)
    a = ExpectedGradients(model).attribute(x, refs, target=2, n_samples=7, generator=gen(5))
    b = reference_loop(model, x, refs, 2, 7, 5)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("variant", ["paper", "reference_code"])
def test_deep_prior_equals_plain_reference_loop(variant):
    model = conv_net()
    x, refs = torch.randn(3, 1, 8, 8), torch.randn(10, 1, 8, 8)
    p = torch.rand(3, 1, 8, 8)
    a = DeepPriorExpectedGradients(model, p, variant=variant).attribute(
        x, refs, target=0, n_samples=6, generator=gen(2)
    )
    b = reference_loop(model, x, refs, 0, 6, 2, prior=p, variant=variant)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_chunked_equals_unchunked_exactly_on_batch_invariant_model():
    model = Elementwise()
    x, refs = torch.randn(4, 3, 5), torch.randn(9, 3, 5)
    eg = ExpectedGradients(model)
    full, d_full = eg.attribute(x, refs, target=1, n_samples=25, generator=gen(1),
                                return_convergence_delta=True)
    for chunk in (1, 7, 33):
        part, d_part = eg.attribute(x, refs, target=1, n_samples=25, internal_batch_size=chunk,
                                    generator=gen(1), return_convergence_delta=True)
        assert torch.equal(full, part)
        assert torch.equal(d_full, d_part)


def test_chunked_equals_unchunked_on_conv_model():
    # Conv/GEMM kernels may block differently for different batch sizes, so
    # bitwise equality is not guaranteed there; the draws are identical.
    model = conv_net()
    x, refs = torch.randn(4, 1, 8, 8), torch.randn(9, 1, 8, 8)
    eg = ExpectedGradients(model)
    full = eg.attribute(x, refs, target=1, n_samples=20, generator=gen(1))
    part = eg.attribute(x, refs, target=1, n_samples=20, internal_batch_size=6, generator=gen(1))
    torch.testing.assert_close(full, part, atol=1e-6, rtol=1e-5)


def test_converges_to_gradient_shap():
    model = conv_net()
    torch.manual_seed(3)
    x, refs = torch.randn(3, 1, 8, 8), torch.randn(30, 1, 8, 8)
    a = ExpectedGradients(model).attribute(
        x, refs, target=2, n_samples=3000, internal_batch_size=3000, generator=gen(0)
    )
    np.random.seed(0)
    b = GradientShap(model).attribute(x, refs, target=2, n_samples=3000, stdevs=0.0)
    corr = np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]
    assert corr >= 0.99


@pytest.mark.parametrize("which", ["captum_multilayer", "conv", "cnn"])
def test_completeness_and_shrinking_delta(which):
    # inputs spread so that paths cross ReLU kinks (on one linear region the
    # delta is exactly 0 for any n_samples, which would test nothing)
    torch.manual_seed(0)
    if which == "captum_multilayer":
        model, x, refs = BasicModel_MultiLayer(), torch.randn(4, 3) * 3, torch.randn(20, 3) * 3
    elif which == "conv":
        model, x, refs = conv_net(), torch.randn(4, 1, 8, 8), torch.randn(20, 1, 8, 8)
    else:
        from captum_prior.models import load_fashion_cnn

        model, x, refs = load_fashion_cnn(), torch.rand(2, 1, 28, 28), torch.rand(20, 1, 28, 28)
    model.eval()
    eg = ExpectedGradients(model)
    deltas = {}
    n_large = 2000
    for n in (8, n_large):
        _, d = eg.attribute(x, refs, target=1, n_samples=n, internal_batch_size=4000,
                            generator=gen(n), return_convergence_delta=True,
                            delta_per_example=True)
        deltas[n] = d.abs().mean().item()
    with torch.no_grad():
        gap = (model(x)[:, 1] - model(refs)[:, 1].mean()).abs().mean().item()
    assert gap > 1e-3
    assert deltas[n_large] < 0.1 * gap
    assert deltas[n_large] < deltas[8]


def test_delta_matches_definition():
    model = conv_net()
    x, refs = torch.randn(2, 1, 8, 8), torch.randn(6, 1, 8, 8)
    p = torch.rand(1, 1, 8, 8) * 0.5
    a, d = DeepPriorExpectedGradients(model, p).attribute(
        x, refs, target=1, n_samples=5, generator=gen(4), return_convergence_delta=True,
        delta_per_example=True,
    )
    g = gen(4)
    idx = torch.randint(6, (10,), generator=g)
    with torch.no_grad():
        f_x = model(x)[:, 1]
        f_ref = model(refs[idx] - p)[:, 1].view(2, 5).mean(1)
    torch.testing.assert_close(d, a.flatten(1).sum(1) - (f_x - f_ref), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["paper", "reference_code"])
def test_zero_prior_equals_expected_gradients_exactly(variant):
    model = conv_net()
    x, refs = torch.randn(3, 1, 8, 8), torch.randn(10, 1, 8, 8)
    a = ExpectedGradients(model).attribute(x, refs, target=[0, 1, 2], n_samples=9, generator=gen(7))
    zero_prior = lambda inputs, target=None: torch.zeros_like(inputs)  # noqa: E731
    b = DeepPriorExpectedGradients(model, zero_prior, variant=variant).attribute(
        x, refs, target=[0, 1, 2], n_samples=9, generator=gen(7)
    )
    assert torch.equal(a, b)


def test_tuple_inputs_targets_and_additional_args():
    model = BasicModel_MultiLayer_MultiInput().eval()
    torch.manual_seed(0)
    x = (torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3))
    refs = (torch.randn(6, 3), torch.randn(6, 3), torch.randn(6, 3))
    eg = ExpectedGradients(model)
    for target in (1, torch.tensor([0, 1, 1, 0]), [1, 1, 0, 1], torch.tensor(0)):
        attr, delta = eg.attribute(x, refs, target=target, additional_forward_args=(2,),
                                   n_samples=500, generator=gen(0), return_convergence_delta=True)
        assert isinstance(attr, tuple) and len(attr) == 3
        assert all(a.shape == xi.shape for a, xi in zip(attr, x))
        assert delta.shape == (4 * 500,)  # GradientShap's shape: one per draw
    # references are drawn jointly: one reference row for all three tensors
    same = tuple(r[:1].expand(6, 3) for r in refs)
    a1 = eg.attribute(x, same, target=0, additional_forward_args=(2,), n_samples=3, generator=gen(1))
    a2 = eg.attribute(x, tuple(r[:1] for r in refs), target=0, additional_forward_args=(2,),
                      n_samples=3, generator=gen(1))
    for u, v in zip(a1, a2):
        torch.testing.assert_close(u, v)


def test_per_example_additional_forward_args_follow_rows():
    model = BasicModel_MultiLayer().eval()
    x = torch.randn(3, 3)
    add = torch.randn(3, 3)
    eg = ExpectedGradients(model)
    a = eg.attribute(x, torch.zeros(1, 3), target=0, additional_forward_args=add,
                     n_samples=4, generator=gen(0))
    b = torch.cat([
        eg.attribute(x[i : i + 1], torch.zeros(1, 3), target=0,
                     additional_forward_args=add[i : i + 1], n_samples=4,
                     generator=gen(0)) for i in range(3)
    ])
    # each example's rows got its own slice (same draws only for example 0)
    torch.testing.assert_close(a[:1], b[:1])


def test_captum_metrics_and_noise_tunnel():
    model = conv_net()
    torch.manual_seed(0)
    x, refs = torch.randn(3, 1, 8, 8), torch.randn(8, 1, 8, 8)
    eg = ExpectedGradients(model)
    attr = eg.attribute(x, refs, target=1, n_samples=10, generator=gen(0))

    def perturb(inputs):
        noise = torch.randn_like(inputs) * 0.01
        return noise, inputs - noise

    inf = infidelity(model, perturb, x, attr, target=1)
    assert inf.shape == (3,) and torch.isfinite(inf).all()
    sens = sensitivity_max(eg.attribute, x, baselines=refs, target=1, n_samples=5)
    assert sens.shape == (3,) and torch.isfinite(sens).all()
    dp = DeepPriorExpectedGradients(model, torch.full((1, 1, 8, 8), 0.1))
    sens = sensitivity_max(dp.attribute, x, baselines=refs, target=1, n_samples=5)
    assert torch.isfinite(sens).all()
    # NoiseTunnel needs attribute.__wrapped__ (log_usage) and per-example baselines
    assert hasattr(ExpectedGradients.attribute, "__wrapped__")
    nt = NoiseTunnel(eg).attribute(x, nt_samples=3, stdevs=0.1, baselines=refs[:1], target=1,
                                   n_samples=4, generator=gen(0))
    assert nt.shape == x.shape and torch.isfinite(nt).all()


def test_multiply_by_inputs_false_is_expected_gradient():
    model = conv_net()
    x, refs = torch.randn(2, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    a = ExpectedGradients(model).attribute(x, refs, target=0, n_samples=5, generator=gen(0))
    b = ExpectedGradients(model, multiply_by_inputs=False).attribute(
        x, refs, target=0, n_samples=5, generator=gen(0))
    torch.testing.assert_close(a, b * x)
    assert ExpectedGradients(model).has_convergence_delta()


def test_same_seed_same_result_and_global_rng():
    model = conv_net()
    x, refs = torch.randn(2, 1, 8, 8), torch.randn(5, 1, 8, 8)
    eg = ExpectedGradients(model)
    assert torch.equal(eg.attribute(x, refs, target=0, generator=gen(3)),
                       eg.attribute(x, refs, target=0, generator=gen(3)))
    torch.manual_seed(11)
    a = eg.attribute(x, refs, target=0)
    torch.manual_seed(11)
    assert torch.equal(a, eg.attribute(x, refs, target=0))


class ThreeD(torch.nn.Module):
    def forward(self, x):
        return x.unsqueeze(1).repeat(1, 2, 1)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(inputs=torch.tensor([[float("nan"), 0.0, 1.0]])), ValueError, "inputs contains NaN"),
        (dict(baselines=torch.tensor([[float("inf"), 0.0, 1.0]])), ValueError, "baselines contains NaN"),
        (dict(baselines=torch.zeros(4, 5)), ValueError, "baselines has trailing shape"),
        (dict(baselines=torch.zeros(0, 3)), ValueError, "empty reference set"),
        (dict(n_samples=0), ValueError, "n_samples must be >= 1"),
        (dict(n_samples=2.5), TypeError, "n_samples must be an int"),
        (dict(target=7), ValueError, "target = 7 is out of range"),
        (dict(target=[0, 1]), ValueError, "target list has 2 entries"),
        (dict(target=None), ValueError, "target is None but the model returns"),
        (dict(internal_batch_size=0), ValueError, "internal_batch_size must be >= 1"),
        (dict(inputs=[1, 2]), TypeError, "inputs must be a torch.Tensor"),
        (dict(inputs=torch.ones(1, 3, dtype=torch.long)), TypeError, "floating-point"),
    ],
)
def test_bad_input(kwargs, exc, match):
    model = BasicModel_MultiLayer().eval()
    args = dict(inputs=torch.randn(1, 3), baselines=torch.zeros(4, 3), target=0, n_samples=3)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        ExpectedGradients(model).attribute(**args)


def test_bad_model_output_and_prior():
    with pytest.raises(ValueError, match="pass a tuple of 2 indices"):
        ExpectedGradients(ThreeD()).attribute(torch.randn(2, 3), torch.zeros(1, 3), target=0)
    model = conv_net()
    with pytest.raises(ValueError, match="does not broadcast"):
        DeepPriorExpectedGradients(model, torch.zeros(5, 5)).attribute(
            torch.randn(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), target=0)
    with pytest.raises(ValueError, match="prior map 0 contains NaN"):
        DeepPriorExpectedGradients(model, torch.full((1, 1, 8, 8), float("nan"))).attribute(
            torch.randn(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), target=0)
    with pytest.raises(ValueError, match="unknown variant"):
        DeepPriorExpectedGradients(model, 0.0, variant="shifted")
    with pytest.raises(ValueError, match="has no variant 'corrected'"):
        DeepPriorExpectedGradients(model, 0.0, variant="corrected")
    with pytest.raises(TypeError, match="prior must be"):
        DeepPriorExpectedGradients(model, "bgmm")
