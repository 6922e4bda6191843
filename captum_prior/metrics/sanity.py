"""Sanity checks for attribution methods: model-parameter randomisation and
the random-logit test (Adebayo et al., NeurIPS 2018).

An explanation that is faithful to a model must change when the model's
learned weights are destroyed.  :func:`model_randomization_test` redraws the
weights of the model's layers, from the output layer down, and measures how
similar each method's maps stay to the maps of the trained model;
:func:`random_logit_test` explains a random other class and measures how
similar those maps are to the maps of the target class.  A method whose maps
stay similar while the model is randomised does not depend on what the model
learned (an edge detector of the input is the standard example), and is
flagged.

Everything runs on deep copies of the model: the user's model (its
parameters, buffers, training flag and hooks) is never touched, even when an
attribution call raises.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "MEASURES",
    "ModelRandomizationResult",
    "RandomLogitResult",
    "model_randomization_test",
    "random_logit_test",
    "mprt_scores",
    "randomizable_layers",
    "similarity",
    "spread_layers",
]

#: Similarity measures, all "1 = identical maps", as in Adebayo et al.:
#: Spearman rank correlation of the absolute and of the signed maps, SSIM and
#: the Pearson correlation of HOG features of the absolute maps.
MEASURES = ("spearman_abs", "spearman", "ssim", "hog")
_MODES = ("cascading", "independent")
_NORM = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
)

AttributionMethod = Any  # Captum-style class, instance, or callable


# --------------------------------------------------------------- similarity
def _maps(a: Tensor) -> np.ndarray:
    """``N x ...`` attributions -> ``N x H x W`` (channels summed) or ``N x D``."""
    a = a.detach().to("cpu", torch.float64)
    if a.dim() == 4:
        a = a.sum(1)
    elif a.dim() not in (2, 3):
        a = a.reshape(a.shape[0], -1)
    return a.numpy()


def _rank_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Spearman correlation of ``N x D`` arrays; 0 where a row is constant."""
    from scipy.stats import rankdata

    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    return _pearson_rows(ra, rb)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    out = np.zeros(a.shape[0])
    ok = den > 0
    out[ok] = (a * b).sum(1)[ok] / den[ok]
    return out


def _unit_abs(m: np.ndarray) -> np.ndarray:
    m = np.abs(m)
    top = m.max()
    return m / top if top > 0 else m


