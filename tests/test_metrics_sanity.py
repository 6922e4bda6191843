"""Model-parameter randomisation and random-logit tests (Adebayo et al. 2018)."""

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, Saliency

from captum_prior.data import load_fashion_mnist_sample
from captum_prior.metrics.sanity import (
    model_randomization_test,
    mprt_scores,
    random_logit_test,
    randomizable_layers,
    similarity,
)
from captum_prior.models import load_fashion_cnn

warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")


def sobel_edges(model, inputs, target=None):
    """An 'attribution' that ignores the model: the input's edge magnitude."""
    k = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    gx = F.conv2d(inputs, k, padding=1)
    gy = F.conv2d(inputs, k.transpose(2, 3), padding=1)
    return (gx**2 + gy**2).sqrt()


def _state_bytes(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def cnn_result():
    x, y = load_fashion_mnist_sample(12)
    model = load_fashion_cnn().eval()
    before = _state_bytes(model)
    res = model_randomization_test(
        {"Saliency": Saliency, "IG": IntegratedGradients(model), "edges": sobel_edges},
        model, x, y, attribute_kwargs=None, random_logit=True, n_resamples=500,
    )
    return model, before, res


def test_default_layers_top_down():
    assert randomizable_layers(load_fashion_cnn()) == ["fc", "conv3.0", "conv2.0", "conv1.0"]


def test_similarity_falls_for_gradient_methods(cnn_result):
    _, _, res = cnn_result
    cas = res.similarity["cascading"]
    assert res.layers == ["fc", "conv3.0", "conv2.0", "conv1.0"]
    for meth in ("Saliency", "IG"):
        for m in ("spearman", "ssim", "hog"):
            curve = cas[meth][m].mean(0)
            assert curve.shape == (4,)
            assert curve[-1] < 0.6, (meth, m, curve)  # trained model's map: similarity 1
    # Saliency: rank correlation of |gradient| falls with the cascade and ends near 0
    sal = cas["Saliency"]["spearman_abs"].mean(0)
    assert sal[-1] < sal[0] < 0.5
    assert res.verdict["Saliency"]["status"] == "passes"
    # IG's signed map decorrelates once the classifier is random
    assert abs(cas["IG"]["spearman"].mean(0)[-1]) < 0.2


def test_model_independent_method_is_flagged(cnn_result):
    _, _, res = cnn_result
    assert res.verdict["edges"]["status"] == "fails"
    assert "FAILS" in res.verdict["edges"]["text"]
    for mode in ("cascading", "independent"):
        for m in res.measures:
            np.testing.assert_allclose(res.similarity[mode]["edges"][m], 1.0, atol=1e-9)


def test_user_model_bit_identical(cnn_result):
    model, before, res = cnn_result
    after = model.state_dict()
    assert set(after) == set(before)
    for k in before:
        assert torch.equal(after[k], before[k]), k
    assert not model.training
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    # the randomised maps really came from other weights
    assert not torch.equal(res.attributions["cascading"]["Saliency"][0], res.attributions["cascading"]["Saliency"][-1])


def test_user_model_untouched_on_error():
    x, y = load_fashion_mnist_sample(3)
    model = load_fashion_cnn().eval()
    before = _state_bytes(model)
    calls = []

    def breaks_late(m, inputs, target=None):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return Saliency(m).attribute(inputs, target=target)

    with pytest.raises(RuntimeError, match="boom"):
        model_randomization_test(breaks_late, model, x, y)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_seeded_and_table(cnn_result):
    x, y = load_fashion_mnist_sample(4)
    model = load_fashion_cnn().eval()
    a = model_randomization_test(Saliency, model, x, y, modes="cascading", seed=3, n_resamples=200)
    b = model_randomization_test(Saliency(model), model, x, y, modes="cascading", seed=3, n_resamples=200)
    c = model_randomization_test(Saliency, model, x, y, modes="cascading", seed=4, n_resamples=200)
    for m in a.measures:
        np.testing.assert_array_equal(a.similarity["cascading"]["Saliency"][m], b.similarity["cascading"]["Saliency"][m])
    assert not np.array_equal(a.similarity["cascading"]["Saliency"]["spearman"],
                              c.similarity["cascading"]["Saliency"]["spearman"])
    t = cnn_result[2].table()
    assert "up to conv1.0" in t and t.count("\n") == 1 + 3 * 4
    assert a.n_calls == {"Saliency": 5}
    assert a.verdict["Saliency"]["status"] == "n too small"  # 4 examples < min_examples
    d = cnn_result[2].to_dict()
    assert d["verdict"]["edges"]["status"] == "fails" and d["n_examples"] == 12


def test_random_logit(cnn_result):
    _, _, res = cnn_result
    rl = res.random_logit
    assert (rl.other_target != res.target).all()
    assert rl.summary["edges"]["spearman_abs"]["mean"] == pytest.approx(1.0)
    assert rl.summary["Saliency"]["spearman_abs"]["high"] < 0.9


def test_stochastic_method_same_draws_per_model():
    """A method drawing from torch's global generator gets the same draws for
    every model, so an unrandomised step would reproduce its map exactly."""
    x, y = load_fashion_mnist_sample(3)
    model = load_fashion_cnn().eval()

    def noisy(m, inputs, target=None):
        return Saliency(m).attribute(inputs, target=target) + torch.randn_like(inputs)

    state, np_state = torch.random.get_rng_state(), np.random.get_state()
    res = random_logit_test(noisy, model, x, y, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())  # global generators restored
    assert np.array_equal(np_state[1], np.random.get_state()[1])

    def numpy_noise(m, inputs, target=None):  # ignores the model; draws like GradientShap
        return torch.from_numpy(np.random.rand(*inputs.shape)).float()

    r = mprt_scores(numpy_noise, model, x, y, seed=1)
    np.testing.assert_allclose(r["curve_mprt"].numpy(), 1.0, atol=1e-6)  # same draws for every model
    r0 = mprt_scores(noisy, model, x, y, layers=["fc"], seed=1)
    r1 = mprt_scores(noisy, model, x, y, layers=["fc"], seed=1)
    torch.testing.assert_close(r0["curve_mprt"], r1["curve_mprt"])
    assert r0["curve_mprt"].shape == (3, 1) and r0["mprt"].shape == (3,)
    assert res.similarity["noisy"]["spearman"].shape == (3,)


def test_similarity_measures():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(4, 1, 16, 16, generator=g)
    s = similarity(a, a)
    for m, v in s.items():
        np.testing.assert_allclose(v, 1.0, atol=1e-9, err_msg=m)
    s = similarity(a, -a, ("spearman", "spearman_abs"))
    np.testing.assert_allclose(s["spearman"], -1.0, atol=1e-9)
    np.testing.assert_allclose(s["spearman_abs"], 1.0, atol=1e-9)
    b = torch.rand(4, 1, 16, 16, generator=g)
    assert np.all(similarity(a, b, ("spearman",))["spearman"] < 0.5)
    z = torch.zeros(4, 1, 16, 16)
    np.testing.assert_array_equal(similarity(a, z, ("spearman",))["spearman"], 0.0)
    flat = torch.rand(3, 10, generator=g)
    assert set(similarity(flat, flat)) == {"spearman_abs", "spearman"}


def test_bad_input():
    x, y = load_fashion_mnist_sample(2)
    model = load_fashion_cnn().eval()
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        model_randomization_test(Saliency, lambda t: t, x, y)
    with pytest.raises(TypeError, match="attribution_method"):
        model_randomization_test(42, model, x, y)
    with pytest.raises(ValueError, match="layers: 'nope'"):
        model_randomization_test(Saliency, model, x, y, layers=["nope"])
    with pytest.raises(ValueError, match="unknown modes"):
        model_randomization_test(Saliency, model, x, y, modes=("sideways",))
    with pytest.raises(ValueError, match="measures: unknown measure"):
        model_randomization_test(Saliency, model, x, y, measures=("pearson",))
    with pytest.raises(ValueError, match="target"):
        model_randomization_test(Saliency, model, x, [0, 1, 2])
    with pytest.raises(ValueError, match="ssim"):
        similarity(torch.rand(2, 5), torch.rand(2, 5), ("ssim",))
    with pytest.raises(ValueError, match="NaN"):
        model_randomization_test(lambda m, i, target=None: i * float("nan"), model, x, y)
    with pytest.raises(TypeError, match="inputs must be one tensor"):
        model_randomization_test(Saliency, model, (x, x), y)
    m2 = copy.deepcopy(model)
    assert all(torch.equal(a, b) for a, b in zip(m2.state_dict().values(), model.state_dict().values()))


def test_figure_layout(cnn_result):
    from captum_prior.models.fashion_cnn import FASHION_CLASSES
    from captum_prior.visualization import (
        plot_model_randomization,
        plot_similarity_curves,
    )

    _, _, res = cnn_result
    fig = plot_model_randomization(res, n_examples=2, class_names=FASHION_CLASSES)
    top, bottom = fig.subfigs
    maps = [ax for ax in top.axes if ax.images]
    # 2 examples x 3 methods rows, input + trained + 4 layers columns, plus the colour bar
    assert len(maps) == 2 * 3 * 6
    assert any("per map" in ax.get_ylabel() for ax in top.axes)
    ylabels = [ax.get_ylabel() for ax in top.axes]
    assert any(FASHION_CLASSES[int(res.target[0])] in t for t in ylabels)
    assert len(bottom.axes) == len(res.measures)
    for ax in top.axes:
        for im in ax.images[1:] if ax.images else []:
            assert im.norm.vmin == -1 and im.norm.vmax == 1
    with pytest.raises(ValueError, match="mode"):
        plot_model_randomization(res, mode="sideways")
    fig = plot_similarity_curves(res.layers, {"IG": res.similarity["cascading"]["IG"]["ssim"]}, threshold=0.5)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["trained"] + res.layers
    with pytest.raises(ValueError, match="steps"):
        plot_similarity_curves(["a"], {"IG": np.zeros((2, 3))})


def test_spread_layers_output_first_distinct_and_checked():
    from torch import nn

    from captum_prior.metrics.sanity import randomizable_layers, spread_layers

    net = nn.Sequential(*[nn.Linear(4, 4) for _ in range(8)])
    layers = randomizable_layers(net)
    assert spread_layers(net, 1) == [layers[0]]
    assert spread_layers(net, 2) == [layers[0], layers[4]]  # output layer, then the middle
    for k in range(1, 9):
        got = spread_layers(net, k)
        assert len(set(got)) == k and got[0] == layers[0]
        assert [layers.index(g) for g in got] == sorted(layers.index(g) for g in got)
    for bad in (0, 9, 2.0, True):
        with pytest.raises(ValueError, match="k must be an integer from 1 to 8"):
            spread_layers(net, bad)
