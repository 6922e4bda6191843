"""Tests of ValidPathGradients (Akhtar & Jalwana, Algorithm 2, consistent reading)."""

import pytest
import torch
from captum.attr import NoiseTunnel
from captum.metrics import infidelity, sensitivity_max
from torch import nn

from captum_prior.attr import OptimizedBaseline, ValidPathGradients
from captum_prior.models import FashionCNN


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return FashionCNN(width=8).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))


class MLP(nn.Module):
    def __init__(self, d=6, c=3):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, c))

    def forward(self, x):
        return self.net(x)


def example_f(x):
    """F of the paper's Example 1 (see tests/test_optimized_baseline.py)."""
    x1, x2 = x[:, 0], x[:, 1]
    u1 = (x1 <= 1) & (x2 <= 1)
    u2 = (x1 > 1) & (x2 > 1)
    return torch.where(
        u1, x1 + 4 * x2 + 1, torch.where(u2, 4 * x1 + x2 + 2, torch.zeros_like(x1))
    )


XB = torch.tensor([[4.0, 4.0]])


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def grad_at(model, x, target):
    x = x.detach().requires_grad_()
    out = model(x)
    sel = out.gather(1, target.view(-1, 1)).sum()
    return torch.autograd.grad(sel, x)[0]


def reference_vpg(model, x, base, target, n_steps, seed, filt):
    """Plain loop over the documented formula (base: B x N x D)."""
    B, N = base.shape[0], x.shape[0]
    K = n_steps // B
    alphas = torch.rand((B, K, N), generator=gen(seed))
    gx = grad_at(model, x, target)
    out = torch.zeros_like(x)
    for b in range(B):
        acc = torch.zeros_like(x)
        cnt = torch.zeros_like(x)
        for k in range(K):
            a = alphas[b, k].view(-1, 1)
            xt = base[b] + a * (x - base[b])
            g = grad_at(model, xt, target)
            if filt:
                ref = (x - base[b]) * gx
                rho = (x - xt) * g
                valid = (torch.sign(ref) == torch.sign(rho)) & (ref.abs() > rho.abs())
            else:
                valid = torch.ones_like(g, dtype=torch.bool)
            acc += torch.where(valid, g, torch.zeros_like(g))
            cnt += valid.float()
        out += (x - base[b]) * acc / cnt.clamp_min(1)
    return out / B


def test_filter_off_equals_random_alpha_ig():
    model = MLP()
    x = torch.rand(4, 6, generator=gen(3))
    base = torch.rand(4, 6, generator=gen(4))
    target = torch.tensor([0, 1, 2, 1])
    vpg = ValidPathGradients(model, filter_path_features=False)
    got = vpg.attribute(x, base, target=target, n_steps=40, method="monte_carlo", generator=gen(7))
    # random-alpha IG from that baseline, same generator: alpha ~ U(0, 1), one per step and example
    alphas = torch.rand((1, 40, 4), generator=gen(7))[0]
    grads = torch.stack(
        [grad_at(model, base + a.view(-1, 1) * (x - base), target) for a in alphas]
    )
    ig = (x - base) * grads.mean(0)
    assert torch.allclose(got, ig, atol=1e-6)
    # several fixed baselines: the mean of random-alpha IG from each
    bases = torch.rand(2, 4, 6, generator=gen(5))
    got = vpg.attribute(x, bases, target=target, n_steps=40, method="monte_carlo", generator=gen(8))
    ref = reference_vpg(model, x, bases, target, 40, 8, filt=False)
    assert torch.allclose(got, ref, atol=1e-6)


def test_filter_on_matches_documented_formula_and_filters_something():
    model = MLP()
    x = torch.rand(4, 6, generator=gen(3))
    bases = torch.rand(2, 4, 6, generator=gen(5))
    target = torch.tensor([0, 1, 2, 1])
    vpg = ValidPathGradients(model)
    got = vpg.attribute(x, bases, target=target, n_steps=30, method="monte_carlo", generator=gen(9))
    ref = reference_vpg(model, x, bases, target, 30, 9, filt=True)
    assert torch.allclose(got, ref, atol=1e-6)
    frac = vpg.last_info_["valid_fraction"][0]
    assert frac.shape == (2, 4, 6)
    assert 0.05 < frac.mean() < 0.95  # some path features are invalid, some valid
    unfiltered = ValidPathGradients(model, filter_path_features=False).attribute(
        x, bases, target=target, n_steps=30, method="monte_carlo", generator=gen(9)
    )
    assert not torch.allclose(got, unfiltered, atol=1e-4)


