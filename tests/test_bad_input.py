"""Bad and borderline input across the public entry points (issue 11).

Each case asserts one of three outcomes: a ``ValueError``/``TypeError`` whose
message names the argument (or, for the model's own outputs, the model and
the example), a documented warning of a category the package exports, or a
correct result (e.g. an empty result of the right shape for an empty batch).
Every method is called with keyword arguments after ``inputs``/``baselines``.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict

import numpy as np
import pytest
import torch
from torch import nn

from captum_prior import (
    FileFormatError,
    InputRangeWarning,
    ModelModeWarning,
    ModelOutputError,
    NotFittedError,
)
from captum_prior.attr import (
    IDGI,
    AdversarialGradientIntegration,
    BayLime,
    BlurIntegratedGradients,
    DeepPriorExpectedGradients,
    DMMMENAttribution,
    ExpectedGradients,
    GuidedIntegratedGradients,
    OptimizedBaseline,
    ValidPathGradients,
)
from captum_prior.metrics import diff_id, insertion_deletion, keep_remove, sensitivity_n
from captum_prior.metrics.road import road
from captum_prior.models import FashionCNN
from captum_prior.priors import BGMMPrior, MaskPrior, MGMPrior
from captum_prior.proxy import DMMMEN, JointGaussianMixture
from captum_prior.training import AttributionPriorTrainer, training_attributions

N, H = 2, 28


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return FashionCNN(width=4).eval()


class NaNModel(nn.Module):
    """A CNN whose logits are NaN (e.g. weights that diverged)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = cnn()
        self.conv = self.inner.conv3  # for the priors' default layer

    def forward(self, x):
        return self.inner(x) * float("nan")