def _hog(m: np.ndarray) -> np.ndarray:
    from skimage.feature import hog

    p = max(2, min(m.shape) // 7)
    return hog(m, orientations=9, pixels_per_cell=(p, p), cells_per_block=(2, 2), feature_vector=True)


def similarity(a: Tensor, b: Tensor, measures: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
    r"""Per-example similarity of two batches of attribution maps.

    Maps are reduced as for display: ``N x C x H x W`` attributions are summed
    over channels; ``N x H x W`` maps are used as they are; anything else is
    flattened to ``N x D`` (then only the Spearman measures apply).

    - ``"spearman_abs"``: Spearman rank correlation of ``|map|``;
    - ``"spearman"``: Spearman rank correlation of the signed maps;
    - ``"ssim"``: structural similarity (scikit-image, ``data_range=1``) of
      the absolute maps, each divided by its own maximum;
    - ``"hog"``: Pearson correlation of the HOG features (9 orientations,
      cells of ``max(2, min(H, W) // 7)`` pixels, 2 x 2 blocks) of those
      absolute maps.

    A constant map has no ranking and no gradient structure: its Spearman and
    HOG similarities are defined as 0.

    Parameters
    ----------
    a, b : Tensor
        attributions of the same shape.
    measures : sequence of str, optional
        from :data:`MEASURES`. Default: all four for image maps, the
        Spearman pair otherwise

    Returns
    -------
    dict
        measure -> array of ``N`` similarities (1 = identical).

    Raises
    ------
    ValueError
        shapes differ, an unknown measure, or SSIM/HOG asked of maps that
        are not images of at least 3 x 3.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.metrics import similarity
    >>> a = torch.rand(2, 1, 16, 16)
    >>> s = similarity(a, a, measures=("spearman_abs", "ssim"))
    >>> [round(float(v.mean()), 3) for v in s.values()]
    [1.0, 1.0]
    """
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"the two batches of maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    ma, mb = _maps(a), _maps(b)
    image = ma.ndim == 3
    measures = _check_measures(measures, image, ma.shape[1:])
    n = ma.shape[0]
    fa, fb = ma.reshape(n, -1), mb.reshape(n, -1)
    out: Dict[str, np.ndarray] = {}
    for m in measures:
        if m == "spearman_abs":
            out[m] = _rank_corr(np.abs(fa), np.abs(fb))
        elif m == "spearman":
            out[m] = _rank_corr(fa, fb)
        elif m == "ssim":
            from skimage.metrics import structural_similarity

            win = min(7, min(ma.shape[1:]))
            win -= 1 - win % 2
            out[m] = np.array([
                structural_similarity(_unit_abs(ma[i]), _unit_abs(mb[i]), data_range=1.0, win_size=win)
                for i in range(n)
            ])
        else:
            ha = np.stack([_hog(_unit_abs(ma[i])) for i in range(n)])
            hb = np.stack([_hog(_unit_abs(mb[i])) for i in range(n)])
            out[m] = _pearson_rows(ha, hb)
    return out


def _check_measures(measures: Optional[Sequence[str]], image: bool, shape: Tuple[int, ...]) -> List[str]:
    if measures is None:
        return list(MEASURES) if image and min(shape) >= 3 else ["spearman_abs", "spearman"]
    if isinstance(measures, str):
        measures = [measures]
    ms = list(dict.fromkeys(measures))
    if not ms:
        raise ValueError(f"measures is empty; choose from {list(MEASURES)}")
    for m in ms:
        if m not in MEASURES:
            raise ValueError(f"measures: unknown measure {m!r}; choose from {list(MEASURES)}")
        if m in ("ssim", "hog") and not (image and min(shape) >= 3):
            raise ValueError(
                f"measures: {m!r} needs image maps (N x C x H x W or N x H x W, at least 3 x 3); "
                f"these maps are {shape}; use measures=('spearman_abs', 'spearman')"
            )
    return ms


# --------------------------------------------------------------- the model
def randomizable_layers(model: nn.Module) -> List[str]:
    """Names of the modules :func:`model_randomization_test` randomises by
    default, from the output layer down: every module that owns parameters
    itself (convolutions, linear layers...), except normalisation layers,
    in reverse registration order (registration order is the forward order
    for the usual ``nn.Sequential`` and hand-written models).

    Parameters
    ----------
    model : nn.Module
        The model.

    Returns
    -------
    list of str
        Module names, output layer first.

    Examples
    --------
    >>> from torch import nn
    >>> from captum_prior.metrics.sanity import randomizable_layers
    >>> randomizable_layers(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.LazyLinear(2)))
    ['3', '0']
    """
    names = [
        name for name, mod in model.named_modules()
        if name and not isinstance(mod, _NORM) and any(True for _ in mod.parameters(recurse=False))
    ]
    return names[::-1]


def spread_layers(model: nn.Module, k: int) -> List[str]:
    """``k`` of the model's :func:`randomizable_layers`, spread evenly from
    the output layer down to the middle of the network (down to the input
    layer when ``k`` exceeds half of the layers).

    A cascading randomisation over every layer of a deep network costs one
    attribution call per layer; this picks ``k`` of them, output layer first
    (``k = 1``: the output layer only).

    Parameters
    ----------
    model : nn.Module
        The model whose layers are listed.
    k : int
        How many layers, ``1 <= k <=`` the number of randomisable layers.

    Returns
    -------
    list of str
        Module names, output layer first, as ``layers=`` of
        :func:`model_randomization_test` takes them.

    Raises
    ------
    ValueError
        ``k`` below 1 or above the number of randomisable layers.

    Examples
    --------
    >>> from torch import nn
    >>> from captum_prior.metrics.sanity import spread_layers
    >>> net = nn.Sequential(*[nn.Linear(4, 4) for _ in range(8)])
    >>> spread_layers(net, 3)
    ['7', '5', '3']
    """
    layers = randomizable_layers(model)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(layers):
        raise ValueError(
            f"k must be an integer from 1 to {len(layers)} (the model's randomisable layers), got {k!r}"
        )
    if k == 1:
        return layers[:1]
    n = len(layers)
    idx = [j * n // (2 * (k - 1)) for j in range(k)]
    if len(set(idx)) < k:  # more layers than the top half holds: spread over all of them
        idx = [j * (n - 1) // (k - 1) for j in range(k)]
    return [layers[i] for i in idx]


def _layer_seed(seed: int, j: int) -> int:
    return int(np.random.SeedSequence([int(seed), 7919, int(j)]).generate_state(1)[0])


def _new_weights(module: nn.Module, seed: int) -> Dict[str, Tensor]:
    """Fresh values for every parameter of ``module`` (recursively): uniform on
    ``+-1/sqrt(fan_in)``, PyTorch's default range for convolutions and linear
    layers, ``fan_in`` from the module's matrix weight (a parameter's own
    length when the module has none)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in module.named_parameters():
        owner = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
        w = getattr(owner, "weight", None)
        if isinstance(w, Tensor) and w.dim() > 1:
            fan_in = w[0].numel()
        else:
            fan_in = p[0].numel() if p.dim() > 1 else max(p.numel(), 1)
        bound = 1.0 / math.sqrt(max(fan_in, 1))
        v = (torch.rand(p.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound
        out[name] = v.to(p.dtype)
    return out


def _randomize(model: nn.Module, layers: Sequence[str], weights: Mapping[str, Dict[str, Tensor]]) -> None:
    with torch.no_grad():
        for layer in layers:
            mod = model.get_submodule(layer)
            for name, p in mod.named_parameters():
                p.copy_(weights[layer][name].to(p.device))


# --------------------------------------------------------------- the method
def _bound(method: AttributionMethod, model: nn.Module, original: nn.Module) -> Callable[..., Tensor]:
    """``f(inputs, target, **kw) -> attributions`` for ``model`` (a copy).

    A class is constructed as ``cls(model)``; an instance is deep-copied with
    every reference to the user's model (and its sub-modules, parameters and
    buffers) pointing at the copy instead; a plain callable is called as
    ``method(model, inputs, target=target, **kw)``."""
    if inspect.isclass(method):
        obj = method(model)
        return lambda x, target, **kw: obj.attribute(x, target=target, **kw)
    if hasattr(method, "attribute"):
        memo: Dict[int, Any] = {}
        for (_, a), (_, b) in zip(original.named_modules(remove_duplicate=False),
                                  model.named_modules(remove_duplicate=False)):
            memo[id(a)] = b
        for (_, a), (_, b) in zip(original.named_parameters(remove_duplicate=False),
                                  model.named_parameters(remove_duplicate=False)):
            memo[id(a)] = b
        for (_, a), (_, b) in zip(original.named_buffers(remove_duplicate=False),
                                  model.named_buffers(remove_duplicate=False)):
            memo[id(a)] = b
        try:
            obj = copy.deepcopy(method, memo)
        except Exception:  # noqa: BLE001 - an attribute that cannot be copied
            obj = copy.copy(method)
            if getattr(obj, "forward_func", None) is not original:
                raise TypeError(
                    f"attribution_method: a {type(method).__name__} instance could not be copied and "
                    "its forward_func is not the model passed; pass the class, or a callable "
                    "f(model, inputs, target, **kwargs) that builds the method for a given model"
                ) from None
            obj.forward_func = model
        return lambda x, target, **kw: obj.attribute(x, target=target, **kw)
    if callable(method):
        return lambda x, target, **kw: method(model, x, target=target, **kw)
    raise TypeError(
        "attribution_method must be a Captum-style attribution class (e.g. captum.attr.Saliency), "
        "an instance of one, or a callable f(model, inputs, target, **kwargs) returning attributions; "
        f"got {type(method).__name__}"
    )


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Torch's, NumPy's and Python's global generators seeded for one call and
    restored after it, so that a method drawing from them (Captum's
    GradientShap picks its baselines with ``np.random``) draws the same noise
    for every model."""
    import random

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _call(fn: Callable[..., Tensor], x: Tensor, target: Any, kwargs: Mapping[str, Any],
          seed: int, takes_generator: bool) -> Tensor:
    kw = dict(kwargs)
    if takes_generator and "generator" not in kw:
        kw["generator"] = torch.Generator(device=x.device).manual_seed(seed)
    with _seeded(seed):
        a = fn(x, target, **kw)
    if isinstance(a, tuple):
        a = a[0]
    if not isinstance(a, Tensor) or a.shape[0] != x.shape[0]:
        raise TypeError(
            "attribution_method must return a tensor with one map per example "
            f"({x.shape[0]}), got {type(a).__name__} {tuple(getattr(a, 'shape', ()))}"
        )
    if not torch.isfinite(a).all():
        raise ValueError("attribution_method returned NaN or Inf maps; the similarity of such maps is undefined")
    return a.detach()


def _takes_generator(method: AttributionMethod) -> bool:
    f = getattr(method, "attribute", None)
    if f is None:
        return False
    try:
        return "generator" in inspect.signature(f).parameters
    except (TypeError, ValueError):
        return False


def _method_dict(attribution_method: Any) -> Dict[str, AttributionMethod]:
    if isinstance(attribution_method, Mapping):
        if not attribution_method:
            raise ValueError("attribution_method is an empty dict; name at least one method")
        return {str(k): v for k, v in attribution_method.items()}
    m = attribution_method
    name = m.__name__ if inspect.isclass(m) or inspect.isfunction(m) else type(m).__name__
    return {name: m}


def _check_inputs(model: Any, inputs: Any) -> Tensor:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (its layers are randomised), got {type(model).__name__}"
        )
    if isinstance(inputs, tuple) and len(inputs) == 1:
        inputs = inputs[0]
    if not isinstance(inputs, Tensor):
        raise TypeError(
            f"inputs must be one tensor (N x ...), got {type(inputs).__name__}; models with several "
            "inputs: wrap them so that one tensor goes in"
        )
    if inputs.dim() < 2 or inputs.shape[0] < 1:
        raise ValueError(f"inputs must be a batch N x ... with N >= 1, got shape {tuple(inputs.shape)}")
    return inputs


def _summaries(values: np.ndarray, confidence: float, n_resamples: int, seed: int) -> List[Dict[str, float]]:
    from captum_prior.metrics.stats import mean_ci

    return [mean_ci(values[:, j], confidence, n_resamples, seed) for j in range(values.shape[1])]


# --------------------------------------------------------------- results
@dataclass
class ModelRandomizationResult:
    r"""What :func:`model_randomization_test` returns.

    Attributes
    ----------
    layers : list of str
        the randomised modules, in randomisation order (output layer first).
    modes : list of str
        ``"cascading"`` and/or ``"independent"``.
    measures : list of str
        the similarity measures.
    similarity : dict
        ``[mode][method][measure]`` -> ``N x L`` array; column ``j``
        compares the trained model's map with the map after randomising
        ``layers[: j + 1]`` (cascading) or ``layers[j]`` alone
        (independent).
    summary : dict
        same keys -> list of ``L`` dicts ``{"mean", "low", "high", "n"}``
        (bootstrap CI over examples).
    attributions : dict
        ``[mode][method]`` -> Tensor ``(L + 1) x N x ...``: the trained
        model's maps, then one per step.
    verdict : dict
        method -> ``{"status", "measure", "final", "text"}``: ``"fails"``
        when the lower CI bound of the similarity after the full cascade is
        above ``threshold`` (the maps stay similar to those of the trained
        model), ``"passes"`` when the upper bound is below it,
        ``"inconclusive"`` otherwise, ``"n too small"`` below
        ``min_examples``.
    threshold : float
        the similarity the verdict compares with.
    inputs : Tensor
        the explained inputs (CPU), for the figure.
    target : Tensor or None
        the explained targets.
    random_logit : RandomLogitResult or None
        when asked for.
    """

    layers: List[str]
    modes: List[str]
    measures: List[str]
    similarity: Dict[str, Dict[str, Dict[str, np.ndarray]]]
    summary: Dict[str, Dict[str, Dict[str, List[Dict[str, float]]]]]
    attributions: Dict[str, Dict[str, Tensor]]
    verdict: Dict[str, Dict[str, Any]]
    threshold: float
    inputs: Tensor
    target: Optional[Tensor]
    random_logit: Optional["RandomLogitResult"] = None
    seed: int = 0
    n_calls: Dict[str, int] = field(default_factory=dict)

    @property
    def methods(self) -> List[str]:
        return list(self.verdict)

    def table(self, mode: str = "cascading", digits: int = 3) -> str:
        """A Markdown table: one row per (method, layer), one column per measure."""
        from captum_prior.metrics.stats import format_ci

        if mode not in self.summary:
            raise ValueError(f"mode must be one of {list(self.summary)}, got {mode!r}")
        head = ["method", "randomised"] + [f"{m} [95 % CI]" for m in self.measures]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for meth, by in self.summary[mode].items():
            for j, layer in enumerate(self.layers):
                label = ("up to " if mode == "cascading" else "only ") + layer
                cells = [meth, label] + [format_ci(by[m][j], digits) for m in self.measures]
                lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able summary (no maps)."""
        return {
            "layers": self.layers, "modes": self.modes, "measures": self.measures,
            "summary": self.summary, "verdict": self.verdict, "threshold": self.threshold,
            "n_examples": int(self.inputs.shape[0]), "seed": self.seed, "n_calls": self.n_calls,
            "random_logit": None if self.random_logit is None else self.random_logit.to_dict(),
        }

    def plot(self, **kwargs: Any):
        """:func:`captum_prior.visualization.plot_model_randomization` of this result."""
        from captum_prior.visualization import plot_model_randomization

        return plot_model_randomization(self, **kwargs)


@dataclass
class RandomLogitResult:
    """What :func:`random_logit_test` returns.

    Attributes
    ----------
    measures : list of str
        The similarity measures.
    similarity : dict
        Method -> measure -> ``(N,)`` similarities between the map of the
        target class and the map of a random other class.
    summary : dict
        Method -> measure -> mean with its bootstrap interval.
    other_target : Tensor
        ``(N,)`` the classes drawn.
    attributions : dict
        Method -> ``(target maps, other-class maps)``.
    """

    measures: List[str]
    similarity: Dict[str, Dict[str, np.ndarray]]
    summary: Dict[str, Dict[str, Dict[str, float]]]
    other_target: Tensor
    attributions: Dict[str, Tuple[Tensor, Tensor]]

    def to_dict(self) -> Dict[str, Any]:
        return {"measures": self.measures, "summary": self.summary,
                "other_target": self.other_target.tolist()}


# --------------------------------------------------------------- the tests
def _targets(model: nn.Module, x: Tensor, target: Any) -> Tuple[Any, int]:
    with torch.no_grad():
        out = model(x)
    if not isinstance(out, Tensor) or out.dim() != 2:
        raise ValueError(
            f"model must return N x n_classes scores, got {type(out).__name__} "
            f"{tuple(getattr(out, 'shape', ()))}"
        )
    n_classes = int(out.shape[1])
    if target is None:
        return out.argmax(1), n_classes
    t = torch.as_tensor(target, dtype=torch.long, device=x.device)
    if t.dim() == 0:
        t = t.expand(x.shape[0]).clone()
    if t.shape != (x.shape[0],):
        raise ValueError(f"target must be an int or one class index per example ({x.shape[0]}), got shape {tuple(t.shape)}")
    if bool((t < 0).any()) or bool((t >= n_classes).any()):
        raise ValueError(f"target holds a class outside 0..{n_classes - 1}")
    return t, n_classes


def _randomized_maps(
    methods: Mapping[str, AttributionMethod], model: nn.Module, inputs: Any, target: Any,
    layers: Optional[Sequence[str]], modes: Sequence[str], attribute_kwargs: Optional[Mapping[str, Any]],
    seed: int,
) -> Tuple[List[str], List[str], Tensor, Dict[str, Dict[str, List[Tensor]]], Dict[str, int]]:
    """Validate; then the maps of the trained model (entry 0) and of every
    randomisation step, per mode and method, all on copies of ``model``."""
    from captum_prior._validation import check_choice, check_int

    x = _check_inputs(model, inputs)
    seed = check_int(seed, "seed", 0)
    if isinstance(modes, str):
        modes = [modes]
    modes = [check_choice(m, "modes", _MODES) for m in dict.fromkeys(modes)]
    if not modes:
        raise ValueError("modes is empty; choose 'cascading' and/or 'independent'")
    all_names = dict(model.named_modules())
    layers = list(layers) if layers is not None else randomizable_layers(model)
    if not layers:
        raise ValueError("layers is empty: the model has no module with parameters to randomise")
    for name in layers:
        if not isinstance(name, str) or not name or name not in all_names:
            raise ValueError(f"layers: {name!r} is not a sub-module of the model; see model.named_modules()")
        if not any(True for _ in all_names[name].parameters()):
            raise ValueError(f"layers: {name!r} has no parameters to randomise")
    kwargs = dict(attribute_kwargs or {})

    base = copy.deepcopy(model)  # the trained model's stand-in: user's model untouched
    t, _ = _targets(base, x, target)
    weights = {name: _new_weights(base.get_submodule(name), _layer_seed(seed, j)) for j, name in enumerate(layers)}
    maps: Dict[str, Dict[str, List[Tensor]]] = {m: {k: [] for k in methods} for m in modes}
    n_calls: Dict[str, int] = {k: 0 for k in methods}
    for k, meth in methods.items():
        gen = _takes_generator(meth)
        a0 = _call(_bound(meth, base, model), x, t, kwargs, seed, gen)
        n_calls[k] += 1
        for mode in modes:
            maps[mode][k].append(a0)
        if "cascading" in modes:
            work = copy.deepcopy(base)
            fn = _bound(meth, work, model)
            for j in range(len(layers)):
                _randomize(work, [layers[j]], weights)
                maps["cascading"][k].append(_call(fn, x, t, kwargs, seed, gen))
                n_calls[k] += 1
        if "independent" in modes:
            for j in range(len(layers)):
                work = copy.deepcopy(base)
                _randomize(work, [layers[j]], weights)
                maps["independent"][k].append(_call(_bound(meth, work, model), x, t, kwargs, seed, gen))
                n_calls[k] += 1
    return layers, modes, t, maps, n_calls


def model_randomization_test(
    attribution_method: Union[AttributionMethod, Mapping[str, AttributionMethod]],
    model: nn.Module,
    inputs: Tensor,
    target: Any = None,
    *,
    layers: Optional[Sequence[str]] = None,
    modes: Sequence[str] = _MODES,
    measures: Optional[Sequence[str]] = None,
    attribute_kwargs: Optional[Mapping[str, Any]] = None,
    threshold: float = 0.5,
    verdict_measure: str = "spearman_abs",
    min_examples: int = 10,
    random_logit: bool = False,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> ModelRandomizationResult:
    r"""Model-parameter randomisation test (Adebayo et al., 2018, Sec. 3).

    For each method, the maps of the trained model are compared with the maps
    of models whose weights have been redrawn:

    - **cascading**: ``layers[0]`` (the output layer) is randomised, then
      ``layers[0:2]``, and so on down to the input layer; step ``j`` has
      ``layers[: j + 1]`` randomised;
    - **independent**: step ``j`` randomises ``layers[j]`` alone.

    A layer's new weights are drawn once (from ``seed`` and the layer's
    position) and used by both modes.  Each comparison is made per example
    with the :func:`similarity` measures, and summarised per step by the mean
    over examples with a bootstrap confidence interval
    (:func:`captum_prior.metrics.stats.mean_ci`).  A method that depends on
    what the model learned gives maps that become dissimilar as the cascade
    proceeds; a method whose similarity stays high fails the check.

    Every model used is a deep copy of ``model``; ``model`` itself is never
    changed (parameters, buffers, mode, hooks), even if a call raises.
    Stochastic methods get the same random draws for every model (torch's,
    NumPy's and Python's global generators are seeded with ``seed`` around
    each call and restored afterwards; a method whose ``attribute`` takes a ``generator`` gets a
    fresh ``torch.Generator`` seeded with ``seed``), so the differences come
    from the weights alone.

    Parameters
    ----------
    attribution_method : class, instance, callable, or dict of them
        A Captum-style attribution class (built as ``cls(model_copy)``), an
        instance (deep-copied with its model references pointing at the
        randomised copy), or a callable ``f(model, inputs, target=...,
        **attribute_kwargs)`` returning the maps.  A dict names several
        methods.  Methods whose state is derived from the model (a fitted
        prior) should be passed as a callable that builds them for the model
        it receives.
    model : nn.Module
        The trained model (left unchanged).
    inputs : Tensor
        ``N x ...`` inputs, on the model's device.
    target : int, sequence or Tensor, optional
        Class per example; default the trained model's prediction.
    layers : sequence of str, optional
        Module names (``model.named_modules()``) in randomisation order, the
        output layer first; every parameter of a named module is redrawn.
        Default :func:`randomizable_layers` (normalisation layers are kept).
    modes : sequence of str, optional
        ``"cascading"`` and/or ``"independent"``. Default both.
    measures : sequence of str, optional
        From :data:`MEASURES`. Default all four for image maps.
    attribute_kwargs : dict, optional
        Extra arguments of every attribution call (``baselines``, ``n_steps``...).
    threshold : float, optional
        The verdict's similarity threshold (see Returns). Default 0.5.
    verdict_measure : str, optional
        The measure the verdict reads. Default ``"spearman_abs"``.
    min_examples : int, optional
        With fewer examples the verdict is ``"n too small"`` whatever the
        interval (a bootstrap interval of a handful of values is too narrow
        to trust). Default 10.
    random_logit : bool, optional
        Also run :func:`random_logit_test` (its result in ``.random_logit``).
    confidence, n_resamples : optional
        Of the bootstrap intervals. Defaults 0.95, 2000.
    seed : int, optional
        Seeds the new weights, the methods' draws, the random logits and
        the bootstrap. Default 0.

    Returns
    -------
    ModelRandomizationResult
        Per-step similarities, their summaries, the maps and a verdict per
        method: ``"fails"`` when the lower confidence bound of
        ``verdict_measure`` after the full cascade (or after the last
        independent step when only that mode runs) is above ``threshold``,
        ``"passes"`` when the upper bound is below it, ``"inconclusive"``
        when the interval contains it (more examples needed), ``"n too small"``
        below ``min_examples`` examples.

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``, ``inputs`` is not one tensor, or
        ``attribution_method`` is none of the accepted forms.
    ValueError
        Unknown layer, mode or measure; a bad ``target``; NaN maps.

    Notes
    -----
    Adebayo et al. re-initialise weights from a truncated normal; here each
    redrawn parameter is uniform on ``+-1/sqrt(fan_in)``, PyTorch's default
    initialisation range, so the scale of activations stays plausible for any
    architecture.  Normalisation layers are not randomised by default
    (re-drawing a BatchNorm's affine parameters around 0 mostly scales the
    activations); name them in ``layers`` to include them.  The cost is one
    attribution call for the trained model plus one per step and mode:
    ``1 + L`` (one mode) or ``1 + 2L`` (both) calls per method.

    References
    ----------
    J. Adebayo, J. Gilmer, M. Muelly, I. Goodfellow, M. Hardt, B. Kim.
    Sanity checks for saliency maps. NeurIPS 2018.

    Examples
    --------
    >>> from captum.attr import Saliency
    >>> from captum_prior.models import load_fashion_cnn
    >>> from captum_prior.data import load_fashion_mnist_sample
    >>> x, y = load_fashion_mnist_sample(16)
    >>> res = model_randomization_test(Saliency, load_fashion_cnn(), x, y, modes=("cascading",))
    >>> res.layers
    ['fc', 'conv3.0', 'conv2.0', 'conv1.0']
    >>> res.verdict["Saliency"]["status"]
    'passes'
    >>> print(res.table())  # doctest: +SKIP
    """
    from captum_prior._validation import check_float, check_int

    methods = _method_dict(attribution_method)
    n_resamples = check_int(n_resamples, "n_resamples", 1)
    threshold = check_float(threshold, "threshold")
    if verdict_measure not in MEASURES:
        raise ValueError(f"verdict_measure must be one of {list(MEASURES)}, got {verdict_measure!r}")
    if measures is not None:
        bad = [m for m in ([measures] if isinstance(measures, str) else measures) if m not in MEASURES]
        if bad:
            raise ValueError(f"measures: unknown measure {bad[0]!r}; choose from {list(MEASURES)}")
    layers, modes, t, maps, n_calls = _randomized_maps(
        methods, model, inputs, target, layers, modes, attribute_kwargs, seed)
    x = _check_inputs(model, inputs)
    measures_ = None
    sims: Dict[str, Dict[str, Dict[str, np.ndarray]]] = {}
    summ: Dict[str, Dict[str, Dict[str, List[Dict[str, float]]]]] = {}
    for mode in modes:
        sims[mode], summ[mode] = {}, {}
        for k in methods:
            steps = [similarity(maps[mode][k][0], a, measures) for a in maps[mode][k][1:]]
            measures_ = list(steps[0])
            sims[mode][k] = {m: np.stack([s[m] for s in steps], 1) for m in measures_}
            summ[mode][k] = {m: _summaries(v, confidence, n_resamples, seed) for m, v in sims[mode][k].items()}
    assert measures_ is not None
    if verdict_measure not in measures_:
        raise ValueError(f"verdict_measure {verdict_measure!r} is not among the measures {measures_}")
    vmode = "cascading" if "cascading" in modes else "independent"
    verdict = {k: _verdict(k, summ[vmode][k][verdict_measure][-1], verdict_measure, threshold, vmode, layers,
                           check_int(min_examples, "min_examples", 1)) for k in methods}
    rl = None
    if random_logit:
        rl = random_logit_test(methods, model, x, t, measures=measures_, attribute_kwargs=attribute_kwargs,
                               confidence=confidence, n_resamples=n_resamples, seed=seed)
    return ModelRandomizationResult(
        layers=layers, modes=list(modes), measures=measures_, similarity=sims, summary=summ,
        attributions={mode: {k: torch.stack(v).cpu() for k, v in maps[mode].items()} for mode in modes},
        verdict=verdict, threshold=float(threshold), inputs=x.detach().cpu(),
        target=t.detach().cpu(), random_logit=rl, seed=seed, n_calls=n_calls,
    )


def _verdict(method: str, final: Mapping[str, float], measure: str, threshold: float,
             mode: str, layers: Sequence[str], min_examples: int = 10) -> Dict[str, Any]:
    if mode != "cascading":
        where = f"only {layers[-1]} randomised"
    elif len(layers) <= 6:
        where = f"{', '.join(layers)} randomised (cascading)"
    else:
        where = f"{len(layers)} layers randomised, {layers[0]} down to {layers[-1]} (cascading)"
    ci = f"{final['mean']:.2f} [95 % CI {final['low']:.2f}, {final['high']:.2f}], n = {final['n']}"
    if final["n"] < min_examples:
        status = "n too small"
        text = (f"{method}: too few examples to decide ({final['n']}, at least {min_examples} needed); "
                f"with {where}, the {measure} similarity is {ci}.")
    elif final["low"] > threshold:
        status = "fails"
        text = (f"{method} FAILS the randomisation check: with {where}, its maps keep a {measure} "
                f"similarity of {ci} to the trained model's maps (above {threshold:g}): by this measure "
                "they do not depend on what the model learned.")
    elif final["high"] < threshold:
        status = "passes"
        text = (f"{method} passes: with {where}, the {measure} similarity to the trained model's "
                f"maps falls to {ci} (below {threshold:g}).")
    else:
        status = "inconclusive"
        text = (f"{method}: inconclusive; with {where}, the {measure} similarity is {ci}, an "
                f"interval containing {threshold:g}; more examples are needed to decide.")
    return {"status": status, "measure": measure, "final": dict(final), "text": text}


def random_logit_test(
    attribution_method: Union[AttributionMethod, Mapping[str, AttributionMethod]],
    model: nn.Module,
    inputs: Tensor,
    target: Any = None,
    *,
    measures: Optional[Sequence[str]] = None,
    attribute_kwargs: Optional[Mapping[str, Any]] = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> RandomLogitResult:
    r"""Random-logit test (Adebayo et al., 2018, Sec. 4 / Appendix): explain
    each example for a class drawn uniformly at random among the classes
    other than its target, and compare with the target's map.

    A class-sensitive method gives dissimilar maps (low similarity); a
    method that explains the input rather than the decision gives the same
    map for any class.  Arguments as in :func:`model_randomization_test`;
    the other classes are drawn from ``seed``.  Runs on a copy of ``model``.

    Parameters
    ----------
    attribution_method : Captum-style class, instance, callable, or dict of them
        As in :func:`model_randomization_test`.
    model : nn.Module
        The model; only a deep copy is used.
    inputs : Tensor
        The examples, ``N x ...``.
    target : int, Tensor or list of int, optional
        The class explained per example; None takes the model's prediction.
        Default: None
    measures : sequence of str, optional
        Similarity measures from :data:`MEASURES`. Default: all that apply
    attribute_kwargs : dict, optional
        Passed to every ``attribute`` call. Default: None
    confidence : float, optional
        Level of the bootstrap intervals. Default: 0.95
    n_resamples : int, optional
        Bootstrap resamples. Default: 2000
    seed : int, optional
        Seed of the drawn classes and of the resampling. Default: 0

    Returns
    -------
    RandomLogitResult
        Per method and measure, the per-example similarities and their mean
        with a bootstrap interval.

    Raises
    ------
    ValueError
        A model with fewer than two classes, or arguments rejected by
        :func:`model_randomization_test`.

    References
    ----------
    J. Adebayo, J. Gilmer, M. Muelly, I. Goodfellow, M. Hardt, B. Kim,
    "Sanity Checks for Saliency Maps", NeurIPS 2018.
    """
    from captum_prior._validation import check_int

    methods = _method_dict(attribution_method)
    x = _check_inputs(model, inputs)
    seed = check_int(seed, "seed", 0)
    base = copy.deepcopy(model)
    t, n_classes = _targets(base, x, target)
    if n_classes < 2:
        raise ValueError("the random-logit test needs a model with at least two classes")
    g = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, n_classes, (x.shape[0],), generator=g).to(t.device)
    other = (t + shift) % n_classes
    kwargs = dict(attribute_kwargs or {})
    sims: Dict[str, Dict[str, np.ndarray]] = {}
    summ: Dict[str, Dict[str, Dict[str, float]]] = {}
    maps: Dict[str, Tuple[Tensor, Tensor]] = {}
    measures_: List[str] = []
    from captum_prior.metrics.stats import mean_ci

    for k, meth in methods.items():
        gen = _takes_generator(meth)
        f = _bound(meth, base, model)
        a = _call(f, x, t, kwargs, seed, gen)
        b = _call(f, x, other, kwargs, seed, gen)
        sims[k] = similarity(a, b, measures)
        measures_ = list(sims[k])
        summ[k] = {m: mean_ci(v, confidence, n_resamples, seed) for m, v in sims[k].items()}
        maps[k] = (a.cpu(), b.cpu())
    return RandomLogitResult(measures_, sims, summ, other.cpu(), maps)


def mprt_scores(
    attribution_method: AttributionMethod,
    model: nn.Module,
    inputs: Tensor,
    target: Any,
    attribute_kwargs: Optional[Mapping[str, Any]] = None,
    layers: Optional[Sequence[str]] = None,
    seed: int = 0,
) -> Dict[str, Tensor]:
    """Per-example cascading-randomisation scores, for dataset-scale runs.

    The curve is the Spearman rank correlation of absolute maps after each
    cascading step (:func:`model_randomization_test`); ``"mprt"`` is its
    mean over the steps (lower is better: the maps leave the trained
    model's sooner).  The new weights depend on ``seed`` only, so every
    batch sees the same randomised models.

    Parameters
    ----------
    attribution_method : Captum-style class, instance or callable
        As in :func:`model_randomization_test`.
    model : nn.Module
        The model; only deep copies are randomised.
    inputs : Tensor
        ``N x ...`` examples.
    target : int, Tensor or list of int
        The explained class per example.
    attribute_kwargs : dict, optional
        Passed to every ``attribute`` call. Default: None
    layers : sequence of str, optional
        The layers randomised in cascade, output layer first. Default: every
        layer of :func:`randomizable_layers`
    seed : int, optional
        Seed of the new weights. Default: 0

    Returns
    -------
    dict
        ``{"mprt": (N,), "curve_mprt": N x L}`` tensors, ``L`` layers.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum.attr import Saliency
    >>> from captum_prior.metrics.sanity import mprt_scores
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> out = mprt_scores(Saliency, net, torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 0]))
    >>> out["curve_mprt"].shape
    torch.Size([3, 2])
    """
    _, _, _, maps, _ = _randomized_maps(
        {"m": attribution_method}, model, inputs, target, layers, ("cascading",), attribute_kwargs, seed)
    a = maps["cascading"]["m"]
    curve = torch.from_numpy(np.stack([similarity(a[0], b, ("spearman_abs",))["spearman_abs"] for b in a[1:]], 1))
    return {"mprt": curve.mean(1).double(), "curve_mprt": curve.float()}