def test_linear_model_is_exact_and_complete():
    # F = w.x + c: every path gradient equals grad F(x), all features are valid
    # (same sign, (1 - alpha) < 1) and A = (x - x') * w with a zero completeness gap.
    lin = nn.Linear(5, 2)
    x = torch.rand(3, 5, generator=gen(1))
    base = torch.rand(3, 5, generator=gen(2))
    vpg = ValidPathGradients(lin)
    attr, delta = vpg.attribute(
        x, base, target=1, n_steps=10, return_convergence_delta=True
    )
    assert torch.allclose(attr, (x - base) * lin.weight[1].detach(), atol=1e-6)
    assert delta.shape == (3,) and delta.abs().max() < 1e-5
    local = ValidPathGradients(lin, multiply_by_inputs=False).attribute(
        x, base, target=1, n_steps=10
    )
    assert torch.allclose(local, lin.weight[1].detach().expand_as(x), atol=1e-6)
    assert not ValidPathGradients(lin, multiply_by_inputs=False).multiplies_by_inputs
    assert vpg.has_convergence_delta()


def test_example1_with_optimized_baseline_gives_weight_ratio():
    ob = OptimizedBaseline(
        example_f, sigmas=(1.0,), eta=0.05, eps=1.0, delta=0.1, max_iter=200, clip=None
    )
    base = ob.compute(XB, init=torch.tensor([[0.5, 0.5]]))
    for filt in (True, False):
        a = ValidPathGradients(example_f, filter_path_features=filt).attribute(
            XB, base, n_steps=20, method="monte_carlo", generator=gen(0)
        )
        assert abs(abs(a[0, 0] / a[0, 1]).item() - 4) < 1e-4
    # from 0 the same function gives the counter-intuitive ratio instead
    a0 = ValidPathGradients(example_f, filter_path_features=False).attribute(
        XB, 0.0, n_steps=400, method="monte_carlo", generator=gen(0)
    )
    assert abs((a0[0, 0] / a0[0, 1]).item() - 4) > 1.5


def test_chunked_equals_unchunked_with_optimized_baselines(cnn, images):
    vpg = ValidPathGradients(cnn)
    kw = dict(
        target=[1, 4, 7],
        n_steps=12,
        n_baselines=2,
        baseline_kwargs=dict(max_iter=2, eps=1e-4),
    )
    full, d1 = vpg.attribute(
        images, method="monte_carlo", generator=gen(0), return_convergence_delta=True, **kw
    )
    calls_full = vpg.last_info_["n_calls"]
    part, d2 = vpg.attribute(
        images,
        method="monte_carlo", generator=gen(0),
        internal_batch_size=5,
        return_convergence_delta=True,
        **kw,
    )
    assert vpg.last_info_["n_calls"] > calls_full  # really evaluated in chunks
    assert torch.allclose(full, part, atol=1e-6)
    assert torch.allclose(d1, d2, atol=1e-5)
    again = vpg.attribute(images, method="monte_carlo", generator=gen(0), **kw)
    assert torch.equal(full, again)  # same generator state, same result
    other = vpg.attribute(images, method="monte_carlo", generator=gen(1), **kw)
    assert not torch.allclose(full, other)
    base = vpg.last_info_["baselines"]
    assert base.shape == (2,) + images.shape
    assert bool(((base - images).abs() >= 0.05 - 1e-6).all())