def images(n: int = N, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(n, 1, H, H, generator=torch.Generator().manual_seed(n)).to(dtype)


def refs() -> torch.Tensor:
    return torch.rand(3, 1, H, H, generator=torch.Generator().manual_seed(9))


def patches() -> torch.Tensor:
    return (torch.arange(H).view(-1, 1) // 14 * 2 + torch.arange(H).view(1, -1) // 14).view(1, 1, H, H)


def tgt(x: Any) -> Any:
    return 1


# ------------------------------------------------------ runners: one per entry point
def run_eg(model, x, **kw):
    return ExpectedGradients(model).attribute(x, kw.pop("baselines", refs()), target=kw.pop("target", 1),
                                              n_samples=2, **kw)


def run_dpeg(model, x, **kw):
    dp = DeepPriorExpectedGradients(model, MaskPrior(torch.ones(H, H), scale=0.1))
    return dp.attribute(x, kw.pop("baselines", refs()), target=kw.pop("target", 1), n_samples=2, **kw)


def run_vpg(model, x, **kw):
    b = kw.pop("baselines", refs()[:1])
    return ValidPathGradients(model).attribute(x, b, target=kw.pop("target", 1), n_steps=3, **kw)


def run_ob(model, x, **kw):
    kw.pop("target", None)
    return OptimizedBaseline(model, max_iter=2).compute(x, **kw)


def run_bay_lime(model, x, **kw):
    return BayLime(model, random_state=0).attribute(
        x, target=kw.pop("target", 1), feature_mask=patches(), n_samples=8, **kw)


def run_dmm_attr(model, x, **kw):
    est = DMMMEN(n_components=2, n_iter=20, random_state=0)
    return DMMMENAttribution(model, est).attribute(
        x, target=kw.pop("target", 1), feature_mask=patches(), n_samples=16, random_state=0, **kw)


def attr_of(x):
    return torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) if isinstance(x, torch.Tensor) else x


def run_ins_del(model, x, **kw):
    return insertion_deletion(model, x, attr_of(x), target=kw.pop("target", 1), n_steps=4, **kw)


def run_diff_id(model, x, **kw):
    return diff_id(model, x, attr_of(x), target=kw.pop("target", 1), ratios=(0.5,), **kw)


def run_keep_remove(model, x, **kw):
    return keep_remove(model, x, attr_of(x), target=kw.pop("target", 1), masker="mean", percent=0.25,
                       score="logit", **kw)


def run_road(model, x, **kw):  # ROAD (issue 26)
    return road(model, x, attr_of(x), target=kw.pop("target", 1), fractions=(0.25, 0.5),
                generator=torch.Generator().manual_seed(0), **kw)


def run_sens_n(model, x, **kw):
    return sensitivity_n(model, x, attr_of(x), target=kw.pop("target", 1), fractions=(0.5,), n_subsets=3,
                         random_state=0, **kw)


def run_mgm(model, x, **kw):
    return MGMPrior(model, layer="conv3" if isinstance(model, FashionCNN) else None)(x, target=kw.pop("target", None))


def run_bgmm(model, x, **kw):
    layer = "conv3" if isinstance(model, FashionCNN) else None
    return BGMMPrior(model, layer=layer, reduction="evidence", n_components=2, random_state=0)(
        x, target=kw.pop("target", 1))


# the path family (issue 27)
def run_blur_ig(model, x, **kw):
    return BlurIntegratedGradients(model).attribute(x, target=kw.pop("target", 1), n_steps=3,
                                                    max_sigma=2.0, **kw)


def run_guided_ig(model, x, **kw):
    b = kw.pop("baselines", 0.0)
    return GuidedIntegratedGradients(model).attribute(x, b, target=kw.pop("target", 1),
                                                      n_steps=3, **kw)


def run_agi(model, x, **kw):
    return AdversarialGradientIntegration(model).attribute(
        x, target=kw.pop("target", 1), n_steps=2, n_classes=2,
        generator=torch.Generator().manual_seed(0), **kw)


def run_idgi(model, x, **kw):
    from captum.attr import IntegratedGradients

    b = kw.pop("baselines", 0.0)
    return IDGI(IntegratedGradients(model)).attribute(x, b, target=kw.pop("target", 1),
                                                      n_steps=3, **kw)


def run_train_attr(model, x, **kw):
    y = torch.ones(x.shape[0], dtype=torch.long) if isinstance(x, torch.Tensor) else None
    return training_attributions(model, x, kw.pop("target", y), refs(), n_samples=1)


MODEL_RUNNERS: Dict[str, Callable] = {
    "ExpectedGradients": run_eg,
    "DeepPriorExpectedGradients": run_dpeg,
    "ValidPathGradients": run_vpg,
    "OptimizedBaseline": run_ob,
    "BayLime": run_bay_lime,
    "DMMMENAttribution": run_dmm_attr,
    "insertion_deletion": run_ins_del,
    "diff_id": run_diff_id,
    "keep_remove": run_keep_remove,
    "road": run_road,
    "sensitivity_n": run_sens_n,
    "MGMPrior": run_mgm,
    "BGMMPrior": run_bgmm,
    "training_attributions": run_train_attr,
    "BlurIntegratedGradients": run_blur_ig,
    "GuidedIntegratedGradients": run_guided_ig,
    "AdversarialGradientIntegration": run_agi,
    "IDGI": run_idgi,
}
# entry points whose call takes a Captum target
TARGETED = [k for k in MODEL_RUNNERS if k not in ("OptimizedBaseline", "MGMPrior")]


def results(out: Any):
    """Every tensor of a result (attributions, deltas, metric fields)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [v for v in out.values() if isinstance(v, torch.Tensor)]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in results(o)]
    return []


# ------------------------------------------------------------------ the matrix
@pytest.mark.parametrize("name", sorted(MODEL_RUNNERS))
def test_nan_model_output_raises_naming_model_and_example(name):
    with pytest.raises(ModelOutputError, match=r"NaNModel.*example \d"):
        MODEL_RUNNERS[name](NaNModel(), images())


@pytest.mark.parametrize("name", sorted(MODEL_RUNNERS))
def test_nan_in_inputs_names_the_argument(name):
    x = images()
    x[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="inputs|x"):
        MODEL_RUNNERS[name](cnn(), x)


@pytest.mark.parametrize("name", sorted(MODEL_RUNNERS))
def test_integer_inputs_rejected_with_the_fix(name):
    x = (images() * 255).to(torch.uint8)
    with pytest.raises(TypeError, match=r"inputs.*\.float\(\) / 255"):
        MODEL_RUNNERS[name](cnn(), x)


@pytest.mark.parametrize("name", sorted(MODEL_RUNNERS))
def test_float64_inputs_clear_type_error_or_result(name):
    x = images(dtype=torch.float64)
    try:
        out = MODEL_RUNNERS[name](cnn(), x)
    except TypeError as err:
        assert "inputs" in str(err) and "float" in str(err)
    else:
        assert all(torch.isfinite(t).all() for t in results(out))


@pytest.mark.parametrize("name", sorted(MODEL_RUNNERS))
def test_missing_channel_dimension_names_inputs(name):
    x = images()[:, 0]  # N x H x W
    with pytest.raises((ValueError, TypeError), match="inputs"):
        MODEL_RUNNERS[name](cnn(), x)


@pytest.mark.parametrize("name", sorted(MODEL_RUNNERS))
def test_not_a_tensor_names_inputs(name):
    with pytest.raises((TypeError, ValueError), match="inputs"):
        MODEL_RUNNERS[name](cnn(), images().tolist())


@pytest.mark.parametrize("name", sorted(TARGETED))
def test_target_out_of_range_names_target(name):
    with pytest.raises(ValueError, match="target|y holds"):
        MODEL_RUNNERS[name](cnn(), images(), target=10 if name != "training_attributions" else torch.tensor([0, 10]))


# training runs the model in train mode on purpose; the priors read their
# features in eval mode (and restore the mode), so neither warns
WARN_MODE = sorted(set(MODEL_RUNNERS) - {"training_attributions", "MGMPrior", "BGMMPrior"})


@pytest.mark.parametrize("name", WARN_MODE)
def test_train_mode_model_warns_and_mode_is_unchanged(name):
    model = cnn().train()
    with pytest.warns(ModelModeWarning, match=r"model\.eval\(\)"):
        MODEL_RUNNERS[name](model, images())
    assert model.training and all(m.training for m in model.modules())


# OptimizedBaseline raises instead (its clip pins the baselines; see below)
@pytest.mark.parametrize("name", sorted(set(MODEL_RUNNERS) - {"MGMPrior", "BGMMPrior", "OptimizedBaseline"}))
def test_0_255_images_warn_for_the_bundled_model(name):
    x = images() * 255
    with pytest.warns(InputRangeWarning, match="255"):
        try:
            MODEL_RUNNERS[name](cnn(), x)
        except (ValueError, ModelOutputError):
            pass  # what happens next is secondary; the warning came first


# Empty batches flow through the shared helper (one empty chunk); the priors
# and DMMMENAttribution, which loop over examples before any model call,
# return the empty result themselves.
EMPTY_OK = sorted(MODEL_RUNNERS)


@pytest.mark.parametrize("name", EMPTY_OK)
def test_empty_batch_gives_an_empty_result(name):
    x = images(0)
    out = MODEL_RUNNERS[name](cnn(), x)
    ts = results(out)
    assert ts, "an empty batch must return (empty) tensors"
    first = ts[0]
    if name == "OptimizedBaseline":  # B x N x ...: one baseline per sigma and example
        first = first[0]
    assert first.shape[0] == 0
    if name in ("ExpectedGradients", "DeepPriorExpectedGradients", "ValidPathGradients",
                "OptimizedBaseline", "BayLime", "DMMMENAttribution", "training_attributions",
                "MGMPrior", "BGMMPrior"):
        assert tuple(first.shape[1:]) in ((1, H, H),)


def test_first_offending_example_is_named():
    """The shared helper maps the offending row back to the user's example."""

    class NaNForExample2(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            out = self.lin(x)
            return torch.where(x[:, :1] > 0, torch.full_like(out, float("nan")), out)

    x = torch.zeros(4, 4)
    x[2, 0] = 10.0  # only example 2's rows are positive
    with pytest.raises(ModelOutputError, match="NaNForExample2.*example 2"):
        ExpectedGradients(NaNForExample2()).attribute(x, torch.zeros(1, 4), target=0, n_samples=2)
    with pytest.raises(ModelOutputError, match="example 2"):
        insertion_deletion(NaNForExample2(), x, torch.ones(4, 4), target=0, n_steps=2, score="logit")


def test_nan_gradient_is_caught():
    class SqrtAtZero(nn.Module):
        def forward(self, x):
            return x.abs().sqrt().sum(1, keepdim=True)  # d/dx sqrt(|x|) = inf at 0

    with pytest.raises(ModelOutputError, match="gradient.*example"):
        ExpectedGradients(SqrtAtZero()).attribute(torch.zeros(2, 3), torch.zeros(1, 3), n_samples=2)


@pytest.mark.parametrize("name", ["ExpectedGradients", "keep_remove", "insertion_deletion"])
def test_inf_model_output_raises(name):
    class InfModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = cnn()

        def forward(self, x):
            return self.inner(x) + float("inf")

    with pytest.raises(ModelOutputError, match="InfModel"):
        MODEL_RUNNERS[name](InfModel(), images())


# ------------------------------------------------------------ baselines, options
@pytest.mark.parametrize("name", ["ExpectedGradients", "DeepPriorExpectedGradients", "ValidPathGradients",
                                  "GuidedIntegratedGradients", "IDGI"])
@pytest.mark.parametrize(
    "baselines, error, match",
    [
        (torch.rand(3, 1, 27, 27), ValueError, "baselines"),
        (torch.full((3, 1, H, H), float("nan")), ValueError, "baselines"),
        (torch.zeros(1, H, H, dtype=torch.uint8), TypeError, "baselines.*float"),
        ("zeros", TypeError, "baselines"),
    ],
    ids=["shape", "nan", "uint8", "str"],
)
def test_bad_baselines_name_the_argument(name, baselines, error, match):
    with pytest.raises(error, match=match):
        MODEL_RUNNERS[name](cnn(), images(), baselines=baselines)


def test_missing_channel_blames_the_inputs_not_the_baselines():
    with pytest.raises(ValueError, match=r"inputs may lack .*unsqueeze\(1\)"):
        run_eg(cnn(), images()[:, 0])


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: ExpectedGradients(cnn()).attribute(images(), refs(), target=1, n_samples=0), ValueError, "n_samples"),
        (lambda: ExpectedGradients(cnn()).attribute(images(), refs(), target=1, n_samples=2.5), TypeError, "n_samples"),
        (lambda: ExpectedGradients(cnn()).attribute(images(), refs(), target=1, n_samples=2,
                                                    internal_batch_size=0), ValueError, "internal_batch_size"),
        (lambda: ExpectedGradients(cnn()).attribute(images(), refs(), target=[1], n_samples=2), ValueError, "target"),
        (lambda: ExpectedGradients(cnn()).attribute(images(), refs(), target=1.0, n_samples=2), TypeError, "target"),
        (lambda: ExpectedGradients(cnn()).attribute(images(), refs(), target=None, n_samples=2), ValueError, "target"),
        (lambda: DeepPriorExpectedGradients(cnn(), "mgm"), TypeError, "prior"),
        (lambda: DeepPriorExpectedGradients(cnn(), 0.1, variant="code"), ValueError, "variant"),
        (lambda: OptimizedBaseline(cnn(), variant="l2"), ValueError, "variant"),
        (lambda: OptimizedBaseline(cnn(), clip=(1.0, 0.0)), ValueError, "clip"),
        (lambda: OptimizedBaseline(cnn(), max_iter=0), ValueError, "max_iter"),
        (lambda: OptimizedBaseline(cnn(), sigmas=()), ValueError, "sigmas"),
        (lambda: insertion_deletion(cnn(), images(), images(), target=1, mode="all"), ValueError, "mode"),
        (lambda: insertion_deletion(cnn(), images(), images(), target=1, score="prob"), ValueError, "score"),
        (lambda: insertion_deletion(cnn(), images(), images()[:1], target=1), ValueError, "attributions"),
        (lambda: keep_remove(cnn(), images(), images(), target=1, masker="telea"), ValueError, "masker"),
        (lambda: keep_remove(cnn(), images(), images(), target=1, masker="mean", metrics=["KPX"]), ValueError, "metrics"),
        (lambda: keep_remove(cnn(), images(), images(), target=1, masker="mean", percent=0), ValueError, "percent"),
        (lambda: road(cnn(), images(), images(), target=1, fractions=(1.0,)), ValueError, "fractions"),
        (lambda: road(cnn(), images(), images(), target=1, order="all"), ValueError, "order"),
        (lambda: road(cnn(), images(), images(), target=1, noise=-1.0), ValueError, "noise"),
        (lambda: road(cnn(), images(), images(), target=(1, 0)), ValueError, "target"),
        (lambda: sensitivity_n(cnn(), images(), images(), target=1, fractions=(1.5,)), ValueError, "fractions"),
        (lambda: sensitivity_n(cnn(), images(), images(), target=1, sampling="random"), ValueError, "sampling"),
        (lambda: diff_id(cnn(), images(), images(), target=1, ratios=(0.0,)), ValueError, "ratios"),
        (lambda: BayLime(cnn()).attribute(images(), target=1, n_samples=1), ValueError, "n_samples"),
        (lambda: BayLime(cnn()).attribute(images(), target=1, n_samples=4, perturbations_per_eval=0), ValueError,
         "perturbations_per_eval"),
        (lambda: BayLime(cnn()).attribute(images(), target=1, n_samples=4, credible_level=1.5), ValueError,
         "credible_level"),
        (lambda: BayLime(cnn(), noise_precision=-1.0), ValueError, "noise_precision"),
        (lambda: MGMPrior(cnn(), variant="x"), ValueError, "variant"),
        (lambda: BGMMPrior(cnn(), reduction="x"), ValueError, "reduction"),
        (lambda: BGMMPrior(cnn(), n_components=0), ValueError, "n_components"),
        (lambda: MGMPrior(cnn(), layer="nope"), ValueError, "layer"),
        (lambda: DMMMEN(n_components=0).fit(np.zeros((5, 2)), np.zeros(5)), ValueError, "n_components"),
        (lambda: JointGaussianMixture(n_lower=0).fit(np.zeros((5, 1, 2)), np.zeros((5, 2))), ValueError, "n_lower"),
        (lambda: JointGaussianMixture(variant="fast").fit(np.zeros((5, 1, 2)), np.zeros((5, 2))), ValueError, "variant"),
        # numbers given as strings, or a bare number where a sequence is needed
        (lambda: diff_id(cnn(), images(), images(), target=1, ratios="0.5"), TypeError, r"ratios.*\(0\.5,\)"),
        (lambda: diff_id(cnn(), images(), images(), target=1, ratios=("0.5",)), TypeError, r"ratios\[0\]"),
        (lambda: sensitivity_n(cnn(), images(), images(), target=1, fractions="0.5"), TypeError, "fractions"),
        (lambda: sensitivity_n(cnn(), images(), images(), target=1, fractions=0.5), TypeError, "fractions"),
        (lambda: keep_remove(cnn(), images(), images(), target=1, masker="mean", blur_kernel_size=-5), ValueError,
         "blur_kernel_size"),
        (lambda: keep_remove(cnn(), images(), images(), target=1, masker="mean", n_counts="11"), TypeError,
         "n_counts"),
        (lambda: BayLime(cnn(), prior_mean=float("nan")), ValueError, "prior_mean"),
        (lambda: BayLime(cnn(), prior_precision=torch.zeros(3)), ValueError, "prior_precision"),
        (lambda: FashionCNN(width=0), ValueError, "width"),
        (lambda: FashionCNN(dropout=1.0), ValueError, "dropout"),
        (lambda: cnn()(torch.rand(2, 3, H, H)), ValueError, "inputs.*N x 1 x 28 x 28"),
        (lambda: AttributionPriorTrainer(cnn(), torch.optim.SGD(cnn().parameters(), lr=0.1), prior="mgm"),
         TypeError, "prior"),
        (lambda: AttributionPriorTrainer(cnn(), torch.optim.SGD(cnn().parameters(), lr=0.1), generator=0),
         TypeError, "generator"),
        (lambda: _trainer().fit([images()]), ValueError, r"\(x, y\) pairs"),
        (lambda: _trainer().fit(3), TypeError, "batches"),
    ],
)
def test_options_are_validated_where_given(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -------------------------------------------------------------------- masks
@pytest.mark.parametrize(
    "mask, expected_max",
    [
        (torch.ones(H, H, dtype=torch.bool), 1.0),
        (torch.ones(H, H, dtype=torch.long), 1.0),
        (torch.full((H, H), 0.5), 0.5),
        (torch.full((H, H), 255, dtype=torch.uint8), 1.0),
        (np.ones((H, H), dtype=np.uint8), 1.0),
    ],
    ids=["bool", "int01", "float01", "uint8_255", "numpy"],
)
def test_valid_masks(mask, expected_max):
    p = MaskPrior(mask)(images())
    assert p.shape[1:] == (1, H, H) and float(p.max()) == pytest.approx(expected_max)


@pytest.mark.parametrize(
    "mask, error",
    [
        (torch.full((H, H), 2, dtype=torch.long), ValueError),  # {0, 2}: was silently / 255
        (torch.full((H, H), 2, dtype=torch.uint8), ValueError),
        (torch.full((H, H), 1.5), ValueError),
        (torch.full((H, H), -0.5), ValueError),
        (torch.full((H, H), float("nan")), ValueError),
        (torch.full((H, H), 300.0), ValueError),
        ([[0, 1], [1, 0]], TypeError),
        (torch.ones(1, 1, 1, H, H), ValueError),
    ],
    ids=["int02", "uint8_2", "float1.5", "negative", "nan", "300", "list", "5d"],
)
def test_invalid_masks_are_errors(mask, error):
    with pytest.raises(error, match="masks"):
        MaskPrior(mask)


# ------------------------------------------------------------- estimators
@pytest.fixture(scope="module")
def jgmm_data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 2, 3, generator=g, dtype=torch.float64)
    Y = torch.randn(60, 2, generator=g, dtype=torch.float64)
    return X, Y


