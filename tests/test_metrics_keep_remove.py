"""Tests of captum_prior.metrics.keep_remove (KPM, KNM, KAM, RPM, RNM, RAM)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from captum_prior.metrics import keep_remove
from captum_prior.metrics._masking import inpaint_telea
from captum_prior.metrics.keep_remove import _intlogspace
from captum_prior.models import FashionCNN

NAMES = ("KPM", "KNM", "KAM", "RPM", "RNM", "RAM")


class Counting(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls = 0
        self.rows = 0

    def forward(self, *args):
        self.calls += 1
        self.rows += args[0].shape[0]
        return self.model(*args)


@pytest.fixture(scope="module")
def linear_images():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)
    true_attr = x * model[1].weight.detach()[y].view(5, 3, 8, 8)
    return model, x, y, true_attr


def test_function_is_exported_even_after_submodule_import():
    import captum_prior.metrics.keep_remove  # noqa: F401
    from captum_prior import metrics

    assert callable(metrics.keep_remove) and callable(metrics.insertion_deletion)
    assert callable(metrics.sensitivity_n)


@pytest.mark.parametrize("masker", ["zero", "mean", "blur"])
def test_kpm_of_true_attributions_exceeds_kpm_of_their_negation(linear_images, masker):
    model, x, y, attr = linear_images
    good = keep_remove(model, x, attr, target=y, score="logit", masker=masker, percent=0.05)
    bad = keep_remove(model, x, -attr, target=y, score="logit", masker=masker, percent=0.05)
    for m in ("KPM", "KNM", "RPM", "RNM"):
        assert getattr(good, m).mean() > getattr(bad, m).mean(), m
    assert good.protocol == "image" and good.masker == masker
    # negating the attributions swaps positive and negative orders
    torch.testing.assert_close(bad.KPM, -good.KNM, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(bad.RNM, -good.RPM, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(bad.KAM, good.KAM)


def reference_curve(model, x, attr, y, step, keep, positive, n_interp=100):
    """Naive per-step loop of shap's sequential perturbation, zero masker."""
    c, h, w = x.shape
    u = h * w
    s = attr.sum(0).reshape(-1)
    order = torch.argsort(s if not positive else -s, stable=True)
    elig = int((s > 0).sum()) if positive else int((s < 0).sum())
    masked = torch.ones(u, dtype=torch.bool) if keep else torch.zeros(u, dtype=torch.bool)

    def value():
        img = torch.where(masked.view(1, h, w), torch.zeros_like(x), x)
        with torch.no_grad():
            v = float(model(img[None])[0, y])
        return v if keep else -v

    vals = [value()]
    for k in range(math.ceil(elig / step)):
        idx = order[k * step : min((k + 1) * step, elig)]
        masked[idx] = not keep
        vals.append(value())
    g = np.empty(u + 1)
    g[0] = vals[0]
    for j in range(1, u + 1):
        g[j] = vals[min(math.ceil(j / step), len(vals) - 1)]
    xs = np.linspace(0, 1, n_interp)
    ys = np.interp(xs, np.linspace(0, 1, u + 1), g)
    sign = 1.0 if positive else -1.0
    return float(np.trapezoid(sign * (ys - ys[0]), xs))


def test_matches_a_naive_sequential_perturbation_loop(linear_images):
    model, x, y, attr = linear_images
    res = keep_remove(model, x, attr, target=y, score="logit", masker="zero", percent=0.07)
    step = int(0.07 * 64)
    for i in range(2):
        for name, keep, pos in (("KPM", True, True), ("KNM", True, False),
                                ("RPM", False, True), ("RNM", False, False)):
            ref = reference_curve(model, x[i], attr[i], int(y[i]), step, keep, pos)
            assert getattr(res, name)[i].item() == pytest.approx(ref, abs=1e-4), name