def test_default_baselines_are_optimized_baselines(cnn, images):
    # baselines=None is OptimizedBaseline with default_sigmas(n_baselines) and baseline_kwargs
    from captum_prior.attr.optimized_baseline import default_sigmas

    x = images[:2]
    bk = dict(max_iter=2, eps=1e-4, delta=0.08)
    vpg = ValidPathGradients(cnn)
    auto = vpg.attribute(
        x, target=5, n_steps=8, n_baselines=2, baseline_kwargs=bk, method="monte_carlo", generator=gen(3)
    )
    base = OptimizedBaseline(cnn, sigmas=default_sigmas(2), **bk).compute(x)
    assert torch.allclose(vpg.last_info_["baselines"], base, atol=1e-6)
    explicit = vpg.attribute(x, base, target=5, n_steps=8, method="monte_carlo", generator=gen(3))
    assert torch.allclose(auto, explicit, atol=1e-6)


def test_target_forms(cnn, images):
    vpg = ValidPathGradients(cnn)
    kw = dict(baselines=0.0, n_steps=6)
    ref = vpg.attribute(images, target=2, method="monte_carlo", generator=gen(0), **kw)
    for t in (torch.tensor(2), [2, 2, 2], torch.tensor([2, 2, 2]), (2,)):
        assert torch.allclose(
            vpg.attribute(images, target=t, method="monte_carlo", generator=gen(0), **kw), ref, atol=1e-7
        )
    per = vpg.attribute(images, target=[0, 5, 9], method="monte_carlo", generator=gen(0), **kw)
    # per-example targets select each example's own class: compare with int-target runs
    for i, t in enumerate((0, 5, 9)):
        full_t = vpg.attribute(images, target=t, method="monte_carlo", generator=gen(0), **kw)
        assert torch.allclose(per[i], full_t[i], atol=1e-7)


class TwoInput(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, a, b, bias=None):
        out = self.net(torch.cat([a, b], 1))
        return out if bias is None else out + bias


def test_tuple_inputs_equal_concatenated_input():
    two = TwoInput()
    a = torch.rand(4, 4, generator=gen(1))
    b = torch.rand(4, 6, generator=gen(2))
    bias = torch.rand(4, 3, generator=gen(3))
    vpg = ValidPathGradients(two)
    ta, tb = vpg.attribute(
        (a, b),
        (0.1, torch.zeros(6)),
        target=1,
        additional_forward_args=(bias,),
        n_steps=20,
        method="monte_carlo", generator=gen(5),
    )
    one = ValidPathGradients(lambda x, bias: two(x[:, :4], x[:, 4:], bias))
    base = torch.cat([torch.full((4,), 0.1), torch.zeros(6)])
    whole = one.attribute(
        torch.cat([a, b], 1),
        base,
        target=1,
        additional_forward_args=(bias,),
        n_steps=20,
        method="monte_carlo", generator=gen(5),
    )
    assert torch.allclose(torch.cat([ta, tb], 1), whole, atol=1e-6)


def test_noise_tunnel_and_captum_metrics(cnn, images):
    vpg = ValidPathGradients(cnn)
    x = images[:2]
    kw = dict(n_steps=6, n_baselines=2, baseline_kwargs=dict(max_iter=1))
    nt = NoiseTunnel(vpg)
    with torch.no_grad():
        attr = nt.attribute(x, nt_samples=2, stdevs=0.05, target=3, **kw)
    assert attr.shape == x.shape and bool(torch.isfinite(attr).all())
    assert attr.abs().sum() > 0
    sens = sensitivity_max(vpg.attribute, x, target=3, n_perturb_samples=2, **kw)
    assert sens.shape == (2,) and bool(torch.isfinite(sens).all())

    def perturb(inputs):
        noise = torch.randn_like(inputs) * 0.01
        return noise, inputs - noise

    attr = vpg.attribute(x, target=3, **kw)
    inf = infidelity(cnn, perturb, x, attr, target=3, n_perturb_samples=3)
    assert inf.shape == (2,) and bool(torch.isfinite(inf).all())