@pytest.fixture(scope="module")
def fitted_jgmm(jgmm_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return JointGaussianMixture(n_lower=2, n_higher=2, max_iter=3, random_state=0).fit(*jgmm_data)


@pytest.fixture(scope="module")
def fitted_dmm():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([1.0, -1.0, 0.0]) + 0.1 * rng.normal(size=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DMMMEN(n_components=2, n_iter=20, random_state=0).fit(X, y), X, y


def _nan(a):
    a = a.clone() if isinstance(a, torch.Tensor) else a.copy()
    a[0] = float("nan")
    return a


@pytest.mark.parametrize(
    "args, error, match",
    [
        (lambda X, Y: (_nan(X), Y), ValueError, "X"),
        (lambda X, Y: (X, _nan(Y)), ValueError, "Y"),
        (lambda X, Y: (X[:0], Y[:0]), ValueError, "X"),
        (lambda X, Y: (X, Y[:10]), ValueError, "Y|samples|rows"),
        (lambda X, Y: ("X", Y), (TypeError, ValueError), "X"),
        (lambda X, Y: (X * 1e200, Y), ValueError, "X has values as large as .*Rescale X"),
        (lambda X, Y: (X, Y * 1e300), ValueError, "Y has values as large as .*Rescale Y"),
    ],
    ids=["nan_X", "nan_Y", "empty", "length", "str", "huge_X", "huge_Y"],
)
def test_jgmm_fit_bad_input(jgmm_data, args, error, match):
    with pytest.raises(error, match=match):
        JointGaussianMixture(n_lower=2, n_higher=2, max_iter=2, random_state=0).fit(*args(*jgmm_data))


def test_jgmm_unfitted_and_wrong_width(fitted_jgmm, jgmm_data):
    with pytest.raises(NotFittedError):
        JointGaussianMixture().predict_proba(jgmm_data[0])
    with pytest.raises(ValueError, match="X|features"):
        fitted_jgmm.predict_proba(jgmm_data[0][:, :, :2])
    with pytest.raises(ValueError, match="X"):
        fitted_jgmm.predict_proba(_nan(jgmm_data[0]))


@pytest.mark.parametrize(
    "args, error, match",
    [
        (lambda X, y: (_nan(X), y), ValueError, "X"),
        (lambda X, y: (X, _nan(y)), ValueError, "y"),
        (lambda X, y: (X[:0], y[:0]), ValueError, "X|sample"),
        (lambda X, y: (X, y[:5]), ValueError, "y"),
        (lambda X, y: (X * 1e200, y), ValueError, "X has values as large as .*Rescale X"),
        (lambda X, y: (X, y * 1e300), ValueError, "y has values as large as .*Rescale y"),
    ],
    ids=["nan_X", "nan_y", "empty", "length", "huge_X", "huge_y"],
)
def test_dmm_men_fit_bad_input(fitted_dmm, args, error, match):
    _, X, y = fitted_dmm
    with pytest.raises(error, match=match):
        DMMMEN(n_components=2, n_iter=5, random_state=0).fit(*args(X, y))


def test_dmm_men_unfitted_and_wrong_width(fitted_dmm):
    est, X, _ = fitted_dmm
    with pytest.raises(NotFittedError):
        DMMMEN().predict(X)
    with pytest.raises(ValueError, match="X|features"):
        est.predict(X[:, :2])


# ------------------------------------------------------------------ files
def _jgmm_save(est, path):
    est.save(path)


CORRUPTIONS = {
    "truncated": lambda b: b[: len(b) // 2],
    "empty": lambda b: b"",
    "garbage_header": lambda b: b[:8] + b"{not json" + b[17:],
    "random_bytes": lambda b: bytes(range(256)) * 4,
}


@pytest.mark.parametrize("kind", ["jgmm", "dmm"])
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupted_files_raise_file_format_error_naming_the_file(tmp_path, fitted_jgmm, fitted_dmm, kind, corruption):
    est, cls = (fitted_jgmm, JointGaussianMixture) if kind == "jgmm" else (fitted_dmm[0], DMMMEN)
    path = tmp_path / f"{kind}.safetensors"
    est.save(path)
    path.write_bytes(CORRUPTIONS[corruption](path.read_bytes()))
    with pytest.raises(FileFormatError, match=str(path.name)):
        cls.load(path)


def _rewrite(path, kind, version, tensors, meta):
    from captum_prior._serialization import save_state

    save_state(path, kind, version, tensors, meta)


@pytest.mark.parametrize("kind", ["jgmm", "dmm"])
@pytest.mark.parametrize("edit", ["wrong_kind", "future_version", "nan_param", "bad_shape", "missing_tensor",
                                  "missing_meta", "wrong_meta_type"])
def test_invalid_content_raises_file_format_error(tmp_path, fitted_jgmm, fitted_dmm, kind, edit):
    from captum_prior._serialization import load_state

    est, cls, name = ((fitted_jgmm, JointGaussianMixture, "JointGaussianMixture") if kind == "jgmm"
                      else (fitted_dmm[0], DMMMEN, "DMMMEN"))
    path = tmp_path / "m.safetensors"
    est.save(path)
    from captum_prior.proxy import dmm_men, jgmm

    version = (dmm_men if kind == "dmm" else jgmm)._FORMAT_VERSION
    tensors, meta = load_state(path, name, (version,))
    first = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    if edit == "wrong_kind":
        name = "DMMMEN" if kind == "jgmm" else "JointGaussianMixture"
    elif edit == "future_version":
        version = 99
    elif edit == "nan_param":
        tensors[first] = _nan(tensors[first])
    elif edit == "bad_shape":
        tensors[first] = torch.cat([tensors[first], tensors[first]])
    elif edit == "missing_tensor":
        del tensors[first]
    elif edit == "missing_meta":
        meta = {k: v for k, v in meta.items() if k != "params"}
    elif edit == "wrong_meta_type":
        meta["params"] = "not a dict"
    _rewrite(path, name, version, tensors, meta)
    with pytest.raises(FileFormatError, match="m.safetensors"):
        cls.load(path)


def test_loading_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        DMMMEN.load(tmp_path / "nowhere.safetensors")


# ------------------------------------------------------------------ training
def _trainer(**kw):
    model = cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return AttributionPriorTrainer(model, opt, lam=0.0, **kw)


@pytest.mark.parametrize(
    "x, y, error, match",
    [
        (lambda: _nan(images()), lambda: torch.tensor([0, 1]), ValueError, "x"),
        (lambda: images(0), lambda: torch.zeros(0, dtype=torch.long), ValueError, "x"),
        (lambda: (images() * 255).to(torch.uint8), lambda: torch.tensor([0, 1]), TypeError, "x"),
        (lambda: images(), lambda: torch.tensor([0.0, 1.0]), TypeError, "y"),
        (lambda: images(), lambda: torch.tensor([0, 1, 2]), ValueError, "y"),
        (lambda: images(), lambda: torch.tensor([0, 10]), ValueError, "y"),
        (lambda: images(), lambda: [0, 1], TypeError, "y"),
    ],
    ids=["nan_x", "empty", "uint8", "float_y", "y_length", "y_range", "y_list"],
)
def test_trainer_rejects_bad_batches_before_the_model_runs(x, y, error, match):
    t = _trainer()
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    with pytest.raises(error, match=match):
        t.step(x(), y())
    assert all(torch.equal(before[k], v) for k, v in t.model.state_dict().items())


def test_trainer_options():
    with pytest.raises(ValueError, match="on_nonfinite"):
        _trainer(on_nonfinite="ignore")
    with pytest.raises(ValueError, match="penalty"):
        AttributionPriorTrainer(cnn(), torch.optim.SGD(cnn().parameters(), lr=0.1), penalty="l1")
    with pytest.raises(TypeError, match="optimizer"):
        AttributionPriorTrainer(cnn(), "sgd")


# ============================================================ issue 28
# The last silent wrong results, the unclear errors of a 419-input matrix,
# and warnings that must fold under Python's default filter.

from captum_prior.models import load_fashion_cnn  # noqa: E402
from captum_prior.models.efficientnet import load_efficientnet_lite0  # noqa: E402
from captum_prior.proxy import JGMMExplainer  # noqa: E402


# ---------------------------------------------------- silent results (issue 28)
def test_optimized_baseline_rejects_inputs_far_outside_clip():
    """0..255 images with clip=(0, 1) used to give baselines pinned at 1."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(H * H, 3)).eval()  # range unknown to the project
    with pytest.raises(ValueError, match=r"inputs has values in \[.*255\].*clip.*divide them by 255"):
        OptimizedBaseline(model, max_iter=1).compute(images() * 255)
    with pytest.raises(ValueError, match="clip"):
        OptimizedBaseline(cnn(), max_iter=1).compute(images() * 2 - 1)  # [-1, 1] data, default clip
    # in range, or a clip that fits the data, or no clip: a result inside the range
    b = OptimizedBaseline(model, max_iter=1, clip=(0.0, 255.0), delta=0.05 * 255).compute(images() * 255)
    assert 0.0 <= float(b.min()) and float(b.max()) <= 255.0 and float(b.max()) > 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputRangeWarning)
        OptimizedBaseline(model, max_iter=1).compute(images())
        OptimizedBaseline(model, max_iter=1, clip=None).compute(images() * 255)


def test_jgmm_constant_feature_with_reg_covar_0_is_an_error_not_nan(jgmm_data):
    X, Y = jgmm_data
    Xc = X.clone()
    Xc[:, :, 1] = 1.0
    with pytest.raises(ValueError, match=r"X has 1 constant feature.*columns \[1\].*reg_covar"):
        JointGaussianMixture(n_lower=2, n_higher=2, max_iter=3, reg_covar=0.0, random_state=0).fit(Xc, Y)
    Yc = Y.clone()
    Yc[:, 0] = 3.0
    with pytest.raises(ValueError, match="Y has 1 constant feature"):
        JointGaussianMixture(n_lower=2, n_higher=2, max_iter=3, reg_covar=0.0, random_state=0).fit(X, Yc)
    # repeated rows (no constant column) collapse a component: caught after EM
    Xr = X[:3].repeat(20, 1, 1)
    with pytest.raises(ValueError, match="broke down.*reg_covar"):
        JointGaussianMixture(n_lower=4, n_higher=2, max_iter=5, reg_covar=0.0, random_state=0).fit(Xr, Y)
    # the default reg_covar handles a constant feature: finite probabilities
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = JointGaussianMixture(n_lower=2, n_higher=2, max_iter=3, random_state=0).fit(Xc, Y).predict_proba(Xc)
    assert torch.isfinite(p).all() and torch.allclose(p.sum(1), torch.ones(len(p), dtype=p.dtype))


@pytest.mark.parametrize("penalty", ["total_variation_penalty", "gini_penalty"])
@pytest.mark.parametrize(
    "attributions, error, match",
    [
        (torch.full((2, 1, 4, 4), float("nan")), ValueError, "attributions contains NaN"),
        (torch.zeros(0, 1, 4, 4), ValueError, "attributions .*empty batch"),
        (torch.ones(2, 1, 4, 4, dtype=torch.long), TypeError, r"attributions.*\.float\(\)"),
        ([[0.0]], TypeError, "attributions"),
    ],
    ids=["nan", "empty", "int", "list"],
)
def test_penalties_reject_what_would_give_a_nan_loss(penalty, attributions, error, match):
    from captum_prior import training

    with pytest.raises(error, match=match):
        getattr(training, penalty)(attributions)


def test_attribution_grid_rejects_mismatched_sizes_and_nan_maps(tmp_path):
    from captum_prior.visualization import attribution_grid, plot_attributions

    imgs = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="images are 8 x 8 but the attribution maps are 4 x 8"):
        attribution_grid(imgs, {"EG": torch.rand(2, 1, 4, 8)}, tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"attributions\['IG'\] maps are 4 x 4 but attributions\['EG'\]"):
        attribution_grid(None, {"EG": torch.rand(2, 1, 8, 8), "IG": torch.rand(2, 1, 4, 4)}, tmp_path / "a.png")
    nan_maps = torch.rand(2, 1, 8, 8)
    nan_maps[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"attributions\['EG'\] contains NaN"):
        attribution_grid(imgs, {"EG": nan_maps}, tmp_path / "a.png")
    with pytest.raises(ValueError, match="images contains NaN"):
        attribution_grid(imgs * float("nan"), {"EG": torch.rand(2, 1, 8, 8)}, tmp_path / "a.png")
    assert not (tmp_path / "a.png").exists()
    # options of the figure functions
    for kw, error, match in [
        (dict(outlier_perc="1"), TypeError, "outlier_perc"),
        (dict(panel_size=-1.0), ValueError, "panel_size"),
        (dict(row_titles="ab"), TypeError, "row_titles"),
    ]:
        with pytest.raises(error, match=match):
            plot_attributions(imgs, {"EG": torch.rand(2, 1, 8, 8)}, **kw)
    path = attribution_grid(imgs, {"EG": torch.rand(2, 8, 8)}, tmp_path / "ok.png")  # N x H x W maps
    assert (tmp_path / "ok.png").stat().st_size > 0 and path.endswith("ok.png")


def test_plot_curves_options_name_the_argument():
    from captum_prior.visualization import plot_curves

    x, c = np.linspace(0, 1, 5), {"a": np.random.default_rng(0).random((3, 5))}
    for kw, error, match in [
        (dict(confidence=1.5), ValueError, "confidence"),
        (dict(label_values="auc"), TypeError, "label_values"),
        (dict(panel_size=(4.0,)), TypeError, "panel_size"),
    ]:
        with pytest.raises(error, match=match):
            plot_curves(x, c, **kw)


# ------------------------------------------------- unclear errors (issue 28)
@pytest.mark.parametrize(
    "name, optimized",
    [("ExpectedGradients", False), ("DeepPriorExpectedGradients", False), ("ValidPathGradients", False),
     ("ValidPathGradients", True)],  # only ValidPathGradients optimises baselines
    ids=["EG", "DPEG", "VPG", "VPG_optimized_baselines"],
)
def test_empty_batch_with_convergence_delta_gives_empty_results(name, optimized):
    kw = {"baselines": None} if optimized else {}
    attr, delta = MODEL_RUNNERS[name](cnn(), images(0), return_convergence_delta=True, **kw)
    assert attr.shape == (0, 1, H, H) and delta.shape == (0,)


def test_bay_lime_names_a_tuple_output_and_a_wrong_feature_mask():
    class TwoOutputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = cnn()

        def forward(self, x):
            return self.inner(x), x.sum()

    with pytest.raises(TypeError, match=r"got tuple.*lambda x: model\(x\)\[0\]"):
        BayLime(TwoOutputs(), random_state=0).attribute(images(), target=1, n_samples=8, feature_mask=patches())
    for mask, error, match in [
        (torch.zeros(14, 14, dtype=torch.long), ValueError, r"feature_mask has shape \(14, 14\).*\(2, 1, 28, 28\)"),
        (patches().expand(3, 1, H, H), ValueError, r"feature_mask has shape \(3, 1, 28, 28\)"),
        (patches().float(), TypeError, r"feature_mask.*\.long\(\)"),
        ((patches(), patches()), ValueError, "feature_mask has 2 tensors"),
    ]:
        with pytest.raises(error, match=match):
            BayLime(cnn(), random_state=0).attribute(images(), target=1, n_samples=8, feature_mask=mask)
    # an H x W mask broadcasts over the batch and channels
    out = BayLime(cnn(), random_state=0).attribute(images(), target=1, n_samples=8, feature_mask=patches()[0, 0])
    assert out.shape == images().shape


def _fitted_insights():
    from captum_prior.proxy import DMMMENGlobalInsights

    est = DMMMEN(n_components=2, n_iter=10, n_chains=1, n_jobs=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DMMMENGlobalInsights(cnn(), 1, n_features=4, estimator=est).fit(images(30))


@pytest.mark.parametrize("kind", ["jgmm", "dmm", "insights"])
def test_saving_into_a_missing_folder_names_it(tmp_path, fitted_jgmm, fitted_dmm, kind):
    est = {"jgmm": lambda: fitted_jgmm, "dmm": lambda: fitted_dmm[0], "insights": _fitted_insights}[kind]()
    missing = tmp_path / "no" / "such"
    with pytest.raises(FileNotFoundError, match=f"folder {missing} does not exist.*makedirs"):
        est.save(missing / "model.safetensors")
    assert not (tmp_path / "no").exists()  # nothing created
    with pytest.raises(IsADirectoryError, match="folder"):
        est.save(tmp_path)
    missing.mkdir(parents=True)
    est.save(missing / "model.safetensors")  # once it exists, the save works
    assert [p.name for p in missing.iterdir()] == ["model.safetensors"]  # no temporary file left


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupted_cnn_weights_raise_file_format_error(tmp_path, corruption):
    from importlib import resources

    shipped = resources.files("captum_prior.assets").joinpath("fashion_cnn.safetensors").read_bytes()
    path = tmp_path / "cnn.safetensors"
    path.write_bytes(CORRUPTIONS[corruption](shipped))
    with pytest.raises(FileFormatError, match="cnn.safetensors"):
        load_fashion_cnn(path)


def test_load_fashion_cnn_wrong_file_missing_path_and_bad_device(tmp_path, fitted_jgmm):
    other = tmp_path / "jgmm.safetensors"
    fitted_jgmm.save(other)  # a valid safetensors file of another kind
    with pytest.raises(FileFormatError, match=r"jgmm.safetensors does not hold FashionCNN weights"):
        load_fashion_cnn(other)
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors does not exist"):
        load_fashion_cnn(tmp_path / "nowhere.safetensors")
    with pytest.raises(TypeError, match="path"):
        load_fashion_cnn(3)


@pytest.mark.parametrize(
    "call",
    [
        lambda: load_fashion_cnn(device="gpu9"),
        lambda: JointGaussianMixture(n_lower=2, n_higher=2, device="gpu9").fit(np.zeros((5, 1, 2)), np.zeros((5, 2))),
        lambda: JGMMExplainer(cnn(), lower_layer="conv2", device="gpu9"),
        lambda: load_efficientnet_lite0(device="gpu9"),
    ],
    ids=["load_fashion_cnn", "JointGaussianMixture", "JGMMExplainer", "load_efficientnet_lite0"],
)
def test_unknown_device_names_the_argument(call):
    with pytest.raises(ValueError, match="unknown device 'gpu9'; use 'cpu'"):
        call()


def test_jgmm_load_with_a_bad_device_blames_the_device_not_the_file(tmp_path, fitted_jgmm):
    fitted_jgmm.save(tmp_path / "j.safetensors")
    with pytest.raises(ValueError, match="unknown device") as err:
        JointGaussianMixture.load(tmp_path / "j.safetensors", device="gpu9")
    assert not isinstance(err.value, FileFormatError)


def test_unavailable_cuda_says_so():
    if torch.cuda.is_available():  # a CUDA machine: an index it does not have
        with pytest.raises(ValueError, match=r"device='cuda:99' but this machine has \d+ CUDA device"):
            load_fashion_cnn(device="cuda:99")
    else:
        with pytest.raises(ValueError, match="device='cuda' but CUDA is not available"):
            load_fashion_cnn(device="cuda")


# ------------------------------------- warnings fold under the default filter
def _count(caught, category):
    return sum(issubclass(w.category, category) for w in caught)


def test_input_range_warning_is_shown_once_in_a_17_image_loop():
    """Python's default filter shows a warning once per text and location; the
    text must not change with each image's value range."""
    model, x = cnn(), images(17) * 2 - 1  # [-1, 1] images for a [0, 1] model
    vpg = ValidPathGradients(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for i in range(17):  # each image has its own min and max
            vpg.attribute(x[i : i + 1], target=1, n_steps=2, n_baselines=1, input_range=(-1.0, 1.0),
                          baseline_kwargs=dict(max_iter=1))
    assert _count(caught, InputRangeWarning) == 1, [str(w.message) for w in caught]
    # the range-inference warning too
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for i in range(17):
            vpg.attribute(images(17)[i : i + 1], target=1, n_steps=2, n_baselines=1,
                          baseline_kwargs=dict(max_iter=1))
    assert _count(caught, InputRangeWarning) == 1, [str(w.message) for w in caught]


def test_shared_range_check_text_does_not_depend_on_the_values():
    from captum_prior._validation import check_value_range

    def texts(batches):
        out = []
        for t in batches:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                check_value_range(t, 0.0, 1.0, "inputs", "the model")
            out += [str(w.message) for w in caught]
        return out

    g = torch.Generator().manual_seed(0)
    negative = texts([torch.rand(4, generator=g) * s - s for s in (2.0, 5.0, 40.0)])
    bytes_like = texts([torch.rand(4, generator=g) * s for s in (7.0, 60.0, 255.0)])
    assert len(negative) == 3 and len(set(negative)) == 1 and "[0, 1]" in negative[0]
    assert len(bytes_like) == 3 and len(set(bytes_like)) == 1 and "divide by 255" in bytes_like[0]


def test_dmm_men_convergence_warning_is_shown_once_over_many_fits():
    rng = np.random.default_rng(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        fits = []
        for seed in range(3):
            X = rng.normal(size=(30, 3))
            y = X @ np.array([1.0, -1.0, 0.0]) + 0.1 * rng.normal(size=30)
            fits.append(DMMMEN(n_components=2, n_iter=12, random_state=seed).fit(X, y))
    from captum_prior import ConvergenceDiagnosticWarning

    assert _count(caught, ConvergenceDiagnosticWarning) == 1
    assert all(f.diagnostics_["convergence_problems"] for f in fits)  # the values are kept per fit


def test_valid_path_gradients_rejects_integer_baselines_with_the_fix():
    b = (images() * 255).to(torch.uint8)
    with pytest.raises(TypeError, match=r"baselines.*\.float\(\) / 255"):
        ValidPathGradients(cnn()).attribute(images(), baselines=b, target=0, n_steps=4)


def test_load_fashion_mnist_with_a_missing_path_names_path(tmp_path, monkeypatch):
    # a typo in path= must not silently load another copy (the system one, or the environment variable's)
    from captum_prior.data import fashion_mnist, load_fashion_mnist

    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path))
    monkeypatch.delenv(fashion_mnist.HIDE_SYSTEM_VAR, raising=False)
    monkeypatch.setenv(fashion_mnist.ENV_VAR, str(tmp_path))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\0" * 16)  # a valid, empty copy to fall back on
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\0" * 8)
    assert load_fashion_mnist("test")[0].shape == (0, 1, 28, 28)
    with pytest.raises(FileNotFoundError, match=r"path='.*nowher' is not an existing folder"):
        load_fashion_mnist("test", path=tmp_path / "nowher")
    with pytest.raises(TypeError, match="path must be"):
        load_fashion_mnist("test", path=3)