def test_mean_equals_area_of_mean_curve_minus_start(linear_images):
    model, x, _, attr = linear_images
    res = keep_remove(model, x, attr, masker="mean", return_curves=True)  # max logit
    for m in NAMES:
        curve = res.curves[m].double().mean(0)
        sign = -1.0 if m in ("KNM", "RNM") else 1.0
        area = sign * torch.trapezoid(curve - curve[0], res.fractions.double())
        assert getattr(res, m).double().mean().item() == pytest.approx(area.item(), abs=1e-5)


def test_only_same_signed_pixels_are_flipped_and_calls_are_counted(linear_images):
    model, x, _, _ = linear_images
    attr = torch.rand(x.shape, generator=torch.Generator().manual_seed(2))  # all positive
    attr[:, :, :4] = 0.0  # half the pixels carry nothing
    counting = Counting(model)
    res = keep_remove(counting, x, attr, masker="zero", percent=0.1, max_examples_per_batch=9)
    # negative orders flip nothing: flat curves, zero area
    assert (res.KNM == 0).all() and (res.RNM == 0).all()
    step = int(0.1 * 64)
    pos_steps = math.ceil(32 / step)  # only the 32 positive pixels
    abs_steps = math.ceil(64 / step)
    rows = 5 * (2 + 2 * pos_steps + 2 * abs_steps)  # 2 shared starts per image
    assert counting.rows == rows
    assert counting.calls == math.ceil(rows / 9)
    # positive curves go flat after the last positive pixel
    res = keep_remove(model, x, attr, masker="zero", percent=0.1, return_curves=True)
    c = res.curves["KPM"]
    assert torch.allclose(c[:, 51:], c[:, -1:].expand(-1, 49))


