"""Captum's own usage patterns, run with our classes swapped in (issue 12).

Each test is written the way code for Captum's ``GradientShap``,
``IntegratedGradients`` and ``NoiseTunnel`` is written (the call forms and
positional orders of Captum's own tests and tutorials); it runs once with the
Captum class and once with ours, and checks that ours accepts the same call
and returns the same structure (and, where the estimators agree, the same
values).
"""

import numpy as np
import pytest
import torch
from captum.attr import GradientShap, IntegratedGradients, NoiseTunnel
from captum.testing.attr.helpers.attribution_delta_util import assert_attribution_delta
from captum.testing.helpers import BaseTest
from captum.testing.helpers.basic_models import (
    BasicLinearModel,
    BasicModel2,
    BasicModel_MultiLayer,
    BasicModel_MultiLayer_MultiInput,
)
from captum.testing.helpers.classification_models import SoftmaxModel
from torch import nn

from captum_prior.attr import (
    BayLime,
    DeepPriorExpectedGradients,
    DMMMENAttribution,
    ExpectedGradients,
    ValidPathGradients,
)
from captum_prior.proxy import DMMMEN

TC = BaseTest()  # Captum's assertion helpers take a TestCase


def zero_prior_eg(model, multiply_by_inputs=True):
    """DeepPrior-EG with a zero prior: the same estimator as EG."""
    def zero(inputs, target=None):
        if isinstance(inputs, tuple):
            return tuple(torch.zeros_like(t) for t in inputs)
        return torch.zeros_like(inputs)

    return DeepPriorExpectedGradients(model, zero, multiply_by_inputs=multiply_by_inputs)


def unfiltered_vpg(model, multiply_by_inputs=True):
    """ValidPathGradients without the filter integrates every path feature: IG."""
    return ValidPathGradients(
        model, multiply_by_inputs=multiply_by_inputs, filter_path_features=False
    )


SHAP_LIKE = [GradientShap, ExpectedGradients, zero_prior_eg]
IG_LIKE = [IntegratedGradients, unfiltered_vpg, ValidPathGradients]


def seed(s=0):
    np.random.seed(s)  # GradientShap draws from NumPy's global RNG
    torch.manual_seed(s)  # ours (generator=None) from torch's


# --------------------------------------------------------------- GradientShap
@pytest.mark.parametrize("cls", SHAP_LIKE)
def test_gradient_shap_multi_input_linear(cls):
    # Captum's test_basic_multi_input: tuple inputs, 20 reference rows,
    # positional baselines, delta of shape (bsz * n_samples,)
    x1, x2 = torch.ones(10, 3), torch.ones(10, 4)
    baselines = (torch.zeros(20, 3), torch.zeros(20, 4))
    model = BasicLinearModel().eval()
    seed()
    gs = cls(model)
    n_samples = 50
    attributions, delta = gs.attribute(
        (x1, x2), baselines, n_samples=n_samples, return_convergence_delta=True
    )
    without_delta = gs.attribute((x1, x2), baselines)
    assert_attribution_delta(TC, (x1, x2), attributions, n_samples, delta)
    ig = IntegratedGradients(model).attribute(
        (x1, x2), baselines=(torch.zeros(10, 3), torch.zeros(10, 4))
    )
    for a, b, c in zip(attributions, ig, without_delta):
        torch.testing.assert_close(a, b, atol=0.05, rtol=0)  # linear model: exact
        torch.testing.assert_close(c, b, atol=0.05, rtol=0)


@pytest.mark.parametrize("cls", SHAP_LIKE)
def test_gradient_shap_without_multiplying_by_inputs(cls):
    x1, x2 = torch.ones(10, 3), torch.ones(10, 4)
    baselines = (torch.ones(20, 3) + 2e-5, torch.ones(20, 4) + 2e-5)
    model = BasicLinearModel().eval()
    seed()
    a = cls(model).attribute((x1, x2), baselines, n_samples=50, stdevs=0.0)
    seed()
    b = cls(model, multiply_by_inputs=False).attribute(
        (x1, x2), baselines, n_samples=50, stdevs=0.0
    )
    torch.testing.assert_close(b[0] * (x1 - baselines[0][0:1]), a[0])
    torch.testing.assert_close(b[1] * (x2 - baselines[1][0:1]), a[1])


