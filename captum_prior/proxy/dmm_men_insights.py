"""Generalizable insights with DMM-MEN (Guo et al., NeurIPS 2018, §4.1).

A class of a classifier is approximated globally: DMM-MEN is fitted to the
logit of the model's probability for that class, over dimension-reduced
inputs (the highest-variance pixels, as the authors' ``dimensional_reduction``
with k = 300).  Each mixture component's largest coefficients, mapped back to
image pixels, are the "insights" (paper Fig. 1).  :func:`fidelity_tests`
runs the paper's Fig. 2 checks against the same number of random pixels.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from sklearn.base import clone
from torch import Tensor

from captum_prior._batching import RowRunner, forward_rows
from captum_prior._random import RandomState, check_random_state
from captum_prior._validation import check_choice, check_finite, check_float, check_int
from captum_prior.proxy.dmm_men import DMMMEN

__all__ = [
    "DMMMENGlobalInsights",
    "class_logit",
    "fidelity_tests",
    "model_outputs",
    "top_variance_pixels",
]


def _check_images(images: Any, name: str = "images") -> Tensor:
    if not isinstance(images, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor (N x ...), got {type(images).__name__}"
        )
    if images.dim() < 2 or images.shape[0] == 0:
        raise ValueError(
            f"{name} must be N x ... with N >= 1, got shape {tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {images.dtype}")
    check_finite(images, name)
    return images


def model_outputs(
    model: Callable[..., Tensor], images: Tensor, target: int, batch_size: int = 256
) -> Tensor:
    """Raw model outputs for ``images``, in chunks of ``batch_size``, without gradients.

    Parameters
    ----------
    model : Callable
        Classifier returning ``N x C`` outputs.
    images : Tensor
        ``N x ...`` inputs of the model.
    target : int
        The class of interest (checked against the model's outputs).
    batch_size : int, default 256
        Images per forward pass.

    Returns
    -------
    Tensor
        ``N x C`` outputs.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.proxy.dmm_men_insights import model_outputs
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    >>> images = torch.rand(20, 1, 4, 4)
    >>> model_outputs(model, images, target=1).shape
    torch.Size([20, 3])
    """
    runner = RowRunner(model, images.shape[0], target)
    n = images.shape[0]

    def make_rows(sl: slice):
        return (images[sl],), torch.arange(sl.start, sl.stop, device=images.device)

    return forward_rows(runner, make_rows, n, batch_size, raw=True)


def class_logit(
    model: Callable[..., Tensor], images: Tensor, target: int, batch_size: int = 256
) -> Tensor:
    r"""The logit of the model's softmax probability of class ``target``.

    ``log p / (1 - p) = z_t - logsumexp_{c != t} z_c`` is computed from the
    logits ``z``, so it stays exact where ``p`` rounds to 1 (the authors'
    code clips ``p`` at 0.999999, which maps every confident image to the
    same value 13.8).  This is the response of the paper's global fit (§3.1,
    footnote 1).

    Parameters
    ----------
    model : Callable
        Classifier returning logits ``N x C``, ``C >= 2``.
    images : Tensor
        ``N x ...`` inputs of the model.
    target : int
        The class.
    batch_size : int, default 256
        Images per forward pass.

    Returns
    -------
    Tensor
        ``(N,)`` float64 logits of the class probability.

    Raises
    ------
    ValueError
        The model does not return ``N x C`` logits with ``C >= 2``.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.proxy.dmm_men_insights import class_logit
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    >>> images = torch.rand(20, 1, 4, 4)
    >>> class_logit(model, images, target=1).shape
    torch.Size([20])
    """
    z = model_outputs(model, images, target, batch_size).to(torch.float64)
    if z.dim() != 2 or z.shape[1] < 2:
        raise ValueError(
            f"the model returned shape {tuple(z.shape)}; class_logit needs N x C logits"
        )
    others = torch.cat([z[:, :target], z[:, target + 1 :]], dim=1)
    return z[:, target] - torch.logsumexp(others, dim=1)


def top_variance_pixels(images: Tensor, k: int) -> Tensor:
    """The ``k`` elements with the highest variance over ``images``.

    This is the dimension reduction of the authors' global fit (``k = 300``).

    Parameters
    ----------
    images : Tensor
        ``N x ...`` images, ``N >= 2``.
    k : int
        Number of elements kept.

    Returns
    -------
    Tensor
        Flat indices into one image's elements, highest variance first.

    Raises
    ------
    ValueError
        Fewer than 2 images, or ``k`` larger than one image's size.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.proxy.dmm_men_insights import top_variance_pixels
    >>> images = torch.zeros(4, 1, 2, 2)
    >>> images[:, 0, 1, 1] = torch.arange(4.0)
    >>> top_variance_pixels(images, 1).tolist()
    [3]
    """
    images = _check_images(images)
    flat = images.reshape(images.shape[0], -1)
    k = check_int(k, "n_features", 1, flat.shape[1])
    var = (
        flat.to(torch.float64).var(dim=0, unbiased=False) if flat.shape[0] > 1 else None
    )
    if var is None:
        raise ValueError("images needs at least 2 examples to rank pixels by variance")
    order = torch.argsort(var, descending=True, stable=True)
    return order[:k]


class DMMMENGlobalInsights:
    r"""Global approximation of one class of a classifier with DMM-MEN (§4.1).

    :meth:`fit` computes ``y``, the logit of the model's probability of
    ``target`` for every image (:func:`class_logit`), keeps the
    ``n_features`` highest-variance pixels of the images as ``X``
    (:func:`top_variance_pixels`) and fits a clone of ``estimator``.
    :meth:`insights` returns, per occupied mixture component, its top-``k``
    pixels mapped back to the image grid (the paper's Fig. 1);
    :meth:`population_top_pixels` ranks the label-invariant population map
    instead, the summary a large fit can stand behind (see
    :class:`~captum_prior.proxy.DMMMEN`).

    Parameters
    ----------
    model : Callable
        Classifier returning logits ``N x C``.
    target : int
        The class to approximate.
    n_features : int, default 300
        Pixels kept (the paper's and the authors' code's 300).
    estimator : DMMMEN or None, default None
        Template, cloned at fit; ``None`` uses ``DMMMEN()``.
    batch_size : int, default 256
        Images per forward pass.

    Attributes
    ----------
    estimator_ : DMMMEN
        The fitted mixture.
    pixel_index_ : Tensor
        Flat pixel index of every column of ``X``.
    image_shape_ : tuple
        Shape of one image.
    y_ : Tensor
        The fitted responses (class logits).

    Raises
    ------
    TypeError
        ``estimator`` is not a :class:`~captum_prior.proxy.DMMMEN`, or an
        int argument of another type.
    ValueError
        A negative ``target`` or a non-positive size.

    Notes
    -----
    The heat map value is ``(k - r) / k`` for rank ``r`` (0 = most
    important), so the most important pixel is the brightest; the authors'
    heat-map code writes ``(r + 1) / k``, which inverts the scale.

    References
    ----------
    .. [1] Guo, W., Huang, S., Tao, Y., Xing, X., & Lin, L. (2018).
       Explaining deep learning models - a Bayesian non-parametric
       approach. NeurIPS 31.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.proxy import DMMMEN, DMMMENGlobalInsights
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    >>> est = DMMMEN(n_components=2, n_iter=10, n_chains=1, n_jobs=1,
    ...              check_convergence=False, random_state=0)
    >>> gi = DMMMENGlobalInsights(model, target=1, n_features=6, estimator=est)
    >>> gi = gi.fit(torch.rand(30, 1, 4, 4))
    >>> gi.population_top_pixels(3).shape
    torch.Size([3])
    """

    def __init__(
        self,
        model: Callable[..., Tensor],
        target: int,
        n_features: int = 300,
        estimator: Optional[DMMMEN] = None,
        batch_size: int = 256,
    ) -> None:
        if estimator is not None and not isinstance(estimator, DMMMEN):
            raise TypeError(
                f"estimator must be a captum_prior.proxy.DMMMEN, got {type(estimator).__name__}"
            )
        self.model = model
        self.target = check_int(target, "target", 0)
        self.n_features = check_int(n_features, "n_features", 1)
        self.estimator = estimator
        self.batch_size = check_int(batch_size, "batch_size", 1)

    def design(self, images: Tensor) -> np.ndarray:
        """The design matrix ``X`` of ``images``: their kept pixels.

        Parameters
        ----------
        images : Tensor
            ``N x ...`` images of the fitted shape.

        Returns
        -------
        ndarray of shape (N, n_features)
            float64.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        ValueError
            Images of another shape than at fit.
        """
        self._check_fitted()
        images = _check_images(images)
        if tuple(images.shape[1:]) != self.image_shape_:
            raise ValueError(
                f"images have shape {tuple(images.shape[1:])}, fitted on {self.image_shape_}"
            )
        flat = images.reshape(images.shape[0], -1)
        idx = self.pixel_index_.to(flat.device)
        return flat[:, idx].detach().to("cpu", torch.float64).numpy()

    def fit(self, images: Tensor) -> "DMMMENGlobalInsights":
        """Fit the mixture on ``images`` (e.g. all images of the class).

        Parameters
        ----------
        images : Tensor
            ``N x ...`` images in the model's input range.

        Returns
        -------
        DMMMENGlobalInsights
            ``self``, fitted.

        Raises
        ------
        ValueError
            A kept pixel is constant over ``images`` (lower
            ``n_features``), or ``images`` is malformed.
        """
        images = _check_images(images)
        self.image_shape_ = tuple(images.shape[1:])
        self.pixel_index_ = top_variance_pixels(images, self.n_features).cpu()
        y = class_logit(self.model, images, self.target, self.batch_size)
        self.y_ = y.detach().cpu()
        X = self.design(images)
        est = clone(self.estimator) if self.estimator is not None else DMMMEN()
        self.estimator_ = est.fit(X, self.y_.numpy())
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "pixel_index_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("call fit(images) before using the insights")

    def components(self) -> List[int]:
        """Occupied components, most populated first.

        Returns
        -------
        list of int
            Component indices of the fitted mixture.
        """
        self._check_fitted()
        sizes = self.estimator_.component_sizes_
        order = np.argsort(-sizes, kind="stable")
        return [int(j) for j in order if sizes[j] > 0]

    def insights(
        self,
        k: int = 150,
        components: Optional[Sequence[int]] = None,
        rank_by: str = "abs",
    ) -> List[Dict[str, Any]]:
        r"""Each component's top-``k`` pixels (the paper's Fig. 1).

        Parameters
        ----------
        k : int, default 150
            Pixels per component (the paper's 150).
        components : sequence of int or None, default None
            Which components; ``None`` is every occupied one, most populated
            first.
        rank_by : {"abs", "positive"}, default "abs"
            ``"abs"`` ranks by ``|beta|`` (paper and code); ``"positive"`` by
            ``beta`` (pixels that raise the class logit).

        Returns
        -------
        list of dict
            One dict per component with ``component``, ``size`` (samples),
            ``weight``, ``pixels`` (flat indices into one image, most
            important first), ``coef`` (their coefficients) and ``heatmap``
            (image-shaped, ``(k - r) / k`` at the pixel of rank ``r``, 0
            elsewhere).

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        ValueError
            ``k`` above ``n_features``, a component out of range, or an
            unknown ``rank_by``.
        """
        self._check_fitted()
        k = check_int(k, "k", 1, self.n_features)
        check_choice(rank_by, "rank_by", ("abs", "positive"))
        comps = (
            self.components() if components is None else [int(c) for c in components]
        )
        est = self.estimator_
        out = []
        numel = int(np.prod(self.image_shape_))
        for j in comps:
            if not 0 <= j < est.n_components:
                raise ValueError(
                    f"component {j} is out of range 0..{est.n_components - 1}"
                )
            beta = est.coef_[j]
            score = np.abs(beta) if rank_by == "abs" else beta
            order = np.argsort(-score, kind="stable")[:k]
            pixels = self.pixel_index_[torch.as_tensor(order)]
            heat = torch.zeros(numel, dtype=torch.float32)
            heat[pixels] = torch.as_tensor((k - np.arange(k)) / k, dtype=torch.float32)
            out.append(
                {
                    "component": j,
                    "size": int(est.component_sizes_[j]),
                    "weight": float(est.weights_[j]),
                    "pixels": pixels.clone(),
                    "coef": torch.as_tensor(beta[order]),
                    "heatmap": heat.reshape(self.image_shape_),
                }
            )
        return out

    def save(self, path: Any) -> None:
        """Write the fitted insights to a safetensors file (no pickle).

        The file holds the mixture, the kept pixels and the responses; the
        model is not stored.  The write is atomic.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write; its folder must exist.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        FileNotFoundError
            The folder does not exist.
        """
        self._check_fitted()
        from captum_prior._serialization import save_state

        tensors, meta = self.estimator_._state()
        tensors = {"estimator." + k: v for k, v in tensors.items()}
        tensors["pixel_index_"] = self.pixel_index_.clone()
        tensors["y_"] = self.y_.clone()
        info = {
            "estimator": meta,
            "target": self.target,
            "n_features": self.n_features,
            "batch_size": self.batch_size,
            "image_shape_": list(self.image_shape_),
        }
        save_state(path, "DMMMENGlobalInsights", 1, tensors, info)

    @classmethod
    def load(cls, path: Any, model: Callable[..., Tensor]) -> "DMMMENGlobalInsights":
        """Read insights written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`save`.
        model : Callable
            The classifier (models are not stored).

        Returns
        -------
        DMMMENGlobalInsights
            The fitted insights.

        Raises
        ------
        FileNotFoundError
            No such file.
        captum_prior.errors.FileFormatError
            The file is damaged or holds another kind of object.
        """
        from captum_prior._serialization import load_state

        tensors, info = load_state(path, "DMMMENGlobalInsights", (1,))
        est_t = {
            k[len("estimator.") :]: v
            for k, v in tensors.items()
            if k.startswith("estimator.")
        }
        est = DMMMEN._from_state(est_t, info["estimator"])
        gi = cls(model, info["target"], info["n_features"], None, info["batch_size"])
        gi.estimator_ = est
        gi.pixel_index_ = tensors["pixel_index_"]
        gi.y_ = tensors["y_"]
        gi.image_shape_ = tuple(info["image_shape_"])
        return gi

    def top_pixels(
        self, k: int, component: Optional[int] = None, rank_by: str = "abs"
    ) -> Tensor:
        """Top-``k`` pixels of one component.

        Parameters
        ----------
        k : int
            Number of pixels.
        component : int or None, default None
            The component; ``None`` is the most populated one, which the
            authors' fidelity tests use.
        rank_by : {"abs", "positive"}, default "abs"
            As in :meth:`insights`.

        Returns
        -------
        Tensor
            Flat pixel indices into one image, most important first.
        """
        comp = self.components()[0] if component is None else component
        return self.insights(k, [comp], rank_by)[0]["pixels"]

    def population_top_pixels(self, k: int, rank_by: str = "abs") -> Tensor:
        """Top-``k`` pixels of the label-invariant population coefficient map.

        The map ``(1/n) sum_i beta_{z_i}`` (``DMMMEN.population_coef_``) is
        every image's allocated component's coefficients, averaged over the
        images.  It is not in the paper, whose insights are per component;
        unlike those it does not depend on how the mixture is labelled or
        split, so it is the reproducible summary across chains and seeds.

        Parameters
        ----------
        k : int
            Number of pixels.
        rank_by : {"abs", "positive"}, default "abs"
            Rank by ``|coefficient|`` or by the coefficient.

        Returns
        -------
        Tensor
            Flat pixel indices into one image, most important first.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        """
        self._check_fitted()
        k = check_int(k, "k", 1, self.n_features)
        check_choice(rank_by, "rank_by", ("abs", "positive"))
        beta = self.estimator_.population_coef_
        score = np.abs(beta) if rank_by == "abs" else beta
        order = np.argsort(-score, kind="stable")[:k]
        return self.pixel_index_[torch.as_tensor(order)].clone()


def _summary(pcr: np.ndarray) -> Dict[str, List[float]]:
    if pcr.shape[0] == 0:  # no positives (or negatives) in any repeat
        nan = [float("nan")] * pcr.shape[1]
        return {"mean": nan, "low": nan, "high": nan}
    return {
        "mean": pcr.mean(axis=0).tolist(),
        "low": np.percentile(pcr, 2.5, axis=0).tolist(),
        "high": np.percentile(pcr, 97.5, axis=0).tolist(),
    }


def fidelity_tests(
    model: Callable[..., Tensor],
    images: Tensor,
    target: int,
    top_pixels: Union[Tensor, Sequence[int]],
    n_features: Sequence[int] = (50, 75, 100, 125, 150),
    n_repeats: int = 50,
    bootstrap_rate: float = 0.3,
    null_value: float = 0.0,
    noise: Sequence[float] = (0.03, 0.01),
    n_synthetic: int = 200,
    synthetic_fill: str = "sample",
    random_pool: Optional[Union[Tensor, Sequence[int]]] = None,
    batch_size: int = 512,
    random_state: RandomState = None,
    progress: bool = False,
) -> Dict[str, Any]:
    r"""The fidelity tests of the paper's Fig. 2, against random pixels.

    For each of ``n_repeats`` bootstrap samples (``bootstrap_rate`` of
    ``images``, drawn with replacement) and each count ``m`` in
    ``n_features``, with ``B`` = the first ``m`` of ``top_pixels`` and ``R`` =
    ``m`` pixels drawn at random from ``random_pool``:

    - **nullify**: in the positives (images the model assigns to ``target``)
      set the pixels to ``null_value``; PCR = share still classified
      ``target`` (lower is better for B);
    - **fill**: in the negatives set the pixels to the positives' mean
      value; PCR = share now classified ``target`` (higher is better);
    - **synthetic**: ``n_synthetic`` images of noise ``N(noise[0], noise[1])``
      (clipped to [0, 1]) whose pixels "register positive properties":
      copied from a random positive image each (``synthetic_fill="sample"``)
      or set to the positives' mean (``"mean"``, all synthetic images then
      nearly identical, so each repeat's PCR is close to 0 or 1); PCR =
      share classified ``target`` (higher is better).  The noise images
      alone (paper's procedure 4) give ``synthetic_baseline``.

    The paper's values (nullify to 0, fill with the positives' mean) are
    used; the authors' code instead multiplies a reference image by -0.5, 5
    and 3.  The paper does not say which values the synthetic images get.

    Parameters
    ----------
    model : Callable
        Classifier returning ``N x C`` logits.
    images : Tensor
        ``N x ...`` images in the model's input range.
    target : int
        The class.
    top_pixels : Tensor or sequence of int
        Flat pixel indices, most important first (e.g.
        :meth:`DMMMENGlobalInsights.top_pixels`); at least
        ``max(n_features)`` of them.
    n_features : sequence of int, default (50, 75, 100, 125, 150)
        Pixel counts.
    n_repeats : int, default 50
        Bootstrap repeats.
    bootstrap_rate : float, default 0.3
        Bootstrap size as a share of ``N``.
    null_value : float, default 0.0
        Value of nullified pixels.
    noise : sequence of 2 float, default (0.03, 0.01)
        Mean and sd of the synthetic background.
    n_synthetic : int, default 200
        Synthetic images per repeat.
    synthetic_fill : {"sample", "mean"}, default "sample"
        See above.
    random_pool : Tensor or sequence of int or None, default None
        Pixels the random sets are drawn from; ``None`` is every pixel.
    batch_size : int, default 512
        Images per forward pass.
    random_state : None, int or numpy.random.Generator, default None
        Seed; the same seed gives the same result.
    progress : bool, default False
        Show a progress bar over the repeats.

    Returns
    -------
    dict
        ``n_features`` and, for ``nullify``, ``fill`` and ``synthetic``:
        ``{"top": PCR array (repeats x counts), "random": ..., "summary":
        {"top": {"mean", "low", "high"}, "random": {...}}}`` (95 %
        percentile intervals over the repeats), plus ``synthetic_baseline``
        (per repeat) and ``n_positives`` (per repeat).

    Raises
    ------
    ValueError
        Fewer ``top_pixels`` or ``random_pool`` pixels than
        ``max(n_features)``, pixel indices out of range, or ``noise`` not a
        pair.

    References
    ----------
    .. [1] Guo, W., Huang, S., Tao, Y., Xing, X., & Lin, L. (2018).
       Explaining deep learning models - a Bayesian non-parametric
       approach. NeurIPS 31, Fig. 2.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.proxy.dmm_men_insights import fidelity_tests
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    >>> images = torch.rand(20, 1, 4, 4)
    >>> out = fidelity_tests(model, images, 1, torch.arange(4), n_features=(2, 4),
    ...                      n_repeats=2, n_synthetic=5, random_state=0)
    >>> out["nullify"]["top"].shape
    (2, 2)
    """
    images = _check_images(images)
    target = check_int(target, "target", 0)
    n_repeats = check_int(n_repeats, "n_repeats", 2)
    rate = check_float(bootstrap_rate, "bootstrap_rate", 0.0, 1.0, low_inclusive=False)
    n_syn = check_int(n_synthetic, "n_synthetic", 1)
    check_choice(synthetic_fill, "synthetic_fill", ("sample", "mean"))
    counts = [check_int(int(m), "n_features", 1) for m in n_features]
    top = torch.as_tensor(top_pixels, dtype=torch.long).reshape(-1).cpu()
    numel = int(np.prod(images.shape[1:]))
    if top.numel() < max(counts):
        raise ValueError(
            f"top_pixels has {top.numel()} entries but n_features asks for {max(counts)}"
        )
    if top.min() < 0 or top.max() >= numel:
        raise ValueError(f"top_pixels must index one image's {numel} elements")
    pool = (
        torch.arange(numel)
        if random_pool is None
        else torch.as_tensor(random_pool, dtype=torch.long).reshape(-1).cpu()
    )
    if pool.numel() < max(counts):
        raise ValueError(
            f"random_pool has {pool.numel()} pixels, fewer than {max(counts)}"
        )
    if len(noise) != 2:
        raise ValueError("noise must be (mean, sd)")
    rng = check_random_state(random_state)
    gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
    dev = images.device
    flat_all = images.reshape(images.shape[0], -1)

    def predict(flat: Tensor) -> Tensor:
        x = flat.reshape((flat.shape[0],) + tuple(images.shape[1:]))
        return model_outputs(model, x, target, batch_size).argmax(dim=1).cpu()

    is_pos = predict(flat_all) == target
    n_boot = max(2, int(round(rate * images.shape[0])))
    res = {
        t: {
            "top": np.zeros((n_repeats, len(counts))),
            "random": np.zeros((n_repeats, len(counts))),
        }
        for t in ("nullify", "fill", "synthetic")
    }
    baseline = np.zeros(n_repeats)
    n_pos = np.zeros(n_repeats, dtype=np.int64)
    reps = range(n_repeats)
    if progress:
        from tqdm.auto import tqdm

        reps = tqdm(reps, desc="fidelity repeats", leave=False)
    for r in reps:
        idx = torch.as_tensor(rng.integers(0, images.shape[0], n_boot))
        pos = flat_all[idx[is_pos[idx]].to(dev)]
        neg = flat_all[idx[~is_pos[idx]].to(dev)]
        n_pos[r] = pos.shape[0]
        bg = (noise[0] + noise[1] * torch.randn(n_syn, numel, generator=gen)).clamp(
            0, 1
        )
        bg = bg.to(device=dev, dtype=images.dtype)
        baseline[r] = float((predict(bg) == target).float().mean())
        mean_pos = pos.mean(0) if pos.shape[0] else flat_all.mean(0)
        if synthetic_fill == "sample" and pos.shape[0]:
            donors = pos[torch.randint(pos.shape[0], (n_syn,), generator=gen).to(dev)]
        else:
            donors = mean_pos.expand(n_syn, -1)
        for c, m in enumerate(counts):
            sets = {
                "top": top[:m].to(dev),
                "random": pool[torch.randperm(pool.numel(), generator=gen)[:m]].to(dev),
            }
            for kind, pix in sets.items():
                if pos.shape[0]:
                    x = pos.clone()
                    x[:, pix] = null_value
                    res["nullify"][kind][r, c] = float(
                        (predict(x) == target).float().mean()
                    )
                else:
                    res["nullify"][kind][r, c] = np.nan
                if neg.shape[0]:
                    x = neg.clone()
                    x[:, pix] = mean_pos[pix]
                    res["fill"][kind][r, c] = float(
                        (predict(x) == target).float().mean()
                    )
                else:
                    res["fill"][kind][r, c] = np.nan
                x = bg.clone()
                x[:, pix] = donors[:, pix]
                res["synthetic"][kind][r, c] = float(
                    (predict(x) == target).float().mean()
                )
    out: Dict[str, Any] = {"n_features": counts}
    for t, d in res.items():
        out[t] = {
            "top": d["top"],
            "random": d["random"],
            "summary": {k: _summary(v[~np.isnan(v).any(axis=1)]) for k, v in d.items()},
        }
    out["synthetic_baseline"] = baseline
    out["n_positives"] = n_pos
    return out