def test_single_and_several_optimized_baselines(cnn, images):
    vpg = ValidPathGradients(cnn)
    x = images[:2]
    one = vpg.attribute(
        x,
        target=0,
        n_steps=9,
        n_baselines=1,
        baseline_kwargs=dict(max_iter=1),
        method="monte_carlo", generator=gen(0),
    )
    assert (
        vpg.last_info_["baselines"].shape[0] == 1
        and vpg.last_info_["n_steps_per_baseline"] == 9
    )
    three = vpg.attribute(
        x,
        target=0,
        n_steps=9,
        n_baselines=3,
        baseline_kwargs=dict(max_iter=1),
        method="monte_carlo", generator=gen(0),
    )
    assert (
        vpg.last_info_["baselines"].shape[0] == 3
        and vpg.last_info_["n_steps_per_baseline"] == 3
    )
    assert one.shape == three.shape and not torch.allclose(one, three)
    # explicit sigmas and a different delta reach the baseline optimiser
    vpg.attribute(
        x,
        target=0,
        n_steps=4,
        n_baselines=2,
        baseline_kwargs=dict(sigmas=(1.0, 5.0), delta=0.2, max_iter=1),
    )
    base = vpg.last_info_["baselines"]
    assert bool(((base - x).abs() >= 0.2 - 1e-6).all())


def test_log_usage_wrapped():
    assert hasattr(ValidPathGradients.attribute, "__wrapped__")


def test_bad_inputs(cnn, images):
    vpg = ValidPathGradients(cnn)
    x = images[:2]
    cases = [
        (dict(n_steps=2, n_baselines=3), ValueError, "n_baselines"),
        (dict(n_steps=0), ValueError, "n_steps"),
        (dict(n_baselines=0), ValueError, "n_baselines"),
        (dict(n_steps=1.5), TypeError, "n_steps"),
        (dict(generator=0), TypeError, "generator"),
        (dict(internal_batch_size=0), ValueError, "internal_batch_size"),
        (dict(baseline_kwargs=dict(sigma=1.0)), ValueError, "baseline_kwargs"),
        (dict(baseline_kwargs=[1]), TypeError, "baseline_kwargs"),
        (
            dict(baseline_kwargs=dict(sigmas=(1.0,)), n_baselines=2),
            ValueError,
            "sigmas",
        ),
        (dict(baseline_kwargs=dict(sigmas=()), n_baselines=2), ValueError, "sigmas"),
        (dict(baseline_kwargs=dict(eps=0.0)), ValueError, "eps"),
        (dict(baseline_kwargs=dict(max_iter=0)), ValueError, "max_iter"),
        (dict(baseline_kwargs=dict(delta=2.0)), ValueError, "delta"),
        (
            dict(baseline_kwargs=dict(max_iter=1), baselines=0.0),
            ValueError,
            "baseline_kwargs",
        ),
        (dict(baselines=torch.zeros(5, 28, 28)), ValueError, "baselines"),
        (dict(baselines=torch.zeros(2, 3, 1, 28, 28)), ValueError, "baselines"),
        (dict(baselines="black"), TypeError, "baselines"),
        (dict(baselines=(0.0, 0.0)), ValueError, "baselines"),
        (dict(target=10, baselines=0.0), ValueError, "target"),
        (dict(target=[1], baselines=0.0), ValueError, "target"),
        (dict(target=None, baselines=0.0), ValueError, "target"),
    ]
    for kwargs, exc, word in cases:
        kwargs = dict(kwargs)
        kwargs.setdefault("target", 1)
        kwargs.setdefault("n_steps", 3)
        kwargs.setdefault("n_baselines", 1)
        with pytest.raises(exc, match=word):
            vpg.attribute(x, **kwargs)
    bad = x.clone()
    bad[0, 0, 1, 1] = float("inf")
    with pytest.raises(ValueError, match="inputs"):
        vpg.attribute(bad, target=1, baselines=0.0, n_steps=2)
    with pytest.raises(TypeError, match="inputs"):
        vpg.attribute(x.long(), target=1, baselines=0.0, n_steps=2)
    with pytest.raises(ValueError, match="baselines"):
        vpg.attribute(
            x, target=1, baselines=torch.full_like(x, float("nan")), n_steps=2
        )
    with pytest.raises(TypeError, match="forward_func"):
        ValidPathGradients(3)