@pytest.mark.parametrize("cls", SHAP_LIKE)
def test_gradient_shap_callable_baselines_and_noise(cls):
    # Captum's test_classification_baselines_as_function
    num_in = 40
    inputs = torch.arange(0.0, num_in * 2.0).reshape(2, num_in)

    def generate_baselines():
        return torch.arange(0.0, num_in * 4.0).reshape(4, num_in)

    def generate_baselines_with_inputs(inputs):
        return torch.arange(0.0, inputs.shape[1] * 2.0).reshape(2, inputs.shape[1])

    def generate_baselines_returns_array():
        return np.arange(0.0, num_in * 4.0).reshape(4, num_in)

    seed(1234)  # Captum's BaseTest.setUp seed
    model = SoftmaxModel(num_in, 20, 10).eval()
    gs = cls(model)
    n_samples = 10
    for fn, sd in ((generate_baselines, 0.009), (generate_baselines_with_inputs, 0.00001)):
        seed()
        attributions, delta = gs.attribute(
            inputs, baselines=fn, target=torch.tensor(1), n_samples=n_samples,
            stdevs=sd, return_convergence_delta=True,
        )
        assert attributions.shape == inputs.shape
        assert_attribution_delta(TC, (inputs,), (attributions,), n_samples, delta)
    # Captum raises AssertionError for a callable returning an array; we a TypeError
    with pytest.raises((AssertionError, TypeError)):
        gs.attribute(inputs, baselines=generate_baselines_returns_array,
                     target=torch.tensor(1), n_samples=n_samples, stdevs=0.00001,
                     return_convergence_delta=True)


@pytest.mark.parametrize("cls", SHAP_LIKE)
def test_gradient_shap_external_convergence_delta(cls):
    # Captum's test_classification: compute_convergence_delta called by the user
    num_in = 40
    inputs = torch.arange(0.0, num_in * 2.0).reshape(2, num_in)
    baselines = torch.arange(0.0, num_in * 4.0).reshape(4, num_in)
    torch.manual_seed(0)
    model = SoftmaxModel(num_in, 20, 10).eval()
    gs = cls(model)
    seed()
    attributions, delta = gs.attribute(inputs, baselines=baselines, target=torch.tensor(1),
                                       n_samples=10, stdevs=0.009,
                                       return_convergence_delta=True)
    with pytest.raises(AssertionError):  # 4 baselines for 2 inputs
        gs.compute_convergence_delta(attributions, inputs, baselines, target=torch.tensor(1))
    chosen = baselines[np.random.choice(baselines.shape[0], inputs.shape[0]).tolist()]
    ext = gs.compute_convergence_delta(attributions, chosen, inputs, target=torch.tensor([1, 1]))
    assert ext.shape == (2,) and torch.isfinite(ext).all()


@pytest.mark.parametrize("cls", SHAP_LIKE)
def test_gradient_shap_relu_multi_input_agrees_with_ig(cls):
    # Captum's test_basic_relu_multi_input, with fewer samples
    model = BasicModel2()
    inputs = (torch.tensor([[3.0]]), torch.tensor([[1.0]], requires_grad=True))
    baselines = (torch.tensor([[0.0]]), torch.tensor([[0.0]]))
    seed()
    n_samples = 4000
    attributions, delta = cls(model).attribute(
        inputs, baselines=baselines, n_samples=n_samples, return_convergence_delta=True
    )
    assert_attribution_delta(TC, inputs, attributions, n_samples, delta, delta_thresh=0.03)
    ig = IntegratedGradients(model).attribute(inputs, baselines=baselines)
    for a, b in zip(attributions, ig):
        torch.testing.assert_close(a, b, atol=0.05, rtol=0)


def test_expected_gradients_positional_order_is_gradient_shaps():
    # attribute(inputs, baselines, n_samples, stdevs, target, additional_forward_args,
    #           return_convergence_delta)
    model = BasicModel_MultiLayer_MultiInput().eval()
    torch.manual_seed(0)
    x = (torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3))
    refs = tuple(torch.randn(6, 3) for _ in range(3))
    for cls in SHAP_LIKE:
        seed(1)
        pos = cls(model).attribute(x, refs, 7, 0.0, 1, (2,), True)
        assert isinstance(pos, tuple) and len(pos) == 2
        attr, delta = pos
        assert all(a.shape == xi.shape for a, xi in zip(attr, x))
        assert delta.shape == (4 * 7,)
        if cls is not GradientShap:
            seed(1)
            kw = cls(model).attribute(inputs=x, baselines=refs, n_samples=7, stdevs=0.0,
                                      target=1, additional_forward_args=(2,),
                                      return_convergence_delta=True)
            for u, v in zip(attr, kw[0]):
                assert torch.equal(u, v)
            assert torch.equal(delta, kw[1])


