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
    BayLime,
    DeepPriorExpectedGradients,
    DMMMENAttribution,
    ExpectedGradients,
    OptimizedBaseline,
    ValidPathGradients,
)
from captum_prior.metrics import diff_id, insertion_deletion, keep_remove, sensitivity_n
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


def run_sens_n(model, x, **kw):
    return sensitivity_n(model, x, attr_of(x), target=kw.pop("target", 1), fractions=(0.5,), n_subsets=3,
                         random_state=0, **kw)


def run_mgm(model, x, **kw):
    return MGMPrior(model, layer="conv3" if isinstance(model, FashionCNN) else None)(x, target=kw.pop("target", None))


def run_bgmm(model, x, **kw):
    layer = "conv3" if isinstance(model, FashionCNN) else None
    return BGMMPrior(model, layer=layer, reduction="evidence", n_components=2, random_state=0)(
        x, target=kw.pop("target", 1))


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
    "sensitivity_n": run_sens_n,
    "MGMPrior": run_mgm,
    "BGMMPrior": run_bgmm,
    "training_attributions": run_train_attr,
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


@pytest.mark.parametrize("name", sorted(set(MODEL_RUNNERS) - {"MGMPrior", "BGMMPrior"}))
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
@pytest.mark.parametrize("name", ["ExpectedGradients", "DeepPriorExpectedGradients", "ValidPathGradients"])
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
        (lambda: DeepPriorExpectedGradients(cnn(), 0.1, path="code"), ValueError, "path"),
        (lambda: OptimizedBaseline(cnn(), objective="l2"), ValueError, "objective"),
        (lambda: OptimizedBaseline(cnn(), clip=(1.0, 0.0)), ValueError, "clip"),
        (lambda: OptimizedBaseline(cnn(), max_iter=0), ValueError, "max_iter"),
        (lambda: OptimizedBaseline(cnn(), sigmas=()), ValueError, "sigmas"),
        (lambda: insertion_deletion(cnn(), images(), images(), target=1, mode="all"), ValueError, "mode"),
        (lambda: insertion_deletion(cnn(), images(), images(), target=1, score="prob"), ValueError, "score"),
        (lambda: insertion_deletion(cnn(), images(), images()[:1], target=1), ValueError, "attributions"),
        (lambda: keep_remove(cnn(), images(), images(), target=1, masker="telea"), ValueError, "masker"),
        (lambda: keep_remove(cnn(), images(), images(), target=1, masker="mean", metrics=["KPX"]), ValueError, "metrics"),
        (lambda: keep_remove(cnn(), images(), images(), target=1, masker="mean", percent=0), ValueError, "percent"),
        (lambda: sensitivity_n(cnn(), images(), images(), target=1, fractions=(1.5,)), ValueError, "fractions"),
        (lambda: sensitivity_n(cnn(), images(), images(), target=1, sampling="random"), ValueError, "sampling"),
        (lambda: diff_id(cnn(), images(), images(), target=1, ratios=(0.0,)), ValueError, "ratios"),
        (lambda: BayLime(cnn()).attribute(images(), target=1, n_samples=1), ValueError, "n_samples"),
        (lambda: BayLime(cnn()).attribute(images(), target=1, n_samples=4, perturbations_per_eval=0), ValueError,
         "perturbations_per_eval"),
        (lambda: BayLime(cnn()).attribute(images(), target=1, n_samples=4, credible_level=1.5), ValueError,
         "credible_level"),
        (lambda: BayLime(cnn(), noise_precision=-1.0), ValueError, "noise_precision"),
        (lambda: MGMPrior(cnn(), mode="x"), ValueError, "mode"),
        (lambda: BGMMPrior(cnn(), reduction="x"), ValueError, "reduction"),
        (lambda: BGMMPrior(cnn(), n_components=0), ValueError, "n_components"),
        (lambda: MGMPrior(cnn(), layer="nope"), ValueError, "layer"),
        (lambda: DMMMEN(n_components=0).fit(np.zeros((5, 2)), np.zeros(5)), ValueError, "n_components"),
        (lambda: JointGaussianMixture(n_lower=0).fit(np.zeros((5, 1, 2)), np.zeros((5, 2))), ValueError, "n_lower"),
        (lambda: JointGaussianMixture(estep="fast").fit(np.zeros((5, 1, 2)), np.zeros((5, 2))), ValueError, "estep"),
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
    ],
    ids=["nan_X", "nan_Y", "empty", "length", "str"],
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
    ],
    ids=["nan_X", "nan_y", "empty", "length"],
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


def test_optimized_baseline_warns_once_about_its_clip_range():
    model = nn.Sequential(nn.Flatten(), nn.Linear(H * H, 3)).eval()  # range unknown to the project
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        OptimizedBaseline(model, max_iter=1).compute(images() * 255)
    ranges = [w for w in caught if issubclass(w.category, InputRangeWarning)]
    assert len(ranges) == 1 and "clip" in str(ranges[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputRangeWarning)
        OptimizedBaseline(model, max_iter=1).compute(images())  # in range: silent


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