def test_batch_composition_and_chunking_do_not_matter():
    torch.manual_seed(0)
    cnn = FashionCNN(width=4).eval()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 1, 28, 28, generator=g)
    a = torch.randn(x.shape, generator=g)
    kw = dict(masker="mean", percent=0.05)
    full = keep_remove(cnn, x, a, **kw)
    small = keep_remove(cnn, x, a, max_examples_per_batch=17, show_progress=True, **kw)
    one = keep_remove(cnn, x[2:], a[2:], **kw)
    for m in NAMES:
        torch.testing.assert_close(getattr(small, m), getattr(full, m), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(getattr(one, m), getattr(full, m)[2:], atol=1e-4, rtol=1e-4)


def test_subset_of_metrics_and_shared_channel_map(linear_images):
    model, x, y, attr = linear_images
    only = keep_remove(model, x, attr.sum(1, keepdim=True), target=y, score="logit",
                       masker="zero", metrics=["RPM"])
    full = keep_remove(model, x, attr, target=y, score="logit", masker="zero")
    assert only.KPM is None and only.RPM is not None
    torch.testing.assert_close(only.RPM, full.RPM)


def test_default_call_uses_telea_inpainting(linear_images):
    """``keep_remove(model, x, attributions)`` with every default runs the
    papers' protocol: OpenCV is a dependency, so Telea needs no extra."""
    model, x, _, attr = linear_images
    res = keep_remove(model, x, attr)
    assert res.masker == "inpaint_telea" and res.protocol == "image"
    assert all(torch.isfinite(getattr(res, m)).all() for m in NAMES)
    with pytest.raises(ValueError, match="masker"):
        keep_remove(model, x, attr, metrics=["KPM"], masker="auto")
    # Telea fills differ from the mean colour, so the numbers differ too
    mean = keep_remove(model, x, attr, metrics=["KPM"], masker="mean")
    assert mean.masker == "mean" and not torch.allclose(mean.KPM, res.KPM)


def test_telea_inpainting_masker(linear_images):
    model, x, _, attr = linear_images
    masked = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    masked[0, :, 2:5, 2:5] = True
    masked[1] = True
    out = inpaint_telea(x[:2], masked)
    assert torch.equal(out[0][~masked[0].expand(3, -1, -1)], x[0][~masked[0].expand(3, -1, -1)])
    assert not torch.allclose(out[0], x[0])
    torch.testing.assert_close(out[1], x[1].mean((1, 2), keepdim=True).expand(3, 8, 8))
    res = keep_remove(model, x, attr, metrics=["KPM", "RAM"], percent=0.1)
    assert res.masker == "inpaint_telea"
    assert torch.isfinite(res.KPM).all() and torch.isfinite(res.RAM).all()


# ----------------------------------------------------------------- tabular


def test_intlogspace_matches_definition():
    c = _intlogspace(100, 11)
    t = np.linspace(0, 1, 11)
    ref = np.unique(np.round(100 * (10**t - 1) / 9).astype(int))
    assert c.tolist() == ref.tolist()
    assert c[0] == 0 and c[-1] == 100


def test_tabular_lundberg_definitions_on_linear_model():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(40, 10, generator=g)
    lin = nn.Linear(10, 1)
    f = lambda z: lin(z)[:, 0]  # noqa: E731
    mean = x.mean(0)
    exact = (x - mean) * lin.weight.detach()[0]  # exact attributions w.r.t. the mean
    good = keep_remove(f, x, exact, return_curves=True)
    bad = keep_remove(f, x, -exact)
    assert good.protocol == "tabular"
    for m in ("KPM", "KNM", "RPM", "RNM"):
        assert good.__getattribute__(m).shape == (40,)
        assert getattr(good, m).mean() > getattr(bad, m).mean(), m
    assert good.KAM.dim() == 0 and good.RAM.dim() == 0
    # keeping every feature reproduces the model exactly: R² = 1 at count M
    assert good.curves["KAM"][-1].item() == pytest.approx(1.0, abs=1e-6)
    assert good.curves["RAM"][0].item() == pytest.approx(0.0, abs=1e-6)
    # exact attributions explain a linear model best: KAM beats random ones
    rnd = keep_remove(f, x, torch.randn(x.shape, generator=g), metrics=["KAM", "RAM"])
    assert good.KAM > rnd.KAM and good.RAM > rnd.RAM
    # KPM by hand for example 0: keep the positively attributed features
    with torch.no_grad():
        counts = _intlogspace(10, 11)
        order = torch.argsort(-exact[0], stable=True)
        n_pos = int((exact[0] >= 0).sum())
        vals = []
        for c in counts.tolist():
            z = mean.clone()
            keep = order[: min(c, n_pos)]
            z[keep] = x[0, keep]
            vals.append(float(f(z[None])))
    ref = np.trapezoid(vals, counts.numpy()) / 10
    assert good.KPM[0].item() == pytest.approx(ref, abs=1e-4)


def test_tabular_labels_and_baselines():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(30, 6, generator=g)
    lin = nn.Linear(6, 2)
    labels = lin(x)[:, 1].detach()
    a = torch.randn(x.shape, generator=g)
    r1 = keep_remove(lin, x, a, target=1, labels=labels, metrics=["KAM"])
    r2 = keep_remove(lin, x, a, target=1, metrics=["KAM"])
    torch.testing.assert_close(r1.KAM, r2.KAM)
    r3 = keep_remove(lin, x, a, target=1, baselines=0.0, metrics=["KPM"])
    r4 = keep_remove(lin, x, a, target=1, baselines=torch.zeros(6), metrics=["KPM"])
    torch.testing.assert_close(r3.KPM, r4.KPM)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(attributions=torch.zeros(2, 3, 8, 7)), "attributions"),
        (dict(attributions=torch.full((2, 3, 8, 8), float("nan"))), "attributions"),
        (dict(metrics=["KPM", "XYZ"]), "metrics"),
        (dict(masker="telea"), "masker"),
        (dict(percent=0.0), "percent"),
        (dict(percent=1.5), "percent"),
        (dict(score="prob"), "score"),
        (dict(protocol="text"), "protocol"),
        (dict(n_interp=1), "n_interp"),
        (dict(max_examples_per_batch=0), "max_examples_per_batch"),
    ],
)
def test_bad_input_raises_naming_the_argument(kwargs, match):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    args = dict(attributions=torch.ones(2, 3, 8, 8), masker="zero")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        keep_remove(model, torch.rand(2, 3, 8, 8), **args)