def test_expected_gradients_delta_forms_and_noise():
    torch.manual_seed(0)
    model = BasicModel_MultiLayer().eval()
    x, refs = torch.randn(3, 3), torch.randn(5, 3)
    eg = ExpectedGradients(model)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a, d = eg.attribute(x, refs, n_samples=6, target=0, return_convergence_delta=True,
                        generator=g())
    a2, d2 = eg.attribute(x, refs, n_samples=6, target=0, return_convergence_delta=True,
                          generator=g(), delta_per_example=True)
    assert d.shape == (18,) and d2.shape == (3,)
    assert torch.equal(a, a2)
    torch.testing.assert_close(d.view(3, 6).mean(1), d2)
    # stdevs: noise changes the result, reproducibly; 0.0 is the default
    n1 = eg.attribute(x, refs, n_samples=6, stdevs=0.5, target=0, generator=g())
    n2 = eg.attribute(x, refs, n_samples=6, stdevs=0.5, target=0, generator=g())
    assert torch.equal(n1, n2) and not torch.allclose(n1, a)
    assert torch.equal(eg.attribute(x, refs, n_samples=6, stdevs=0.0, target=0, generator=g()), a)
    # per-draw delta with noise is each draw's completeness gap (noisy end point)
    _, dn = eg.attribute(x, refs, 6, 0.5, 0, return_convergence_delta=True, generator=g())
    assert dn.shape == (18,) and torch.isfinite(dn).all()
    # stdevs per input tensor for tuple inputs, as GradientShap
    mi = BasicModel_MultiLayer_MultiInput().eval()
    xs = (torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3))
    rs = tuple(torch.randn(4, 3) for _ in range(3))
    out = ExpectedGradients(mi).attribute(xs, rs, 3, (0.1, 0.0, 0.2), 0, (1,), generator=g())
    assert len(out) == 3
    with pytest.raises(ValueError, match="stdevs has 2 values"):
        ExpectedGradients(mi).attribute(xs, rs, 3, (0.1, 0.0), 0, (1,))
    with pytest.raises(ValueError, match="stdevs must be >= 0"):
        eg.attribute(x, refs, 3, -1.0, 0)


# ------------------------------------------------------- IntegratedGradients
@pytest.mark.parametrize("method", ["gausslegendre", "riemann_left", "riemann_right",
                                    "riemann_middle"])
def test_ig_call_forms_unfiltered_vpg_equals_ig(method):
    # IG's positional order: inputs, baselines, target, additional_forward_args,
    # n_steps, method, internal_batch_size, return_convergence_delta
    model = BasicModel_MultiLayer_MultiInput().eval()
    torch.manual_seed(0)
    x = (torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3))
    base = (torch.zeros(4, 3), 0.5, torch.randn(1, 3))
    target = [0, 1, 1, 0]
    ref, rd = IntegratedGradients(model).attribute(x, base, target, (2,), 20, method, None, True)
    got, gd = unfiltered_vpg(model).attribute(x, base, target, (2,), 20, method, None, True)
    chunked = unfiltered_vpg(model).attribute(x, base, target, (2,), 20, method, 7, False)
    assert rd.shape == gd.shape == (4,)
    for r, g, c in zip(ref, got, chunked):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(c, r, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gd, rd, atol=1e-4, rtol=1e-4)


