"""``generator=`` as a list of one torch.Generator per example (captum_prior._random).

Key property: ``attribute(x, generator=[g_0, ..., g_{N-1}])`` equals the
concatenation of the one-example calls ``attribute(x[j:j+1], generator=g_j)``
(same draws per example, whatever the batch), while one generator keeps the
draw order the methods always used.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captum_prior import _random
from captum_prior.attr import (
    DeepPriorExpectedGradients,
    ExpectedGradients,
    ValidPathGradients,
)

N = 5
TOL = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    ).double()
    return net.eval()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(N, 1, 6, 6, generator=g, dtype=torch.float64)
    refs = torch.rand(7, 1, 6, 6, generator=g, dtype=torch.float64)
    return x, refs, torch.tensor([0, 1, 2, 1, 0])


def _gens(seeds):
    return [torch.Generator().manual_seed(1000 + s) for s in seeds]


def _one_by_one(fn, x, target, seeds, **kw):
    outs = [fn(x[j : j + 1], target=target[j : j + 1], generator=_gens([s])[0], **kw)
            for j, s in enumerate(seeds)]
    if isinstance(outs[0], tuple) and not isinstance(x, tuple):
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
    return torch.cat(outs)


# ----------------------------------------------------------------- key property
@pytest.mark.parametrize("stdevs", [0.0, 0.05])
@pytest.mark.parametrize("internal_batch_size", [None, 4])
def test_eg_list_equals_one_call_per_example(model, data, stdevs, internal_batch_size):
    x, refs, t = data
    eg = ExpectedGradients(model)
    seeds = range(N)
    kw = dict(baselines=refs, n_samples=6, stdevs=stdevs, internal_batch_size=internal_batch_size,
              return_convergence_delta=True)
    a, d = eg.attribute(x, target=t, generator=_gens(seeds), **kw)
    b, e = _one_by_one(eg.attribute, x, t, seeds, **kw)
    torch.testing.assert_close(a, b, **TOL)
    torch.testing.assert_close(d, e, **TOL)
    # draws depend only on each example's generator: a sub-batch and a
    # permuted batch give each example the same result
    sub = eg.attribute(x[2:4], target=t[2:4], generator=_gens([2, 3]), baselines=refs, n_samples=6,
                       stdevs=stdevs, internal_batch_size=internal_batch_size)
    torch.testing.assert_close(sub, a[2:4], **TOL)
    perm = [4, 0, 3, 1, 2]
    p = eg.attribute(x[perm], target=t[perm], generator=_gens(perm), baselines=refs, n_samples=6,
                     stdevs=stdevs, internal_batch_size=internal_batch_size)
    torch.testing.assert_close(p, a[perm], **TOL)


def test_eg_list_results_differ_per_generator(model, data):
    """The test above could pass if the list were ignored: it is not."""
    x, refs, t = data
    eg = ExpectedGradients(model)
    a = eg.attribute(x, refs, n_samples=6, target=t, generator=_gens(range(N)))
    b = eg.attribute(x, refs, n_samples=6, target=t, generator=_gens([0] * N))
    same = eg.attribute(x[:1].repeat(N, 1, 1, 1), refs, n_samples=6, target=t[:1].repeat(N),
                        generator=_gens([0] * N))
    assert not torch.allclose(a[1:], b[1:])
    torch.testing.assert_close(same, same[:1].expand_as(same), **TOL)  # same seed, same draws


def test_eg_tuple_inputs_list(model, data):
    x, refs, t = data

    def two(a, b):
        return model(a + b)

    eg = ExpectedGradients(two)
    xs = (x, 0.5 * x)
    rs = (refs, 0.5 * refs)
    a = eg.attribute(xs, rs, n_samples=4, target=t, stdevs=(0.1, 0.0), generator=_gens(range(N)))
    for j in range(N):
        b = eg.attribute((x[j : j + 1], 0.5 * x[j : j + 1]), rs, n_samples=4, target=t[j : j + 1],
                         stdevs=(0.1, 0.0), generator=_gens([j])[0])
        for ai, bi in zip(a, b):
            torch.testing.assert_close(ai[j : j + 1], bi, **TOL)


def test_generators_advance_as_in_one_example_calls(model, data):
    x, refs, t = data
    eg = ExpectedGradients(model)
    batch, single = _gens(range(N)), _gens(range(N))
    eg.attribute(x, refs, n_samples=3, stdevs=0.1, target=t, generator=batch)
    for j in range(N):
        eg.attribute(x[j : j + 1], refs, n_samples=3, stdevs=0.1, target=t[j : j + 1],
                     generator=single[j])
        assert torch.equal(batch[j].get_state(), single[j].get_state())


@pytest.mark.filterwarnings("ignore::captum_prior.errors.InputRangeWarning")
def test_deep_prior_eg_list_with_a_fixed_prior(model, data):
    """A prior that does not couple the batch (a number) keeps the property."""
    x, refs, t = data
    dp = DeepPriorExpectedGradients(model, 0.05)
    a = dp.attribute(x, refs, n_samples=4, target=t, generator=_gens(range(N)))
    b = _one_by_one(dp.attribute, x, t, range(N), baselines=refs, n_samples=4)
    torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("filter_path_features", [True, False])
def test_vpg_monte_carlo_list_equals_one_call_per_example(model, data, filter_path_features):
    x, refs, t = data
    vpg = ValidPathGradients(model, filter_path_features=filter_path_features)
    kw = dict(baselines=torch.stack([refs[:N], refs[1 : N + 1]]), method="monte_carlo",
              n_steps=8, return_convergence_delta=True)
    a, d = vpg.attribute(x, target=t, generator=_gens(range(N)), **kw)
    per = [vpg.attribute(x[j : j + 1], target=t[j : j + 1], generator=_gens([j])[0],
                         **dict(kw, baselines=kw["baselines"][:, j : j + 1])) for j in range(N)]
    torch.testing.assert_close(a, torch.cat([p[0] for p in per]), **TOL)
    torch.testing.assert_close(d, torch.cat([p[1] for p in per]), **TOL)
    other = vpg.attribute(x, target=t, generator=_gens([9] * N), **kw)[0]
    assert not torch.allclose(a, other)


def test_vpg_optimized_baselines_list(model, data):
    x, _, t = data
    vpg = ValidPathGradients(model)
    kw = dict(method="monte_carlo", n_steps=6, n_baselines=2, input_range=(0.0, 1.0),
              baseline_kwargs={"max_iter": 3})
    a = vpg.attribute(x, target=t, generator=_gens(range(N)), **kw)
    b = _one_by_one(vpg.attribute, x, t, range(N), **kw)
    torch.testing.assert_close(a, b, **TOL)


# ------------------------------------------- one generator: the old draw order
def _eg_from_old_draws(model, x, refs, t, n_samples, stdevs, seed):
    """EG computed by hand from the draws the method made before per-example
    generators existed: randint(R, (N*S,)), rand(N*S), randn((N*S, ...)) from
    one generator, rows example-major."""
    g = torch.Generator().manual_seed(seed)
    n, s = x.shape[0], n_samples
    idx = torch.randint(refs.shape[0], (n * s,), generator=g)
    alpha = torch.rand(n * s, generator=g).to(x.dtype)
    noise = (torch.randn((n * s,) + x.shape[1:], generator=g) * stdevs).to(x.dtype)
    ex = torch.arange(n).repeat_interleave(s)
    start = refs[idx]
    end = x[ex] + noise
    pts = (start + alpha.view(-1, 1, 1, 1) * (end - start)).requires_grad_(True)
    out = model(pts).gather(1, t[ex].view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(out, pts)
    contrib = grad * (end - start)
    return torch.zeros_like(x).index_add_(0, ex, contrib) / s


def test_eg_one_generator_keeps_the_old_draw_order(model, data):
    x, refs, t = data
    eg = ExpectedGradients(model)
    for stdevs in (0.0, 0.1):
        got = eg.attribute(x, refs, n_samples=5, stdevs=stdevs, target=t,
                           generator=torch.Generator().manual_seed(7))
        want = _eg_from_old_draws(model, x, refs, t, 5, stdevs, 7)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # and a list of one generator for a single example is that generator
    one = eg.attribute(x[:1], refs, n_samples=5, target=t[:1],
                       generator=[torch.Generator().manual_seed(7)])
    torch.testing.assert_close(one, _eg_from_old_draws(model, x[:1], refs, t[:1], 5, 0.0, 7),
                               rtol=1e-10, atol=1e-12)


def test_vpg_one_generator_keeps_the_old_draw_order(model, data):
    """Without filtering, monte-carlo VPG is random-alpha IG from each baseline,
    with alpha = torch.rand((B, K, N)) from the one generator."""
    x, refs, t = data
    base = torch.stack([refs[:N], refs[2 : N + 2]])  # B=2 baselines per example
    vpg = ValidPathGradients(model, filter_path_features=False)
    got = vpg.attribute(x, base, target=t, n_steps=6, method="monte_carlo",
                        generator=torch.Generator().manual_seed(3))
    alphas = torch.rand((2, 3, N), generator=torch.Generator().manual_seed(3)).to(x.dtype)
    want = torch.zeros_like(x)
    for b in range(2):
        mean_grad = torch.zeros_like(x)
        for k in range(3):
            a = alphas[b, k].view(-1, 1, 1, 1)
            pts = (base[b] + a * (x - base[b])).requires_grad_(True)
            (g,) = torch.autograd.grad(model(pts).gather(1, t.view(-1, 1)).sum(), pts)
            mean_grad += g / 3
        want += (x - base[b]) * mean_grad / 2
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


# -------------------------------------------------------------------- bad input
@pytest.mark.parametrize("cls", ["eg", "vpg"])
def test_bad_generator_lists(model, data, cls):
    x, refs, t = data
    if cls == "eg":
        def call(gen):
            return ExpectedGradients(model).attribute(x, refs, n_samples=2, target=t, generator=gen)
    else:
        def call(gen):
            return ValidPathGradients(model).attribute(x, refs[:N], target=t, n_steps=4,
                                                       method="monte_carlo", generator=gen)
    with pytest.raises(ValueError, match=r"generator has 3 generators but the inputs have 5 "
                                         r"examples; pass one torch.Generator per example"):
        call(_gens(range(3)))
    with pytest.raises(TypeError, match=r"generator\[1\] is a int; .*one torch.Generator per example"):
        call([torch.Generator(), 3, torch.Generator(), torch.Generator(), torch.Generator()])
    with pytest.raises(TypeError, match="generator must be None, a torch.Generator, or a list"):
        call(0)
    with pytest.raises(TypeError, match="generator must be None"):
        call(torch.zeros(5))


# ---------------------------------------------------------------- the helper
def test_helper_draw_shapes_and_blocks():
    gens = _random.check_generator(_gens(range(3)), 3)
    r = _random.rand(gens, (2, 4, 3), example_dim=2)
    assert r.shape == (2, 4, 3)
    for j in range(3):
        torch.testing.assert_close(r[:, :, j], torch.rand((2, 4), generator=_gens([j])[0]))
    i = _random.randint(10, _random.check_generator(_gens(range(3)), 3), (3, 5))
    for j in range(3):
        assert torch.equal(i[j], torch.randint(10, (5,), generator=_gens([j])[0]))
    # one generator: exactly the single call
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(_random.randn(g1, (3, 5)), torch.randn((3, 5), generator=g2))
    assert _random.check_generator(None, 3) is None
    assert _random.check_generator((), 0) == ()
    assert _random.rand((), (0, 2)).shape == (0, 2)


def test_per_example_generators_is_a_method_everywhere(model):
    """One kind of declaration: a method of the ``attribute`` kwargs returning a bool,
    which the runner calls (callable baselines always mean one call per example)."""
    from captum_prior.runner.explain import _takes_generator_list

    cases = [
        (ExpectedGradients(model), {"n_samples": 4}, True),
        (DeepPriorExpectedGradients(model, 0.0), {"n_samples": 4}, False),
        (ValidPathGradients(model, filter_path_features=False), {"baselines": 0.0}, True),
        (ValidPathGradients(model, filter_path_features=False), {}, False),
        (ValidPathGradients(model), {"baselines": 0.0}, False),
    ]
    for method, kwargs, expected in cases:
        assert method._per_example_generators(dict(kwargs)) is expected
        assert _takes_generator_list(method, kwargs) is expected
    assert not _takes_generator_list(ExpectedGradients(model), {"baselines": lambda: torch.zeros(1, 1, 6, 6)})
    assert not _takes_generator_list(object(), {})