def test_riemann_trapezoid_is_normalised():
    # Captum's riemann_trapezoid step sizes sum to (n-1)/n; ValidPathGradients
    # normalises the weights, so it is IG's trapezoid times n/(n-1)
    model = BasicModel_MultiLayer().eval()
    x = torch.randn(3, 3)
    n = 10
    ref = IntegratedGradients(model).attribute(x, target=0, n_steps=n, method="riemann_trapezoid")
    got = unfiltered_vpg(model).attribute(x, 0.0, 0, None, n, "riemann_trapezoid")
    torch.testing.assert_close(got, ref * n / (n - 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", IG_LIKE)
def test_ig_target_forms_on_2d_outputs(cls):
    model = BasicModel_MultiLayer().eval()
    torch.manual_seed(0)
    x = torch.randn(3, 3)
    m = cls(model)
    ref = m.attribute(x, baselines=0.0, target=1)
    for t in (torch.tensor(1), (1,), [1, 1, 1], torch.tensor([1, 1, 1]), [(1,), (1,), (1,)]):
        torch.testing.assert_close(m.attribute(x, baselines=0.0, target=t), ref)
    per = m.attribute(x, baselines=0.0, target=[0, 1, 1])
    for i, t in enumerate([0, 1, 1]):
        torch.testing.assert_close(per[i], m.attribute(x, baselines=0.0, target=t)[i])


@pytest.mark.parametrize("cls", IG_LIKE)
def test_ig_multidim_output_tuple_targets(cls):
    # Captum's multi-dimensional output pattern: BasicModel_MultiLayer with
    # additional_forward_args=(None, True) returns N x 3 x 2 x 2
    model = BasicModel_MultiLayer().eval()
    torch.manual_seed(0)
    x = torch.randn(2, 3)
    m = cls(model)
    args = (None, True)
    a = m.attribute(x, baselines=0.0, target=(1, 0, 1), additional_forward_args=args,
                    n_steps=50)
    ref = IntegratedGradients(model).attribute(x, target=(1, 0, 1), additional_forward_args=args)
    assert a.shape == x.shape
    if cls is not ValidPathGradients:
        torch.testing.assert_close(a, ref, atol=1e-5, rtol=1e-5)
    b = m.attribute(x, baselines=0.0, target=[(1, 0, 1), (0, 1, 0)], additional_forward_args=args)
    torch.testing.assert_close(b[0], a[0])
    c = m.attribute(x, baselines=0.0, target=(0, 1, 0), additional_forward_args=args)
    torch.testing.assert_close(b[1], c[1])
    # forms that select more than one score per example on a 4-D output are
    # errors (Captum: an AssertionError from inside compute_gradients)
    if cls is IntegratedGradients:
        return
    for bad in (1, torch.tensor([1, 1]), [1, 1], (1, 0)):
        with pytest.raises(ValueError, match="tuple"):
            m.attribute(x, baselines=0.0, target=bad, additional_forward_args=args)


# ------------------------------------------------ target forms, all classes
class Segmenter(nn.Module):
    """A tiny segmentation model: N x 1 x 5 x 5 -> N x 2 x 5 x 5."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(),
                                 nn.Conv2d(3, 2, 1))

    def forward(self, x):
        return self.net(x)


class Pick(nn.Module):
    """One score per example: ``out[i, targets[ex[i]]]``; ``ex`` (the example
    index of each row) comes in through additional_forward_args."""

    def __init__(self, model, targets):
        super().__init__()
        self.model, self.targets = model, targets

    def forward(self, x, ex):
        out = self.model(x)
        return torch.stack([out[(i,) + self.targets[int(e)]] for i, e in enumerate(ex)])


class Ignore(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, ex):
        return self.model(x)


def _explainers():
    small = DMMMEN(n_components=2, n_penalties=1, n_iter=30, burn_in=10)
    return {
        "EG": lambda f: (ExpectedGradients(f), dict(baselines=torch.zeros(2, 1, 5, 5),
                                                    n_samples=4)),
        "DeepPriorEG": lambda f: (DeepPriorExpectedGradients(f, 0.1),
                                  dict(baselines=torch.zeros(2, 1, 5, 5), n_samples=4)),
        "VPG": lambda f: (ValidPathGradients(f), dict(baselines=0.0, n_steps=6)),
        "DMMMEN": lambda f: (DMMMENAttribution(f, small),
                             dict(n_samples=12, random_state=0,
                                  feature_mask=torch.arange(25).view(1, 1, 5, 5) // 5)),
    }


@pytest.mark.parametrize("name", ["EG", "DeepPriorEG", "VPG", "DMMMEN"])
def test_tuple_targets_on_4d_outputs_equal_picked_scalar_output(name):
    seg = Segmenter().eval()
    x = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    make = _explainers()[name]

    def run(f, target):
        m, kw = make(f)
        if name in ("EG", "DeepPriorEG"):
            kw["generator"] = torch.Generator().manual_seed(3)
        return m.attribute(x, target=target, additional_forward_args=torch.arange(2), **kw)

    seg = Ignore(seg)
    got = run(seg, (1, 2, 3))
    want = run(Pick(seg.model, [(1, 2, 3), (1, 2, 3)]), None)
    torch.testing.assert_close(got, want)
    got = run(seg, [(1, 2, 3), (0, 4, 0)])
    want = run(Pick(seg.model, [(1, 2, 3), (0, 4, 0)]), None)
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="tuple"):
        run(seg, 1)
    with pytest.raises(ValueError, match="out of range"):
        run(seg, (1, 2, 5))


def test_callable_baselines_everywhere():
    torch.manual_seed(0)
    model = BasicModel_MultiLayer().eval()
    x = torch.randn(3, 3)
    refs = torch.randn(4, 3)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    for m in (ExpectedGradients(model), DeepPriorExpectedGradients(model, 0.1)):
        a = m.attribute(x, refs, target=0, generator=g())
        torch.testing.assert_close(m.attribute(x, lambda: refs, target=0, generator=g()), a)
        torch.testing.assert_close(m.attribute(x, lambda inp: refs, target=0, generator=g()), a)
    vpg = ValidPathGradients(model)
    a = vpg.attribute(x, x * 0.5, target=0)
    torch.testing.assert_close(vpg.attribute(x, lambda inp: inp * 0.5, target=0), a)
    dmm = DMMMENAttribution(model, DMMMEN(n_components=2, n_penalties=1, n_iter=30, burn_in=10))
    a = dmm.attribute(x, baselines=0.3, target=0, n_samples=40, random_state=0)
    b = dmm.attribute(x, baselines=lambda: 0.3, target=0, n_samples=40, random_state=0)
    torch.testing.assert_close(a, b)


# ----------------------------------------------------------------- NoiseTunnel
@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel_patterns(nt_type):
    torch.manual_seed(0)
    model = BasicModel_MultiLayer().eval()
    x = torch.randn(4, 3)
    cases = [
        (IntegratedGradients(model), dict(baselines=torch.zeros(4, 3), n_steps=10)),
        (unfiltered_vpg(model), dict(baselines=torch.zeros(4, 3), n_steps=10)),
        (ValidPathGradients(model), dict(baselines=0.0, n_steps=10)),
        (ExpectedGradients(model), dict(baselines=torch.zeros(1, 3), n_samples=3)),
        (GradientShap(model), dict(baselines=torch.zeros(1, 3), n_samples=3)),
    ]
    outs = []
    for method, kw in cases:
        seed()
        nt = NoiseTunnel(method)
        a = nt.attribute(x, nt_type=nt_type, nt_samples=4, nt_samples_batch_size=2,
                         stdevs=0.1, target=[0, 1, 1, 0], **kw)
        assert a.shape == x.shape and torch.isfinite(a).all()
        outs.append(a)
    # the same noise draws (torch seed), so unfiltered VPG under NoiseTunnel is IG's
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    # delta through NoiseTunnel: one per noisy example, as for IG
    for method, kw in cases[:3]:
        a, d = NoiseTunnel(method).attribute(x, nt_type=nt_type, nt_samples=3, stdevs=0.1,
                                             target=1, return_convergence_delta=True, **kw)
        assert d.shape == (4 * 3,)


# ------------------------------------------------------------ attribute_future
@pytest.mark.parametrize("make", [
    lambda m: ExpectedGradients(m),
    lambda m: DeepPriorExpectedGradients(m, 0.0),
    lambda m: ValidPathGradients(m),
    lambda m: DMMMENAttribution(m),
    lambda m: BayLime(m),
])
def test_attribute_future_not_implemented(make):
    explainer = make(BasicModel2())
    with pytest.raises(NotImplementedError):
        explainer.attribute_future()


# ------------------------------------------- the path family (issue 27)
from captum.metrics import infidelity  # noqa: E402

from captum_prior.attr import (  # noqa: E402
    IDGI,
    AdversarialGradientIntegration,
    BlurIntegratedGradients,
    GuidedIntegratedGradients,
)

# each: (factory, keyword arguments of attribute besides inputs/target)
PATH_FAMILY = {
    "BlurIG": (BlurIntegratedGradients, dict(n_steps=8, max_sigma=2.0)),
    "GuidedIG": (GuidedIntegratedGradients, dict(baselines=0.0, n_steps=8)),
    "AGI": (AdversarialGradientIntegration,
            dict(n_steps=3, n_classes=2, generator=None, input_range=None)),
    "IDGI-IG": (lambda m: IDGI(IntegratedGradients(m)), dict(baselines=0.0, n_steps=8)),
    "IDGI-BlurIG": (lambda m: IDGI(BlurIntegratedGradients(m)), dict(n_steps=8, max_sigma=2.0)),
    "IDGI-GuidedIG": (lambda m: IDGI(GuidedIntegratedGradients(m)), dict(n_steps=8)),
}


def _family(name, model):
    make, kw = PATH_FAMILY[name]
    kw = dict(kw)
    if "generator" in kw:
        kw["generator"] = torch.Generator().manual_seed(0)
    return make(model), kw


@pytest.mark.parametrize("name", sorted(PATH_FAMILY))
def test_path_family_target_forms_on_2d_outputs(name):
    model = BasicModel_MultiLayer().eval()
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(0))
    m, kw = _family(name, model)
    ref = m.attribute(x, target=1, **_family(name, model)[1])
    for t in (torch.tensor(1), (1,), [1, 1, 1], torch.tensor([1, 1, 1]), [(1,), (1,), (1,)]):
        torch.testing.assert_close(m.attribute(x, target=t, **_family(name, model)[1]), ref)
    per = m.attribute(x, target=[0, 1, 1], **_family(name, model)[1])
    one = m.attribute(x, target=0, **_family(name, model)[1])
    if name != "AGI":  # AGI draws its false classes per batch
        torch.testing.assert_close(per[0], one[0])


@pytest.mark.parametrize("name", sorted(set(PATH_FAMILY) - {"AGI"}))
def test_path_family_multidim_output_tuple_targets(name):
    model = BasicModel_MultiLayer().eval()
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    m, kw = _family(name, model)
    args = (None, True)
    a = m.attribute(x, target=(1, 0, 1), additional_forward_args=args, **kw)
    b = m.attribute(x, target=[(1, 0, 1), (0, 1, 0)], additional_forward_args=args, **kw)
    c = m.attribute(x, target=(0, 1, 0), additional_forward_args=args, **kw)
    torch.testing.assert_close(b[0], a[0])
    torch.testing.assert_close(b[1], c[1])
    with pytest.raises(ValueError, match="tuple"):
        m.attribute(x, target=1, additional_forward_args=args, **kw)


def test_agi_rejects_multidim_outputs():
    model = BasicModel_MultiLayer().eval()
    with pytest.raises(ValueError, match="N x C class scores"):
        AdversarialGradientIntegration(model).attribute(
            torch.randn(2, 3), target=(1, 0, 1), additional_forward_args=(None, True))


@pytest.mark.parametrize("name", sorted(PATH_FAMILY))
def test_path_family_tuple_inputs_and_additional_args(name):
    model = BasicModel_MultiLayer_MultiInput().eval()
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g),
         torch.randn(4, 3, generator=g))
    m, kw = _family(name, model)
    if "baselines" in kw:
        kw["baselines"] = (0.0, torch.zeros(1, 3), torch.zeros(4, 3))
    out = m.attribute(x, target=[0, 1, 1, 0], additional_forward_args=(2,),
                      return_convergence_delta=True, **kw)
    attr, delta = out
    assert isinstance(attr, tuple) and len(attr) == 3
    assert all(a.shape == xi.shape for a, xi in zip(attr, x))
    assert delta.shape == (4,) and torch.isfinite(delta).all()
    _, kw2 = _family(name, model)
    if "baselines" in kw2:
        kw2["baselines"] = kw["baselines"]
    chunked = m.attribute(x, target=[0, 1, 1, 0], additional_forward_args=(2,),
                          internal_batch_size=3, **kw2)
    for u, v in zip(attr, chunked):
        torch.testing.assert_close(u, v, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(PATH_FAMILY))
@pytest.mark.parametrize("nt_type", ["smoothgrad", "vargrad"])
def test_path_family_under_noise_tunnel(name, nt_type):
    model = BasicModel_MultiLayer().eval()
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    m, kw = _family(name, model)
    seed()
    a, d = NoiseTunnel(m).attribute(x, nt_type=nt_type, nt_samples=3, nt_samples_batch_size=2,
                                    stdevs=0.1, target=[0, 1, 1, 0],
                                    return_convergence_delta=True, **kw)
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert d.shape == (4 * 3,)


@pytest.mark.parametrize("name", sorted(PATH_FAMILY))
def test_path_family_with_captum_infidelity(name):
    model = BasicModel_MultiLayer().eval()
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    m, kw = _family(name, model)
    attr = m.attribute(x, target=1, **kw)

    def perturb(inputs):
        noise = torch.randn(inputs.shape, generator=torch.Generator().manual_seed(1)) * 0.05
        return noise, inputs - noise

    inf = infidelity(model, perturb, x, attr, target=1, n_perturb_samples=4)
    assert inf.shape == (4,) and torch.isfinite(inf).all()


@pytest.mark.parametrize("name", sorted(PATH_FAMILY))
def test_path_family_attribute_future_not_implemented(name):
    m, _ = _family(name, BasicModel2())
    with pytest.raises(NotImplementedError):
        m.attribute_future()
